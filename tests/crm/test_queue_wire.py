"""The queue's wire format of a raw item: what goes in comes out (kind, received time to the
bit, document), whatever the kind's characters, and the document as the text received."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from crm.queue import RawInput, decode_item, encode_item


@given(
    kind=st.text(max_size=20),
    at=st.floats(min_value=0, max_value=1e12, allow_nan=False) | st.integers(0, 2**53).map(float),
)
def test_a_raw_item_round_trips(kind: str, at: float) -> None:
    doc = {"event": "call.ringing", "call_id": "c-1", "note": 'ä " \\ \u2028'}
    text = json.dumps(doc, ensure_ascii=False).encode()
    for raw in (
        RawInput(kind, at, doc),
        RawInput(kind, at, doc, text),
        RawInput(kind, at, None, text),
    ):
        assert raw.document() == doc
        wire = encode_item(raw)
        data = json.loads(wire)
        assert set(data) == {"raw", "at", "doc"}
        item = decode_item(data)
        assert isinstance(item, RawInput)
        assert (item.kind, item.doc) == (kind, doc)
        assert item.received_at == at and math.copysign(1, item.received_at) == 1


def test_the_received_text_is_queued_as_it_came() -> None:
    text = b'{"call_id":  "c-2", "event": "call.ended"}'
    wire = encode_item(RawInput("call.generic", 1.25, json.loads(text), text))
    assert wire == b'{"raw":"call.generic","at":1.25,"doc":' + text + b"}"


def test_a_raw_item_without_its_document_is_read_from_its_text() -> None:
    text = b'{"call_id": "c-3", "n": 1e400, "event": "call.ended"}'
    item = decode_item(json.loads(encode_item(RawInput("call.generic", 2.0, None, text))))
    assert isinstance(item, RawInput)
    assert item.doc == RawInput("call.generic", 2.0, None, text).document() == json.loads(text)
    for bad in (RawInput("k", 1.0, None), RawInput("k", 1.0, None, b"[1]")):
        try:
            bad.document()
        except ValueError:
            continue
        raise AssertionError("no document")
