"""The Redis (and journal) wire format of queue items."""

from __future__ import annotations

import json
import logging
from typing import Any

import msgspec

from crm.queue.contract import QueueItem, RawInput
from matching.event import InboundEvent

log = logging.getLogger(__name__)


# Redis wire format: a stream entry's field "items" holds a JSON array of items, each
# {"event": <InboundEvent.to_json()>} or {"raw": kind, "at": unix seconds, "doc": {...}}.
# Puts that wait for the line share an entry (up to MAX_BATCH items): one XADD instead of one
# per item is most of what a queued webhook request costs. Entries of older versions, with a
# single field "event", are still read.
def encode_item(item: QueueItem) -> bytes:
    if isinstance(item, RawInput):
        doc = item.text if item.text is not None else json.dumps(item.document()).encode()
        head = _RAW_HEADS.get(item.kind)
        if head is None:
            head = _RAW_HEADS[item.kind] = b'{"raw":%s,"at":' % _encode(item.kind)
        # received_at is a clock reading: finite, so msgspec writes it as repr() would.
        return head + _encode(float(item.received_at)) + b',"doc":' + doc + b"}"
    return b'{"event":%s}' % json.dumps(item.to_json()).encode()


# Each queued webhook request is encoded here: the start of a raw item is made once per kind
# (the kinds are the channels' constants), the rest by concatenation.
_RAW_HEADS: dict[str, bytes] = {}
_encode = msgspec.json.Encoder().encode


def decode_item(data: Any) -> QueueItem:
    if not isinstance(data, dict):
        raise ValueError("a queue item is a JSON object")
    if "event" in data:
        return InboundEvent.from_json(data["event"])
    doc = data["doc"]
    if not isinstance(doc, dict):
        raise ValueError("a raw input's doc is a JSON object")
    return RawInput(str(data["raw"]), float(data["at"]), doc)


def entry_items(fields: Any) -> tuple[list[QueueItem], list[bytes]]:
    """The items of one stream entry, and the JSON of those that cannot be read (the whole
    entry's fields when it is not one this version knows)."""
    batch = fields.get(b"items") or fields.get("items")
    if batch is None:
        one = fields.get(b"event") or fields.get("event")
        try:
            return [InboundEvent.from_json(json.loads(one or ""))], []
        except (TypeError, ValueError, KeyError):
            return [], [fields_json(fields)]
    try:
        data = json.loads(batch)
        if not isinstance(data, list):
            raise ValueError("items is a JSON array")
    except (TypeError, ValueError):
        return [], [fields_json(fields)]
    items: list[QueueItem] = []
    bad: list[bytes] = []
    for raw in data:
        try:
            items.append(decode_item(raw))
        except (TypeError, ValueError, KeyError):
            bad.append(json.dumps(raw).encode())
    return items, bad


def fields_json(fields: Any) -> bytes:
    def text(value: Any) -> str:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    return json.dumps({text(k): text(v) for k, v in fields.items()}).encode()


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def id_ms(entry_id: str) -> int:
    """The unix milliseconds a stream id starts with (Redis' clock when it was added)."""
    return int(entry_id.split("-", 1)[0])
