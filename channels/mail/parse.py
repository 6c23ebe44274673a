"""Raw RFC 5322 bytes → `ParsedMail`: pure, tolerant of broken mail, never loses a message.

Anything odd but readable (unknown charsets, bad dates, 8-bit headers) is decoded as well as
possible; only a message with no usable structure raises `MailParseError`, so the caller can
move it to quarantine.
"""

from __future__ import annotations

import binascii
import dataclasses
import hashlib
import quopri
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value, parsedate_to_datetime
from types import MappingProxyType
from typing import Any

from channels.event import Attachment
from channels.mail.addresses import AddressList, MailAddress, parse_addresses
from channels.mail.body import html_to_text, normalize, own_text, phones_in_own, preview_of_own
from channels.mail.charsets import decode_bytes, decode_words, repair
from matching.text import clean_text

__all__ = ["MailAddress", "MailParseError", "ParsedMail", "parse_message"]

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
    "sender",
    "x-failed-recipients",  # Exim and others on a bounce
    "x-mailer",
    "x-mailman-version",
    "x-listserver",
    "list-post",
    "list-owner",
    "mailing-list",  # ezmlm, Yahoo Groups
)
_MSGID = re.compile(r"<[^<>\s]+>")
_MAX_DEPTH = 20  # nesting deeper than this is an attack or a loop, not a customer
# What text is not: the replacement character and control characters but tab, LF, FF, CR.
_ODD = re.compile("[\ufffd\x00-\x08\x0b\x0e-\x1f]")
_WIRE = policy.compat32.clone(linesep="\r\n")  # how a mail travels: CRLF line ends


class MailParseError(ValueError):
    """The bytes are not a usable email; the message belongs in quarantine."""


@dataclass(frozen=True, slots=True)
class ParsedMail:
    message_id: str  # always "<…>"; synthetic (see `synthetic_id`) when the mail had none
    sender: MailAddress  # From; Reply-To or Sender when From has no usable address
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
    sender_header: str = "from"  # the header `sender` was read from
    empty_groups: tuple[str, ...] = ()  # To / Cc groups without members ("list:;")
    part_types: tuple[str, ...] = ()  # content types of every part, containers included

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
    # Every part's content type, read once: the stdlib parses the header again on each ask.
    parts = list(_walk(msg))
    types = {id(part): kind for part, kind in parts}
    # Raw 8-bit header bytes are most likely in the charset the body declares.
    headers = _header_values(msg)
    hint = _declared_charset(parts) if _raw_8bit(headers) else None
    reply_to = _addresses(headers, "reply-to", hint).mailboxes
    sender_header, sender = _sender(headers, hint, reply_to)
    text, attachments = _body(msg, hint, types)
    own = own_text(text)  # the preview and the phone hints both read the customer's words
    first = {name: values[0] for name, values in headers.items()}
    message_id = _first_id(first.get("message-id"))
    recipients = _addresses(headers, "to", hint), _addresses(headers, "cc", hint)
    # Cleaned as it enters (matching.text): the worker looks the sender up in the database
    # (the rate limit) before intake cleans the event, and PostgreSQL refuses a NUL.
    cleaned: ParsedMail = _cleaned(
        ParsedMail(
            message_id=message_id or f"<{hashlib.sha256(raw).hexdigest()}@synthetic.leadbot>",
            synthetic_id=message_id is None,
            sender=sender,
            sender_header=sender_header,
            subject=decode_words(first.get("subject", ""), hint),
            text=text,
            preview=preview_of_own(own),
            date=_date(first.get("date")),
            in_reply_to=_first_id(first.get("in-reply-to")),
            references=tuple(dict.fromkeys(_MSGID.findall(first.get("references", "")))),
            reply_to=reply_to[0] if reply_to else None,
            to=tuple(a.address for a in recipients[0].mailboxes),
            cc=tuple(a.address for a in recipients[1].mailboxes),
            empty_groups=recipients[0].empty_groups + recipients[1].empty_groups,
            part_types=tuple(dict.fromkeys(kind for _, kind in parts)),
            attachments=attachments,
            hint_phones=phones_in_own(own, phone_region),
            content_type=types[id(msg)],
            headers=MappingProxyType(
                {
                    name: decode_words(value, hint)
                    for name in FILTER_HEADERS
                    if (value := first.get(name)) is not None
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
        items = [_cleaned(item) for item in value]
        changed = any(a is not b for a, b in zip(items, value, strict=True))
        return tuple(items) if changed else value
    if isinstance(value, Mapping):
        pairs = {_cleaned(k): _cleaned(v) for k, v in value.items()}
        same = all(k in value and value[k] is v for k, v in pairs.items())
        return value if same else MappingProxyType(pairs)
    names = _field_names(type(value))
    if names is None:
        return value
    changes = {}
    for name in names:
        old = getattr(value, name)
        if old is not None and (new := _cleaned(old)) is not old:
            changes[name] = new
    return dataclasses.replace(value, **changes) if changes else value


_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _field_names(kind: type) -> tuple[str, ...] | None:
    """The field names of a dataclass type (asked once per type), None for other types."""
    if kind not in _FIELDS:
        fields = dataclasses.fields(kind) if dataclasses.is_dataclass(kind) else None
        _FIELDS[kind] = None if fields is None else tuple(f.name for f in fields)
    return _FIELDS[kind]


def _first_values(msg: Message) -> dict[str, str]:
    """The first value of each header exactly as received (encoded words still encoded),
    under its lower-case name."""
    first: dict[str, str] = {}
    for key, value in msg.raw_items():
        first.setdefault(key.lower(), str(value))
    return first


def _first_id(value: str | None) -> str | None:
    if not value:
        return None
    found = _MSGID.search(value)
    if found:
        return found[0]
    bare = "".join(value.split())  # some mailers drop the angle brackets
    return f"<{bare}>" if bare and "@" in bare else None


def _header_values(msg: Message) -> dict[str, list[str]]:
    """Every value of each header exactly as received, in order, under its lower-case name:
    one pass over the headers instead of one per header asked for."""
    values: dict[str, list[str]] = {}
    for key, value in msg.raw_items():
        values.setdefault(key.lower(), []).append(str(value))
    return values


def _addresses(headers: dict[str, list[str]], name: str, hint: str | None) -> AddressList:
    """All addresses of every header `name`; display names decoded in any charset."""
    return parse_addresses(headers.get(name, ()), hint)


def _sender(
    headers: dict[str, list[str]], hint: str | None, reply_to: tuple[MailAddress, ...]
) -> tuple[str, MailAddress]:
    """Who sent the mail, and the header that says so: From's first usable address, else
    Reply-To's, else Sender's (with From's name). A From without a usable address and none
    of those is a mail nobody can answer: quarantine, never a guess."""
    found = _addresses(headers, "from", hint)
    if found.mailboxes:
        return "from", found.mailboxes[0]
    for header, mailboxes in (
        ("reply-to", reply_to),
        ("sender", _addresses(headers, "sender", hint).mailboxes),
    ):
        if mailboxes:
            name = mailboxes[0].name or (found.rejected[0] if found.rejected else None)
            return header, MailAddress(mailboxes[0].address, name or None)
    held = [*found.rejected, *(f"{group}:;" for group in found.empty_groups)]
    if not held:
        raise MailParseError("no From address")
    shown = clean_text(", ".join(held))[:200]
    raise MailParseError(f"From has no usable address ({shown!r}) and no Reply-To or Sender")


def _raw_8bit(headers: dict[str, list[str]]) -> bool:
    return any(not value.isascii() for values in headers.values() for value in values)


def _declared_charset(parts: list[tuple[Message, str]]) -> str | None:
    """The first charset a text part declares, else the first any part declares."""
    declared: list[tuple[bool, str]] = []
    for part, kind in parts:
        try:
            charset = part.get_content_charset()
        except Exception:  # a parameter the parser cannot read
            continue
        if charset:
            declared.append((not kind.startswith("text/"), charset))
    return sorted(declared, key=lambda d: d[0])[0][1] if declared else None


def _walk(part: Message, depth: int = 0) -> Iterator[tuple[Message, str]]:
    """Every part with its content type, containers included, attached messages not entered."""
    kind = _content_type(part)
    yield part, kind
    # is_multipart() first: get_payload() of an 8-bit leaf decodes it just to be asked.
    if depth < _MAX_DEPTH and part.is_multipart() and kind[:8] != "message/":
        for sub in part.get_payload():
            if isinstance(sub, Message):
                yield from _walk(sub, depth + 1)


def _date(raw: str | None) -> datetime | None:
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


def _type_of(part: Message, types: dict[int, str]) -> str:
    kind = types.get(id(part))
    return _content_type(part) if kind is None else kind


def _leaves(part: Message, types: dict[int, str], depth: int = 0) -> Iterator[tuple[Message, str]]:
    """Leaf parts in order, with their content types; an attached message (message/rfc822 …)
    counts as one leaf."""
    if depth > _MAX_DEPTH:
        return
    kind = _type_of(part, types)
    if not kind.startswith("multipart/"):
        yield part, kind
        return
    if not part.is_multipart():  # a multipart whose boundary never shows: one leaf
        yield part, kind
        return
    for sub in part.get_payload():
        if isinstance(sub, Message):
            yield from _leaves(sub, types, depth + 1)


def _body(
    msg: Message, hint: str | None, types: dict[int, str]
) -> tuple[str, tuple[Attachment, ...]]:
    plain: list[str] = []
    html: list[str] = []
    attachments: list[Attachment] = []
    unreadable: list[str] = []
    for part, kind in _leaves(msg, types):
        name = _filename(part)
        if kind.startswith("multipart/"):
            # Its boundary never shows. Mail clients show such a body as plain text; so do
            # we when it is text, and keep the mail for quarantine when it is not.
            stray = _stray_text(part, hint)
            if stray is not None:
                plain.append(stray)
            else:
                unreadable.append(kind)
        elif kind in ("text/plain", "text/html") and name is None and not _is_attachment(part):
            (plain if kind == "text/plain" else html).append(_part_text(part))
        else:
            attachments.append(Attachment(name or _fallback_name(part, kind), kind, _size(part)))
    if unreadable and not (plain or html or attachments):
        raise MailParseError(f"{unreadable[0]} without a usable part (broken boundary?)")
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
        filename = part.get_filename()
        # get_filename() already falls back to Content-Type's name when there is no filename;
        # only a blank filename leaves that one to ask for.
        name = part.get_param("name") if filename == "" else filename
        if isinstance(name, tuple):  # an RFC 2231 (charset, language, value) triple
            name = collapse_rfc2231_value(name)
    except Exception:
        return None
    if not isinstance(name, str) or not name.strip():
        return None
    # Outlook puts RFC 2047 words in quoted parameters, which RFC 2231 parsing leaves alone.
    return decode_words(name) if "=?" in name else " ".join(repair(name).split())


def _fallback_name(part: Message, kind: str) -> str:
    if kind == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            subject = decode_words(_first_values(inner[0]).get("subject", "")).strip()
            return f"{subject or 'message'}.eml"
    return "unnamed"


def _size(part: Message) -> int:
    """Size of the decoded content in bytes (an attached mail: as it travels, CRLF lines)."""
    try:
        inner = part.get_payload()
        if isinstance(inner, list):
            if not inner or not isinstance(inner[0], Message):
                return 0
            return len(_transfer_decoded(part, inner[0].as_bytes(policy=_WIRE)))
        data = part.get_payload(decode=True)
        return len(data) if isinstance(data, bytes) else 0
    except Exception:  # serializing a broken attached mail may fail; its size is then unknown
        return 0


def _transfer_decoded(part: Message, data: bytes) -> bytes:
    """`data` undone from the part's Content-Transfer-Encoding: some mailers base64-encode
    parts that must not be (an attached message, a multipart)."""
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    try:
        if encoding == "base64":
            return binascii.a2b_base64(b"".join(data.split()) + b"==")
        if encoding == "quoted-printable":
            return quopri.decodestring(data)
    except (binascii.Error, ValueError):
        pass
    return data


def _stray_text(part: Message, hint: str | None) -> str | None:
    """The body of a multipart whose boundary never shows, when it reads as text."""
    data = part.get_payload(decode=True)  # bytes, transfer encoding undone: not a list
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    text = decode_bytes(data if isinstance(data, bytes) else b"", charset, hint)
    odd = len(_ODD.findall(text))
    return text if text.strip() and odd * 100 <= len(text) else None


def _part_text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    return decode_bytes(data, charset)
