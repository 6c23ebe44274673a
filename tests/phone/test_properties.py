"""Whatever a client sends, each parser returns a result or raises only its documented error:
never anything an HTTP handler would turn into a 500."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.event import InboundEvent
from channels.phone.bitrix import (
    finish_report,
    parse_finish,
    parse_register,
    parse_search,
    register_report,
)
from channels.phone.bitrix_params import (
    REGISTER_PARAMS,
    BitrixError,
    parse_bitrix_params,
)
from channels.phone.calls import (
    _NUMBER_PUNCTUATION,
    CallReport,
    PayloadError,
    _compact,
    call_to_event,
    plainly_internal,
)
from channels.phone.generic import (
    generic_report,
    parse_generic,
    read_call,
    read_generic,
    usual_report,
)
from channels.phone.signatures import verify_generic
from channels.phone.twilio import parse_twilio
from crm.queue import RawInput, decode_item, encode_item
from httpkit import SignatureError
from httpkit.twilio import verify_twilio
from matching.text import clean_json, is_clean_json

RECEIVED = datetime(2024, 5, 14, tzinfo=UTC)

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_phoneish = st.sampled_from(
    ["+4930123456", "030 123456", "101", "anonymous", "", "client:bob", "sip:1@x", "+266696687"]
) | st.text(max_size=25)


def _event_is_sane(report: CallReport) -> None:
    """Turning any accepted report into an event never fails and survives serialization."""
    event = call_to_event(
        report,
        line_region="DE",
        internal_extensions=frozenset({"101"}),
        our_numbers=frozenset({"+4989111222"}),
        received_at=RECEIVED,
    )
    if event is not None:
        assert InboundEvent.from_json(json.loads(json.dumps(event.to_json()))) == event
    # The webhook's quick check never calls internal what the full check records.
    quick = plainly_internal(
        report,
        line_region="DE",
        internal_extensions=frozenset({"101"}),
        our_numbers=frozenset({"+4989111222"}),
    )
    assert not (quick and event is not None)


def _read_twice(body: bytes) -> tuple[CallReport, dict[str, Any], bytes | None]:
    """What the webhook queued when it decoded every body into a dict first."""
    received, utf8 = read_generic(body)
    clean = utf8 and is_clean_json(body)
    doc = received if clean else clean_json(received)
    report = (usual_report(body) if clean else None) or generic_report(doc)
    return report, doc, body if utf8 and doc is received else None


def _read_call_as_before(body: bytes) -> None:
    """The webhook's one reading of the usual body queues what reading it twice did: the same
    report, document and text, or the same refusal."""
    try:
        before = _read_twice(body)
    except PayloadError as error:
        try:
            read_call(body)
        except PayloadError as now:
            assert (now.status, now.reason) == (error.status, error.reason)
            return
        raise AssertionError(f"accepted what was refused: {error.reason}") from None
    report, doc, text = read_call(body)
    assert (report, text) == (before[0], before[2])
    document = doc if doc is not None else RawInput("call.generic", 1.0, None, text).document()
    assert json.dumps(document) == json.dumps(before[1])


def _generic_or_error(body: bytes) -> None:
    _read_call_as_before(body)
    try:
        report = parse_generic(body)
    except PayloadError as error:
        assert error.status in (400, 422) and error.reason
        # The webhook's one-pass reading never accepts what the full check refuses.
        assert usual_report(body) is None
        return
    # … and what it accepts, it reads as the full check does (the webhook takes it only for
    # a clean UTF-8 body, whose document cleaning leaves as it is).
    usual = usual_report(body)
    assert usual is None or usual == report
    _event_is_sane(report)
    # Queued as received (the webhook's way when the body is UTF-8), the document comes out
    # of the queue's wire format as the webhook read it.
    doc, utf8 = read_generic(body)
    # The C parser's reading is the json module's, and so is its word on the encoding.
    assert json.dumps(doc) == json.dumps(json.loads(body))
    assert utf8 == (json.detect_encoding(body) == "utf-8")
    text = body if utf8 else None
    item = decode_item(json.loads(encode_item(RawInput("call.generic", 1.5, doc, text))))
    assert isinstance(item, RawInput)
    assert json.dumps(item.doc) == json.dumps(doc)


@given(st.binary(max_size=300))
def test_generic_arbitrary_bytes(body: bytes) -> None:
    _generic_or_error(body)


@settings(max_examples=300)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "event": st.sampled_from(["call.ringing", "call.answered", "call.ended", "call.missed"])
            | _json,
            "call_id": st.text(min_size=1, max_size=10) | _json,
            "direction": st.sampled_from(["incoming", "outgoing", "inbound"]) | _json,
            "from": _phoneish | _json,
            "to": _phoneish | _json,
            "line": _json,
            "agent_extension": _json,
            "timestamp": st.sampled_from(["2024-05-14T09:00:00Z", "2024-05-14"]) | _json,
            "started_at": st.integers(-(10**20), 10**20) | st.floats() | _json,
            "ended_at": st.text(max_size=40) | _json,
            "duration": st.integers(-5, 10**12) | _json,
            "disposition": st.sampled_from(["answered", "busy", "MISSED", "x"]) | _json,
            "recording_url": st.sampled_from(["https://r/1", "http:", "javascript:x"]) | _json,
            "caller_name": _json,
        },
    )
)
def test_generic_arbitrary_documents(doc: dict[str, Any]) -> None:
    _generic_or_error(json.dumps(doc).encode())
    _generic_or_error(json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    _generic_or_error(json.dumps(doc, ensure_ascii=False).encode("utf-16"))


# JSON as msgspec reads it (no NaN or Infinity, which only the json module accepts).
_strict_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_stamp = st.sampled_from(["2024-05-14T09:00:00Z", " 2024-05-14T09:00:00+02:00"]) | st.integers(
    0, 2 * 10**9
)


@given(
    st.fixed_dictionaries(
        {
            "event": st.sampled_from(
                ["call.ringing", "call.answered", "call.ended", "call.missed"]
            ),
            "call_id": st.text("ab1-: ", min_size=1, max_size=10).filter(str.strip)
            | st.integers(0, 10**30),
            "direction": st.sampled_from(["incoming", "outgoing", "inbound", " Outbound "]),
        },
        optional={
            "from": _phoneish | st.none(),
            "to": _phoneish | st.none(),
            "line": _phoneish | st.none(),
            "agent_extension": st.sampled_from(["101", " 7 ", ""]) | st.integers(0, 999),
            "timestamp": _stamp,
            "started_at": _stamp,
            "answered_at": _stamp | st.none(),
            "ended_at": _stamp,
            "duration": st.integers(0, 10**4) | st.sampled_from([12.0, None]),
            "disposition": st.sampled_from(["busy", "MISSED", " declined ", "failed", None]),
            "recording_url": st.sampled_from(["https://r/1", " http://r/2 ", None]),
            "caller_name": st.text(max_size=10) | st.none(),
            "extra": _strict_json,
        },
    )
)
def test_usual_documents_are_read_in_one_pass_as_the_full_check_reads_them(
    doc: dict[str, Any],
) -> None:
    body = json.dumps(doc, ensure_ascii=False).encode()
    assert is_clean_json(body) or not all(
        isinstance(v, str) and v.isprintable() for v in doc.values()
    )
    assert usual_report(body) == generic_report(doc)
    _read_call_as_before(body)


@pytest.mark.parametrize(
    "extra",
    [b'"\xff"', b'"\xed\xa0\x80"', b'"\xc3\xa4"', b"1e400", b'"\\ud800"', b"NaN", b"[" * 3000],
)
def test_values_the_one_reading_skips_are_judged_as_before(extra: bytes) -> None:
    # Invalid UTF-8 in a key it skips, a number out of its range, an escaped surrogate …
    body = b'{"event": "call.ringing", "call_id": "c", "direction": "incoming", "x": %s}' % extra
    _read_call_as_before(body)


def test_a_repeated_key_counts_once_its_last_value_in_both_readings() -> None:
    body = (
        b'{"event": "call.ringing", "call_id": "r-1", "direction": "outgoing",'
        b' "direction": "incoming", "from": 5, "from": "+4930123456"}'
    )
    # A value of the wrong type, even one a later key replaces, sends it the long way.
    assert usual_report(body) is None
    valid = body.replace(b'"from": 5, ', b"")
    assert usual_report(valid) == parse_generic(valid) == parse_generic(body)


@given(st.text("+0123456789 -./()٣²\u00a0\tx", max_size=12) | st.text(max_size=12))
def test_a_compact_number_is_left_as_it_is_and_any_other_compacted(number: str) -> None:
    assert _compact(number) == _NUMBER_PUNCTUATION.sub("", number)


_twilio_names = st.sampled_from(
    [
        "CallSid",
        "From",
        "To",
        "CallStatus",
        "Direction",
        "CallDuration",
        "DialCallStatus",
        "DialCallDuration",
        "RecordingUrl",
        "Timestamp",
        "CallerName",
        "Other",
    ]
)
_twilio_values = (
    st.sampled_from(
        [
            "CA1",
            "inbound",
            "outbound-api",
            "outbound-dial",
            "ringing",
            "in-progress",
            "completed",
            "busy",
            "no-answer",
            "canceled",
            "failed",
            "queued",
            "0",
            "17",
            "https://r/1",
            "Tue, 14 May 2024 09:05:00 +0000",
            "anonymous",
            "client:alice",
        ]
    )
    | _phoneish
)


@settings(max_examples=400)
@given(st.dictionaries(_twilio_names | st.text(max_size=10), _twilio_values, max_size=10))
def test_twilio_arbitrary_params(params: dict[str, str]) -> None:
    try:
        report = parse_twilio(params)
    except PayloadError as error:
        assert error.status in (400, 422) and error.reason
        return
    _event_is_sane(report)


_bitrix_keys = st.sampled_from(
    [
        *REGISTER_PARAMS,
        "CALL_ID",
        "DURATION",
        "STATUS_CODE",
        "RECORD_URL",
        "VOTE",
        "COST",
        "COST_CURRENCY",
        "fields[PHONE][0][VALUE]",
        "values[]",
    ]
)
_bitrix_values = st.sampled_from(
    ["1", "2", "4", "0", "-1", "1e400", "nan", "+4930123456", "2024-05-14T09:00:00+02:00", "Y"]
) | st.text(max_size=15)


def _bitrix_pipeline(params: dict[str, Any]) -> None:
    for parse in (parse_register, parse_finish, parse_search):
        try:
            parse(params)
        except BitrixError as error:
            assert error.code and error.description and error.status == 400
    try:
        registration = parse_register(params)
        _event_is_sane(register_report(registration, "externalCall.1"))
        _event_is_sane(finish_report(parse_finish(params), registration))
    except BitrixError:
        pass


@settings(max_examples=300)
@given(st.lists(st.tuples(_bitrix_keys | st.text(max_size=12), _bitrix_values), max_size=12))
def test_bitrix_arbitrary_query(pairs: list[tuple[str, str]]) -> None:
    from urllib.parse import urlencode

    try:
        params = parse_bitrix_params(urlencode(pairs), None, b"")
    except BitrixError as error:
        assert error.status == 400
        return
    _bitrix_pipeline(params)


@settings(max_examples=300)
@given(st.dictionaries(_bitrix_keys, _bitrix_values | _json, max_size=12))
def test_bitrix_arbitrary_json(doc: dict[str, Any]) -> None:
    params = parse_bitrix_params("", "application/json", json.dumps(doc).encode())
    _bitrix_pipeline(params)


@given(
    query=st.binary(max_size=100) | st.text(max_size=100),
    content_type=st.sampled_from(
        [
            None,
            "",
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=b",
            "multipart/form-data",
            "text/plain",
        ]
    )
    | st.text(max_size=40),
    body=st.binary(max_size=200),
)
def test_bitrix_arbitrary_bytes(query: str | bytes, content_type: str | None, body: bytes) -> None:
    try:
        params = parse_bitrix_params(query, content_type, body)
    except BitrixError as error:
        assert error.status == 400
        return
    assert isinstance(params, dict)


@given(
    header=st.none() | st.text(max_size=200), body=st.binary(max_size=50), now=st.integers(0, 2**40)
)
def test_generic_signature_arbitrary_headers(header: str | None, body: bytes, now: int) -> None:
    try:
        verify_generic("secret", header, body, now=now)
    except SignatureError as error:
        assert error.reason


@given(
    path=st.text(max_size=30),
    params=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
    signature=st.none() | st.text(max_size=40),
    body=st.none() | st.binary(max_size=30),
)
def test_twilio_signature_arbitrary_requests(
    path: str, params: dict[str, str], signature: str | None, body: bytes | None
) -> None:
    url = "https://crm.example.com/hooks/twilio/voice?" + path
    try:
        verify_twilio("token", url, params, signature, body=body)
    except SignatureError as error:
        assert error.reason


@settings(max_examples=300)
@given(
    content_type=st.text(max_size=40).map(lambda rest: "multipart/form-data; " + rest)
    | st.just("multipart/form-data; 0*"),
    body=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: f"--b\r\n{t}".encode()),
)
def test_bitrix_arbitrary_multipart(content_type: str, body: bytes) -> None:
    # "0*" with a NUL body crashed the stdlib email parser; our own reader must not.
    try:
        parse_bitrix_params("", content_type, body or b"\x00")
    except BitrixError as error:
        assert error.status == 400
