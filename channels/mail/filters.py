"""Which mails may become leads: bounces, auto-replies, lists, our own mail and loops never do.

Pure: the caller supplies the mailbox policy and how many mails the same customer address sent
in the last hour (count by `customer_address`, excluding the mail being classified).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from channels.mail.addresses import parse_addresses
from channels.mail.parse import MailAddress, ParsedMail

_BOUNCE_SENDERS = frozenset({"mailer-daemon", "postmaster"})
# What mail servers call themselves when the address is an ordinary one (Gmail's
# "Mail Delivery Subsystem <mailer-daemon@…>" has a twin at providers that send from noreply@).
_BOUNCE_NAMES = re.compile(
    r"^(mail delivery (sub)?system|mail delivery service|mailer[- ]daemon|postmaster|"
    r"mail administrator|e-?mail-?zustellsystem|почтовая система)$",
    re.I,
)
_BOUNCE_SUBJECT = re.compile(
    r"^(undeliver(ed|able)|delivery (status notification|failure|has failed|delayed)|"
    r"mail delivery (fail|problem)|(mail|message) (could not|couldn't|was not|not) (be )?"
    r"delivered|returned mail|failure notice|warning: could not send|delayed mail|"
    r"unzustellbar|nicht zustellbar|zustellung fehlgeschlagen|"
    r"недоставленное сообщение|не удалось доставить|сообщение не доставлено)",
    re.I,
)
_BOUNCE_TEXT = re.compile(
    r"(this is the mail system at host|could not be delivered to one or more recipients|"
    r"delivery has failed to these recipients|message could not be delivered|"
    r"konnte nicht zugestellt werden)",
    re.I,
)
_OUT_OF_OFFICE_SUBJECT = re.compile(
    r"^(automatic reply|auto(matic)?[- ]?reply|out of (the )?office|abwesenheitsnotiz|"
    r"automatische antwort|autom\. antwort|автоматический ответ)\b",
    re.I,
)
_AUTO_PRECEDENCE = frozenset({"bulk", "junk", "auto_reply"})
# List software's own addresses: the -request / -owner of a list, and its bounce handlers.
_LIST_SENDER = re.compile(r"(^owner-.+|.+-(request|admin|owner|bounces?)(\+.*)?)$", re.I)
_LIST_MAILER = re.compile(r"\b(mailman|listserv|majordomo|ezmlm|sympa|lyris)\b", re.I)
# Local parts of web-form / CMS robots that put the customer in Reply-To.
_FORM_ROBOT = re.compile(
    r"^(no-?reply|do-?not-?reply|wordpress|webform|forms?|formular|kontaktformular|"
    r"contact-?form|website|webmaster|www-data)([.+_-].*)?$",
    re.I,
)


class VerdictKind(StrEnum):
    ACCEPT = "accept"
    IGNORE = "ignore"  # never a lead; log the reason
    ATTACH_ONLY = "attach_only"  # may attach to what exists, must never create


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    reason: str | None = None


ACCEPT = Verdict(VerdictKind.ACCEPT)


@dataclass(frozen=True, slots=True)
class MailPolicy:
    own_addresses: frozenset[str] = frozenset()  # every connected mailbox
    rep_addresses: frozenset[str] = frozenset()  # sales reps / employees
    allow_lists: bool = False  # mailing-list mail may become a lead in this mailbox
    # "Always a new lead" senders (web-form robots): the customer is in Reply-To.
    robot_senders: frozenset[str] = frozenset()
    rate_limit_per_hour: int = 20

    def __post_init__(self) -> None:
        if self.rate_limit_per_hour < 1:
            raise ValueError("rate_limit_per_hour must be at least 1")
        for name in ("own_addresses", "rep_addresses", "robot_senders"):
            lowered = frozenset(a.strip().lower() for a in getattr(self, name))
            object.__setattr__(self, name, lowered)  # addresses compare case-insensitively


def is_robot(address: str, policy: MailPolicy) -> bool:
    """A configured "always a new lead" sender, or a web-form robot by its look."""
    return address in policy.robot_senders or bool(_FORM_ROBOT.match(address.split("@")[0]))


def customer(parsed: ParsedMail, policy: MailPolicy) -> MailAddress:
    """Who the mail is really from: Reply-To for robot senders, else From."""
    if parsed.reply_to is not None and is_robot(parsed.sender.address, policy):
        return parsed.reply_to
    return parsed.sender


def classify(parsed: ParsedMail, policy: MailPolicy, recent_from_sender: int) -> Verdict:
    """Accept, ignore (with the reason to log) or attach only (rate limit against loops)."""
    reason = _own_mail(parsed, policy) or _bounce(parsed) or _auto_reply(parsed)
    if reason is None and not policy.allow_lists:
        reason = _mailing_list(parsed)
    if reason is not None:
        return Verdict(VerdictKind.IGNORE, reason)
    if recent_from_sender >= policy.rate_limit_per_hour:
        who = customer(parsed, policy).address
        return Verdict(
            VerdictKind.ATTACH_ONLY,
            f"more than {policy.rate_limit_per_hour} mails in an hour from {who}",
        )
    return ACCEPT


def _own_mail(parsed: ParsedMail, policy: MailPolicy) -> str | None:
    # A configured robot may well send from one of our own mailboxes: judge its Reply-To only.
    checked = {customer(parsed, policy).address}
    if parsed.sender.address not in policy.robot_senders:
        checked.add(parsed.sender.address)
    for address in sorted(checked):
        if address in policy.own_addresses:
            return f"from our own mailbox {address}"
        if address in policy.rep_addresses:
            return f"from rep address {address}"
    return None


def _bounce(parsed: ParsedMail) -> str | None:
    if parsed.content_type == "multipart/report":
        return "bounce: multipart/report"
    local = parsed.sender.address.split("@")[0]
    if local in _BOUNCE_SENDERS:
        return f"bounce: sent by {parsed.sender.address}"
    if parsed.sender.name and _BOUNCE_NAMES.match(parsed.sender.name.strip()):
        return f"bounce: sent by '{parsed.sender.name}'"
    return_path = parsed.headers.get("return-path", "").strip()
    if return_path in ("<>", "<#@[]>"):  # "#@[]": qmail's null sender
        return "bounce: empty Return-Path (null sender)"
    if return_path.strip("<> ").split("@")[0].lower() in _BOUNCE_SENDERS:
        return f"bounce: Return-Path {return_path}"
    if "x-failed-recipients" in parsed.headers:
        return f"bounce: X-Failed-Recipients {parsed.headers['x-failed-recipients']}"
    if _BOUNCE_SUBJECT.match(parsed.subject) or _BOUNCE_TEXT.search(parsed.text[:5000]):
        return f"bounce: delivery failure text ({parsed.subject or 'no subject'})"
    return None


def _auto_reply(parsed: ParsedMail) -> str | None:
    headers = parsed.headers
    submitted = headers.get("auto-submitted", "").strip()
    if submitted and submitted.lower().split(";")[0].strip() != "no":
        return f"auto-reply: Auto-Submitted: {submitted}"
    for name, label in (("x-autoreply", "X-Autoreply"), ("x-autorespond", "X-Autorespond")):
        if name in headers:
            value = headers[name].strip()
            return f"auto-reply: {label}: {value}" if value else f"auto-reply: {label}"
    precedence = headers.get("precedence", "").strip().lower()
    if precedence in _AUTO_PRECEDENCE:
        return f"auto-reply: Precedence: {precedence}"
    if _OUT_OF_OFFICE_SUBJECT.match(parsed.subject):
        return f"auto-reply: out-of-office subject '{parsed.subject}'"
    return None


def _mailing_list(parsed: ParsedMail) -> str | None:
    headers = parsed.headers
    for name, label in (
        ("list-id", "List-Id"),
        ("list-unsubscribe", "List-Unsubscribe"),
        ("list-post", "List-Post"),
        ("list-owner", "List-Owner"),
        ("mailing-list", "Mailing-List"),
        ("x-mailman-version", "X-Mailman-Version"),
        ("x-listserver", "X-Listserver"),
    ):
        if name in headers:
            return f"mailing list: {label} {headers[name]}"
    if headers.get("precedence", "").strip().lower() == "list":
        return "mailing list: Precedence: list"
    # Majordomo and its kin keep the poster in From and put the list in Sender.
    agent = parse_addresses([headers.get("sender", "")]).mailboxes
    for address in (parsed.sender.address, *(a.address for a in agent)):
        if _LIST_SENDER.match(address.split("@")[0]):
            return f"mailing list: sent by list address {address}"
    if (mailer := _LIST_MAILER.search(headers.get("x-mailer", ""))) is not None:
        return f"mailing list: X-Mailer {mailer[0]}"
    if "multipart/digest" in parsed.part_types:
        return "mailing list: multipart/digest"
    if parsed.empty_groups and not parsed.to:
        return f"bulk: To is the empty group '{parsed.empty_groups[0]}:;'"
    return None
