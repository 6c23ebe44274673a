"""The storage rule for text: properties over arbitrary strings and JSON documents."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from matching.event import Attachment, Channel, Handle, InboundEvent
from matching.text import (
    _MAYBE_BAD_UTF8,
    clean_event,
    clean_json,
    clean_text,
    is_clean,
    is_clean_json,
)

# Every code point, lone surrogates and control characters included.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=15,
)


def storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return all(c in "\t\n\r" or unicodedata.category(c) != "Cc" for c in text)


def by_recursion(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [by_recursion(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(k): by_recursion(v) for k, v in value.items()}
    return value


@given(any_text)
def test_clean_text_is_storable_idempotent_and_keeps_clean_text(text: str) -> None:
    cleaned = clean_text(text)
    assert storable(cleaned) and is_clean(cleaned)
    assert clean_text(cleaned) == cleaned
    if storable(text):
        assert cleaned is text
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in text):  # then cleaning only removes
        assert cleaned == "".join(c for c in text if storable(c))


def test_clean_text_examples() -> None:
    assert clean_text("Anna\x00 Meier\x1b[0m\u0085\x7f") == "Anna Meier[0m"
    assert clean_text("tab\tnew\nline\r") == "tab\tnew\nline\r"
    assert clean_text("a\ud800b\udfffc") == "a\ufffdb\ufffdc"
    assert clean_text("\ud83d\ude00") == "\U0001f600"  # a pair written as two halves


@settings(max_examples=300)
@given(json_values)
def test_clean_json_equals_cleaning_every_string_and_key(value: Any) -> None:
    cleaned = clean_json(value)
    assert cleaned == by_recursion(value)
    json.dumps(cleaned, ensure_ascii=False).encode("utf-8")  # storable as text
    if by_recursion(value) == value and json.dumps(value) == json.dumps(cleaned):
        assert cleaned is value


@settings(max_examples=300)
@given(json_values, st.booleans())
def test_json_text_called_clean_needs_no_cleaning(value: Any, ascii_only: bool) -> None:
    # The webhook's shortcut: a body is_clean_json calls clean is stored as it came.
    try:
        text = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate written as it is: not UTF-8 at all
        return
    if is_clean_json(text):
        assert by_recursion(json.loads(text)) == json.loads(text)


@settings(max_examples=500)
@given(st.binary(max_size=300) | st.text(max_size=100).map(lambda t: t.encode("utf-8", "replace")))
def test_is_clean_json_prefilter_answers_as_the_pattern(text: bytes) -> None:
    # The translate pass only ever says "clean" for texts the pattern finds nothing in.
    assert is_clean_json(text) == (_MAYBE_BAD_UTF8.search(text) is None)


def test_is_clean_json_examples() -> None:
    assert is_clean_json('{"name": "Zoë Müller", "n": 1}'.encode())
    for bad in ('{"a": "\\u0000"}', '{"a": "x\u0085"}', '{"a": "x\x7f"}', '{"a\\n": 1}'):
        assert not is_clean_json(bad.encode("utf-8", "surrogatepass"))


def test_clean_json_reads_escapes_not_text_that_looks_like_them() -> None:
    doc = json.loads(r'{"a\u0000": ["\\u0000", "\u0000x", "\ud800", "\ud83d\ude00\b"]}')
    assert clean_json(doc) == {"a": ["\\u0000", "x", "\ufffd", "\U0001f600"]}
    deep: Any = json.loads("[" * 900 + '"\\u0000"' + "]" * 900)  # as deep as json reads
    inner = clean_json(deep)
    for _ in range(900):
        inner = inner[0]
    assert inner == ""


def test_clean_event_cleans_every_text_and_keeps_a_clean_event() -> None:
    bad = "x\x00\ud800"
    event = InboundEvent(
        channel=Channel.CALL,
        external_id=bad,
        occurred_at=datetime(2024, 1, 1, tzinfo=UTC),
        display_name=bad,
        phones=(bad, "+4930"),
        handles=(Handle("telegram", bad, bad),),
        attachments=(Attachment(bad, "text/plain", 1),),
        text="line\nbreak" + bad,
        meta={bad: [bad]},
    )
    cleaned = clean_event(event)
    assert cleaned.display_name == "x\ufffd" and cleaned.external_id == "x\ufffd"
    assert cleaned.phones == ("x\ufffd", "+4930")
    assert cleaned.handles == (Handle("telegram", "x\ufffd", "x\ufffd"),)
    assert cleaned.attachments[0].name == "x\ufffd"
    assert cleaned.text == "line\nbreakx\ufffd"
    assert cleaned.meta == {"x\ufffd": ["x\ufffd"]}
    json.dumps(cleaned.to_json(), ensure_ascii=False).encode("utf-8")
    assert clean_event(cleaned) is cleaned
