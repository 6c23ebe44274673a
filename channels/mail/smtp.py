"""A rep's answer to a mail, sent by SMTP from the mailbox the customer wrote to, so that it
continues their thread.

The answer carries `In-Reply-To` (the customer's Message-ID) and `References` (their chain and
that id), `Re: <their subject>` (never `Re: Re:`), its own Message-ID and Date, From the
mailbox's address, and the rep's text as text/plain UTF-8 with the customer's mail quoted below
(`quote_original`). Its Message-ID becomes the outgoing activity's external id: a customer's
answer naming it in In-Reply-To / References threads back to the same lead or deal (intake's
thread lookup, `crm.intake.rounds`). A delivery that fails is not retried behind the rep's back.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any, Protocol

import aiosmtplib
from aiohttp import web

from channels.mail.component import read_password
from channels.mail.settings import MailboxSettings, SmtpSettings
from crm.config import ConfigError
from crm.dto import ActivityView
from crm.errors import Conflict
from crm.replies import ReplySenders, Sent
from matching.event import Channel

log = logging.getLogger(__name__)

MAX_CHARS = 100_000  # a mail has no real limit; this keeps a pasted novel out
QUOTE_CHARS = 5_000  # of the customer's mail quoted below the answer
_RE = re.compile(r"^\s*((re|aw|sv|antw|vs|ynt)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_SYNTHETIC = "@synthetic.leadbot>"  # intake's stand-in id for a mail that had none


def reply_subject(subject: str | None) -> str:
    """`Re: ` once before the customer's subject, whatever reply prefixes it already had."""
    # One line: a header with a line break in it would be refused (or forge other headers).
    bare = _RE.sub("", " ".join((subject or "").split())).strip()
    return f"Re: {bare}" if bare else "Re: your message"


def thread_headers(answering: ActivityView | None) -> tuple[str | None, list[str]]:
    """In-Reply-To and References of an answer to `answering` (RFC 5322 3.6.4): the parent's
    References (or its In-Reply-To when it has none) followed by the parent's Message-ID."""
    meta = answering.meta if answering is not None else {}
    parent = meta.get("message_id")
    if not isinstance(parent, str) or not parent or parent.endswith(_SYNTHETIC):
        return None, []
    chain = [r for r in meta.get("references") or [] if isinstance(r, str)]
    if not chain and isinstance(meta.get("in_reply_to"), str):
        chain = [meta["in_reply_to"]]
    return parent, [*dict.fromkeys([*chain, parent])]


def quoted(answering: ActivityView) -> str:
    """The customer's mail as `> ` lines under a "… wrote:" line."""
    body = (answering.body or "").strip()[:QUOTE_CHARS]
    if not body:
        return ""
    sender = answering.meta.get("from") or answering.counterparty or "you"
    when = answering.last_attempt_at or answering.created_at
    lines = "\n".join(f"> {line}" if line else ">" for line in body.splitlines())
    return f"\n\nOn {when:%Y-%m-%d %H:%M} UTC, {sender} wrote:\n{lines}\n"


@dataclass(frozen=True, slots=True)
class Outbox:
    """One mailbox's way out."""

    mailbox: str
    smtp: SmtpSettings
    user: str
    password: Callable[[], str]  # blocking (a file or the environment): called in a thread

    def client_options(self, password: str) -> dict[str, Any]:
        """`aiosmtplib` connection and login options (for `send` and `SMTP`)."""
        cfg = self.smtp
        tls = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        return {
            "hostname": cfg.host,
            "port": cfg.port,
            "username": self.user or None,
            "password": password or None,
            "use_tls": cfg.security == "tls",
            "start_tls": cfg.security == "starttls",
            "tls_context": tls if cfg.security != "none" else None,
            "timeout": cfg.timeout,
        }


class SmtpReplies:
    """The mail channel's `ReplySender`: the mailbox the customer wrote to answers them; a mail
    from no known mailbox goes out through the first one that can send."""

    channel = Channel.EMAIL

    def __init__(self, outboxes: Sequence[Outbox]) -> None:
        self.outboxes = {o.mailbox: o for o in outboxes}
        self.default = outboxes[0]

    @property
    def max_chars(self) -> int:
        return MAX_CHARS

    def message(
        self, box: Outbox, to: str, text: str, answering: ActivityView | None
    ) -> EmailMessage:
        cfg = box.smtp
        msg = EmailMessage()
        msg["From"] = (
            formataddr((cfg.from_name, cfg.from_address)) if cfg.from_name else cfg.from_address
        )
        msg["To"] = to
        msg["Subject"] = reply_subject(answering.subject if answering else None)
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = make_msgid("leadbot", domain=cfg.from_address.rpartition("@")[2])
        parent, references = thread_headers(answering)
        if parent is not None:
            msg["In-Reply-To"] = parent
            msg["References"] = " ".join(references)
        quote = quoted(answering) if answering is not None and cfg.quote_original else ""
        msg.set_content(text + quote, charset="utf-8")
        return msg

    def refusal(self, answering: ActivityView | None) -> str | None:
        return None

    async def send(self, to: str, text: str, *, answering: ActivityView | None = None) -> Sent:
        mailbox = answering.meta.get("mailbox") if answering is not None else None
        box = self.outboxes.get(str(mailbox), self.default)
        cfg = box.smtp
        msg = self.message(box, to, text, answering)
        try:
            password = await asyncio.to_thread(box.password)
        except ConfigError as err:
            raise Conflict(f"mailbox {box.mailbox} cannot send: {err}") from None
        try:
            await aiosmtplib.send(msg, **box.client_options(password))
        except aiosmtplib.SMTPRecipientsRefused as err:
            reason = "; ".join(r.message for r in err.recipients)[:300]
            raise Conflict(f"the mail server refused {to}: {reason}; nothing was sent") from None
        except aiosmtplib.SMTPAuthenticationError:
            raise Conflict(
                f"the mail server refused mailbox {box.mailbox}'s login; nothing was sent"
            ) from None
        except aiosmtplib.SMTPResponseException as err:
            raise Conflict(
                f"the mail server refused the mail ({err.code} {err.message[:200]})"
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            raise Conflict(
                f"the mail server {cfg.host} did not take the mail ({type(err).__name__}); "
                "it may or may not have been sent"
            ) from None
        parent, references = thread_headers(answering)
        message_id = str(msg["Message-ID"])
        meta = {"message_id": message_id, "in_reply_to": parent, "references": references,
                "from": cfg.from_address, "to": [to], "mailbox": box.mailbox}  # fmt: skip
        log.info("mail reply %s sent from mailbox %s", message_id, box.mailbox)
        return Sent(message_id, meta, subject=str(msg["Subject"]))


class _Settings(Protocol):
    @property
    def mailboxes(self) -> Sequence[MailboxSettings]: ...


class SmtpHost(Protocol):
    """What mail replies need from the process that runs them."""

    @property
    def settings(self) -> _Settings: ...

    # Where the channel puts its reply sender for the bot.
    @property
    def reply_senders(self) -> ReplySenders: ...


class SmtpComponent:
    """Nothing runs: each answer opens its own SMTP connection."""

    def routes(self) -> list[web.AbstractRouteDef]:
        return []

    async def start(self) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """Nothing to stop."""


def outbox_of(box: MailboxSettings, smtp: SmtpSettings) -> Outbox:
    if smtp.password is not None:
        secret = smtp.password.get_secret_value()
        return Outbox(box.name, smtp, smtp.user or box.user, lambda: secret)
    return Outbox(box.name, smtp, smtp.user or box.user, lambda: read_password(box))


def smtp_component(service: SmtpHost) -> SmtpComponent | None:
    """The mail reply sender when a mailbox has `smtp`; None when none has."""
    outboxes = [outbox_of(b, b.smtp) for b in service.settings.mailboxes if b.smtp is not None]
    if not outboxes:
        return None
    for box in outboxes:
        if box.smtp.security == "none" and box.smtp.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("mailbox %s: replies go unencrypted to %s", box.mailbox, box.smtp.host)
    service.reply_senders[Channel.EMAIL.value] = SmtpReplies(outboxes)
    return SmtpComponent()
