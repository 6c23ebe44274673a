"""Opaque keyset-paging cursors: a time and integers (ids, a source rank), in a URL-safe
string a page hands out and takes back; a damaged one is a user's error, not a crash."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from crm.errors import InvalidInput


def encode_cursor(at: datetime, *ints: int) -> str:
    raw = "|".join([at.isoformat(), *map(str, ints)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, ints: int, reload: str) -> tuple[datetime, list[int]]:
    """The time and `ints` integers of a cursor; `reload` names what to reload when broken."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, *rest = raw.split("|")
        at = datetime.fromisoformat(when)
        if at.tzinfo is None or len(rest) != ints:
            raise ValueError(cursor)
        return at, [int(x) for x in rest]
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInput(f"this page link is broken; reload the {reload}") from None
