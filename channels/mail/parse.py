"""Raw RFC 5322 bytes → `ParsedMail`: pure, tolerant of broken mail, never loses a message.

Anything odd but readable (unknown charsets, bad dates, 8-bit headers) is decoded as well as
possible; only a message with no usable structure raises `MailParseError`, so the caller can
move it to quarantine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value, getaddresses, parsedate_to_datetime
from types import MappingProxyType
from typing import Any

from channels.event import Attachment
from channels.mail.body import find_phones, html_to_text, normalize, preview
from channels.mail.charsets import decode_bytes, decode_words, repair
from matching.text import clean_text

# Headers the filters look at, kept decoded under lower-case names.
FILTER_HEADERS = (
    "auto-submitted",
    "x-autoreply",
    "x-autorespond",
    "x-auto-response-suppress",
    "precedence",
    "list-id",
    "list-unsubscribe",
    "return-path",
)
_MSGID = re.compile(r"<[^<>\s]+>")
_MAX_DEPTH = 20  # nesting deeper than this is an attack or a loop, not a customer


class MailParseError(ValueError):
    """The bytes are not a usable email; the message belongs in quarantine."""


@dataclass(frozen=True, slots=True)
class MailAddress:
    address: str  # lower-cased
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedMail:
    message_id: str  # always "<…>"; synthetic (see `synthetic_id`) when the mail had none
    sender: MailAddress  # From
    subject: str
    text: str  # the best body as plain text
    preview: str  # the customer's own words: no quote, no signature, ~500 chars
    date: datetime | None = None  # aware; None when missing or unreadable
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    reply_to: MailAddress | None = None
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    hint_phones: tuple[str, ...] = ()  # raw strings from the customer's own text
    content_type: str = "text/plain"  # of the whole message, e.g. multipart/report
    headers: Mapping[str, str] = field(default_factory=dict)  # FILTER_HEADERS that are present
    synthetic_id: bool = False

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Message-IDs this mail answers, the direct parent first, then older references."""
        ids = ((self.in_reply_to,) if self.in_reply_to else ()) + tuple(reversed(self.references))
        return tuple(dict.fromkeys(ids))


def parse_message(raw: bytes, *, phone_region: str | None = None) -> ParsedMail:
    """Parse one message. `phone_region` lets national-format phone numbers count as hints."""
    if not isinstance(raw, bytes | bytearray) or not raw.strip():
        raise MailParseError("empty message")
    # compat32: the modern policy parses every header into objects on each access, which took
    # two thirds of the time; headers are decoded here (charsets.decode_words) anyway.
    msg = BytesParser(policy=policy.compat32).parsebytes(bytes(raw))
    if not msg.keys():
        raise MailParseError("no header section: not an email")
    senders = _addresses(msg, "from")
    if not senders:
        raise MailParseError("no From address")
    text, attachments = _body(msg)
    message_id = _first_id(_raw_header(msg, "message-id"))
    reply_to = _addresses(msg, "reply-to")
    # Cleaned as it enters (matching.text): the worker looks the sender up in the database
    # (the rate limit) before intake cleans the event, and PostgreSQL refuses a NUL.
    cleaned: ParsedMail = _cleaned(
        ParsedMail(
            message_id=message_id or f"<{hashlib.sha256(raw).hexdigest()}@synthetic.leadbot>",
            synthetic_id=message_id is None,
            sender=senders[0],
            subject=decode_words(_raw_header(msg, "subject") or ""),
            text=text,
            preview=preview(text),
            date=_date(msg),
            in_reply_to=_first_id(_raw_header(msg, "in-reply-to")),
            references=tuple(dict.fromkeys(_MSGID.findall(_raw_header(msg, "references") or ""))),
            reply_to=reply_to[0] if reply_to else None,
            to=tuple(a.address for a in _addresses(msg, "to")),
            cc=tuple(a.address for a in _addresses(msg, "cc")),
            attachments=attachments,
            hint_phones=find_phones(text, phone_region),
            content_type=_content_type(msg),
            headers=MappingProxyType(
                {
                    name: decode_words(value)
                    for name in FILTER_HEADERS
                    if (value := _raw_header(msg, name)) is not None
                }
            ),
        )
    )
    return cleaned


def _cleaned(value: Any) -> Any:
    """`value` with every text in it cleaned: strings, tuples, mappings and dataclasses
    (ParsedMail, MailAddress, Attachment) all the way down; the very same object when there
    was nothing to clean (the common case costs no copies)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, tuple):
        items = tuple(_cleaned(item) for item in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, Mapping):
        pairs = {_cleaned(k): _cleaned(v) for k, v in value.items()}
        same = all(k in value and value[k] is v for k, v in pairs.items())
        return value if same else MappingProxyType(pairs)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            old = getattr(value, f.name)
            if (new := _cleaned(old)) is not old:
                changes[f.name] = new
        return dataclasses.replace(value, **changes) if changes else value
    return value


def _raw_header(msg: Message, name: str) -> str | None:
    """The first value of a header exactly as received (encoded words still encoded)."""
    for key, value in msg.raw_items():
        if key.lower() == name:
            return str(value)
    return None


def _first_id(value: str | None) -> str | None:
    if not value:
        return None
    found = _MSGID.search(value)
    if found:
        return found[0]
    bare = "".join(value.split())  # some mailers drop the angle brackets
    return f"<{bare}>" if bare and "@" in bare else None


def _addresses(msg: Message, name: str) -> tuple[MailAddress, ...]:
    """All addresses of every header `name`; display names decoded in any charset."""
    values = [str(v) for k, v in msg.raw_items() if k.lower() == name]
    found: list[MailAddress] = []
    for display, address in getaddresses(values):
        address = decode_words(address).strip().strip("<>").lower()
        if address and address not in {a.address for a in found}:
            found.append(MailAddress(address, decode_words(display).strip("\"' ") or None))
    return tuple(found)


def _date(msg: Message) -> datetime | None:
    raw = _raw_header(msg, "date")
    if not raw:
        return None
    try:
        parsed = parsedate_to_datetime(raw)
    except (ValueError, TypeError, IndexError):
        return None
    # "-0000" means "zone unknown"; UTC is the best reading of it.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:  # a header the parser cannot make sense of reads as plain text
        return "text/plain"


def _leaves(part: Message, depth: int = 0) -> Iterator[Message]:
    """Leaf parts in order; an attached message (message/rfc822 …) counts as one leaf."""
    if depth > _MAX_DEPTH:
        return
    if not _content_type(part).startswith("multipart/"):
        yield part
        return
    payload = part.get_payload()
    if isinstance(payload, list):  # a str payload is a multipart whose boundary never shows
        for sub in payload:
            if isinstance(sub, Message):
                yield from _leaves(sub, depth + 1)


def _body(msg: Message) -> tuple[str, tuple[Attachment, ...]]:
    plain: list[str] = []
    html: list[str] = []
    attachments: list[Attachment] = []
    leaves = list(_leaves(msg))
    if not leaves:
        raise MailParseError(f"{_content_type(msg)} without a usable part (broken boundary?)")
    for part in leaves:
        kind = _content_type(part)
        name = _filename(part)
        if kind in ("text/plain", "text/html") and name is None and not _is_attachment(part):
            (plain if kind == "text/plain" else html).append(_part_text(part))
        else:
            attachments.append(Attachment(name or _fallback_name(part), kind, _size(part)))
    text = normalize(plain[0]) if plain else ""
    if not text.strip() and html:  # an empty text/plain next to a real HTML part
        text = html_to_text(html[0])
    return text, tuple(attachments)


def _is_attachment(part: Message) -> bool:
    try:
        return part.get_content_disposition() == "attachment"
    except Exception:
        return False


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename() or part.get_param("name")
        if isinstance(name, tuple):  # an RFC 2231 (charset, language, value) triple
            name = collapse_rfc2231_value(name)
    except Exception:
        return None
    if not isinstance(name, str) or not name.strip():
        return None
    # Outlook puts RFC 2047 words in quoted parameters, which RFC 2231 parsing leaves alone.
    return decode_words(name) if "=?" in name else " ".join(repair(name).split())


def _fallback_name(part: Message) -> str:
    if _content_type(part) == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            subject = decode_words(_raw_header(inner[0], "subject") or "").strip()
            return f"{subject or 'message'}.eml"
    return "unnamed"


def _size(part: Message) -> int:
    """Size of the decoded content in bytes (an attached mail: its serialized size)."""
    try:
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            return len(data)
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return len(inner[0].as_bytes())
    except Exception:  # serializing a broken attached mail may fail; its size is then unknown
        pass
    return 0


def _part_text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    return decode_bytes(data, charset)
