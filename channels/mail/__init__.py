"""Mail channel: parse raw messages, filter robots and loops, map the rest to events."""

from channels.mail.filters import (
    MailPolicy,
    Verdict,
    VerdictKind,
    classify,
    customer,
    is_robot,
)
from channels.mail.parse import MailAddress, MailParseError, ParsedMail, parse_message
from channels.mail.to_event import to_event

__all__ = [
    "MailAddress",
    "MailParseError",
    "MailPolicy",
    "ParsedMail",
    "Verdict",
    "VerdictKind",
    "classify",
    "customer",
    "is_robot",
    "parse_message",
    "to_event",
]
