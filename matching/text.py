"""The one rule for text Leadbot stores: what a database can never hold is cleaned away.

PostgreSQL refuses NUL in text, and neither backend can encode a lone surrogate (JSON's
"\\ud800" parses to one). C0 / C1 control characters other than tab, newline and carriage
return mean nothing in a name or a message and break terminals, CSV files and Telegram
messages. So every text that reaches the CRM is cleaned before a channel acknowledges it:

- a lone surrogate becomes U+FFFD (the replacement character), so the reader sees a gap;
- NUL and the other control characters (Unicode category Cc: U+0000-U+001F, U+007F-U+009F)
  except tab, LF and CR are dropped.

Cleaning, not refusing: a customer's mail with one stray control byte is still a customer.
Input that is structurally unreadable (bytes that are not UTF-8, JSON that does not parse)
is the channel's to refuse with a 400. Everything here is pure and never raises on text.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, TypeVar

from matching.event import Attachment, Handle, InboundEvent

# One character that cannot be stored as it is.
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# In `json.dumps(..., ensure_ascii=True)` text every such character is an escape: \b, \f, or
# \uXXXX (a non-BMP character is a surrogate pair of escapes). `_MAYBE_BAD` is a cheap
# over-approximation; `_ESCAPE` reads escapes one by one so an escaped backslash ("\\\\u0000"
# is the six characters \u0000, not NUL) is never taken for the start of one.
_MAYBE_BAD = re.compile(r"\\(?:[bf]|u(?:00[0-1]|007[fF]|00[89]|[dD][89a-fA-F]))")
_ESCAPE = re.compile(
    r"\\(?:u(?:([dD][89abAB][0-9a-fA-F]{2})(\\u[dD][c-fC-F][0-9a-fA-F]{2})?|([0-9a-fA-F]{4}))|.)"
)

T = TypeVar("T")


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def is_clean(text: str) -> bool:
    """True when `text` can be stored as it is."""
    return _BAD_CHAR.search(text) is None


def clean_text(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD and control characters other than tab,
    LF and CR removed; the very same object when there was nothing to clean."""
    if _BAD_CHAR.search(text) is None:
        return text
    if _SURROGATE.search(text) is not None:
        # Through UTF-16: a high half followed by a low one is one character (as JSON reads
        # "\\ud83d\\ude00"), any other half is an error that "replace" turns into U+FFFD.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return _CONTROL.sub("", text)


def _clean_escape(match: re.Match[str]) -> str:
    high, low, code = match.groups()
    if high is not None:  # with its low half: one character outside the BMP
        return match.group() if low is not None else "\\ufffd"
    if code is None:  # \" \\ \/ \n \r \t stay; \b and \f are control characters
        return "" if match.group() in ("\\b", "\\f") else match.group()
    point = int(code, 16)
    if 0xDC00 <= point <= 0xDFFF:
        return "\\ufffd"  # a low half with no high one before it
    if point in (0x09, 0x0A, 0x0D) or not (point < 0x20 or 0x7F <= point <= 0x9F):
        return match.group()
    return ""


def clean_json(value: T) -> T:
    """A JSON value (dicts, lists, strings, numbers …) with every string cleaned, dict keys
    too; the very same object when there was nothing to clean.

    Works on the value's JSON text rather than by recursion, so a document as deep as the
    JSON parser allowed is cleaned too. A value JSON cannot encode is returned as it is.
    """
    if isinstance(value, str):
        return clean_text(value)  # type: ignore[return-value]
    if value is None or isinstance(value, bool | int | float):
        return value
    try:
        dumped = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        return value  # not JSON: channels only hand JSON documents over
    if _MAYBE_BAD.search(dumped) is None:
        return value
    cleaned = _ESCAPE.sub(_clean_escape, dumped)
    if cleaned == dumped:
        return value
    result: T = json.loads(cleaned)
    return result


# In UTF-8 JSON text, what may stand for a character cleaning changes: an escape (a backslash),
# a control character as it is, or C1 (U+0080-U+009F, encoded C2 80-C2 9F). A lone surrogate
# can only be an escape: UTF-8 cannot encode one.
_MAYBE_BAD_UTF8 = re.compile(rb"[\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\xc2[\x80-\x9f]")
# Every byte but those the pattern starts with: a text of these alone has nothing to clean.
# bytes.translate deleting them runs in one C pass; the pattern's alternation tries every
# position in turn, several times slower on a webhook body.
_PLAIN_BYTES = bytes(b for b in range(256) if _MAYBE_BAD_UTF8.match(bytes([b, 0x80])) is None)


def is_clean_json(text: bytes) -> bool:
    """True when the UTF-8 JSON text `text` holds no string that `clean_json` would change (a
    cheap test on the bytes: an escaped quote or newline also answers False)."""
    return not text.translate(None, _PLAIN_BYTES) or _MAYBE_BAD_UTF8.search(text) is None


def _clean_optional(text: str | None) -> str | None:
    return None if text is None else clean_text(text)


def _clean_strings(items: tuple[str, ...]) -> tuple[str, ...]:
    cleaned = tuple(clean_text(s) for s in items)
    return items if all(a is b for a, b in zip(cleaned, items, strict=True)) else cleaned


def _clean_handle(handle: Handle) -> Handle:
    kind, ident, name = clean_text(handle.kind), clean_text(handle.id), handle.username
    name = _clean_optional(name)
    if kind is handle.kind and ident is handle.id and name is handle.username:
        return handle
    return Handle(kind, ident, name)


def _clean_attachment(item: Attachment) -> Attachment:
    name, kind = clean_text(item.name), clean_text(item.content_type)
    if name is item.name and kind is item.content_type:
        return item
    return Attachment(name, kind, item.size)


_TEXT_FIELDS = tuple(
    f.name for f in dataclasses.fields(InboundEvent) if f.type in ("str", "str | None")
)


def _all_text(event: InboundEvent) -> str:
    parts = [getattr(event, name) or "" for name in _TEXT_FIELDS]
    parts += event.phones + event.emails + event.hint_phones
    for h in event.handles:
        parts += (h.kind, h.id, h.username or "")
    for a in event.attachments:
        parts += (a.name, a.content_type)
    return "\n".join(parts)


def clean_event(event: InboundEvent) -> InboundEvent:
    """The event with every text in it cleaned (`clean_text`, `clean_json` for meta); the
    very same event when there was nothing to clean."""
    # Every event passes here before it is acknowledged: one search over all its text is
    # the common case (about half the time of going field by field).
    if _BAD_CHAR.search(_all_text(event)) is None and clean_json(event.meta) is event.meta:
        return event
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, str):
            cleaned: Any = clean_text(value)
        elif f.name in ("phones", "emails", "hint_phones"):
            cleaned = _clean_strings(value)
        elif f.name == "handles":
            handles = tuple(_clean_handle(h) for h in value)
            same = all(a is b for a, b in zip(handles, value, strict=True))
            cleaned = value if same else handles
        elif f.name == "attachments":
            items = tuple(_clean_attachment(a) for a in value)
            same = all(a is b for a, b in zip(items, value, strict=True))
            cleaned = value if same else items
        elif f.name == "meta":
            cleaned = clean_json(value)
        else:
            continue
        if cleaned is not value:
            changes[f.name] = cleaned
    return dataclasses.replace(event, **changes) if changes else event
