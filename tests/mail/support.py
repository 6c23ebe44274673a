"""Helpers of the IMAP worker tests: mails to deliver, waiting on conditions, CRM lookups."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, TypeVar

from sqlalchemy import func, select

from crm.db import Database
from crm.models import InboundEventLog, Lead
from leadbot.app import Service

from .dovecot import Dovecot

_T = TypeVar("_T")
_ids = itertools.count(1)


def customer_mail(
    sender: str,
    *,
    subject: str = "Anfrage Pflanzkübel",
    body: str = "Guten Tag,\n\nbitte schicken Sie mir ein Angebot.\n\nGruß",
    name: str | None = None,
    message_id: str | None = None,
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    to: str = "info@beispiel-shop.de",
) -> bytes:
    """A well-formed customer mail; every call gets a new Message-ID unless one is given."""
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>" if name else sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id or f"<test-{next(_ids)}-{time.time_ns()}@example.org>"
    if reply_to:
        msg["Reply-To"] = reply_to
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    msg.set_content(body)
    return msg.as_bytes()


def message_id(raw: bytes) -> str:
    for line in raw.split(b"\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise ValueError("no Message-ID")


async def eventually(
    check: Callable[[], Awaitable[_T]], *, timeout: float = 5.0, what: str = "condition"
) -> _T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {value!r})")
        await asyncio.sleep(0.02)


async def holds(value: object) -> bool:
    """For `eventually` on plain values: `eventually(lambda: holds(worker.stats.waiting))`."""
    return bool(value)


def mailbox(dovecot: Dovecot, **overrides: Any) -> dict[str, Any]:
    """Settings of a mailbox on the test server, tuned for fast tests."""
    settings: dict[str, Any] = {
        "name": "sales",
        "host": dovecot.host,
        "port": dovecot.port,
        "security": "none",
        "user": dovecot.user,
        "password": dovecot.password,
        "poll_interval": 0.2,
        "reconnect_min_seconds": 0.05,
        "reconnect_max_seconds": 0.3,
        "command_timeout": 5.0,
    }
    settings.update(overrides)
    return settings


async def uids_in(dovecot: Dovecot, folder: str) -> list[int]:
    """UIDs in a folder; none while the folder does not exist yet."""
    try:
        return await dovecot.uids(folder)
    except RuntimeError as exc:
        if "doesn't exist" in str(exc):
            return []
        raise


async def seen(dovecot: Dovecot, uid: int, folder: str = "INBOX") -> bool:
    return "\\Seen" in await dovecot.flags(folder, uid)


async def events(db: Database) -> list[InboundEventLog]:
    async with db.transaction() as s:
        return list(await s.scalars(select(InboundEventLog).order_by(InboundEventLog.id)))


async def event_count(db: Database) -> int:
    async with db.transaction() as s:
        return int(await s.scalar(select(func.count()).select_from(InboundEventLog)) or 0)


async def count_is(service: Service, expected: int) -> bool:
    """For `eventually`: the event log holds `expected` rows; more fails at once (doubled)."""
    count = await event_count(service.db)
    assert count <= expected, f"{count} events, expected {expected}: something was doubled"
    return count == expected


async def watching(
    start_service: Callable[..., Awaitable[Any]], dovecot: Dovecot, **settings: Any
) -> Service:
    """A service watching the test mailbox, caught up and waiting for new mail."""
    from channels.mail.component import mail_component

    service: Service = await start_service(
        components=[mail_component], mailboxes=[mailbox(dovecot, **settings)]
    )
    worker = worker_of(service)
    await eventually(lambda: holds(worker.stats.waiting), what="worker waiting for mail")
    return service


async def leads(db: Database) -> list[Lead]:
    async with db.transaction() as s:
        return list(await s.scalars(select(Lead).order_by(Lead.id)))


def worker_of(service: Service, index: int = 0) -> Any:
    """The running MailboxWorker of the service's mail component."""
    from channels.mail.component import MailComponent

    comp = next(c for c in service.components if isinstance(c, MailComponent))
    return comp.workers[index]
