"""The /hooks/calls JSON schema: every field, defaults, and 400 / 422 errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from channels.phone.calls import CallDirection, CallStage, Disposition, PayloadError
from channels.phone.generic import parse_generic


def _body(**fields: Any) -> bytes:
    doc: dict[str, Any] = {
        "event": "call.ended",
        "call_id": "pbx-77",
        "direction": "incoming",
        "from": "+4930123456",
        "to": "+4989111222",
    }
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def test_full_ended_call() -> None:
    report = parse_generic(
        _body(
            line="main",
            agent_extension=101,
            started_at="2024-05-14T09:00:00+02:00",
            ended_at=1715670300,
            timestamp="2024-05-14T07:05:00Z",
            duration=300,
            disposition="answered",
            recording_url="https://pbx.example/rec/77.wav",
            caller_name="Anna Meier",
        )
    )
    assert report.call_id == "pbx-77"
    assert report.stage is CallStage.ENDED
    assert report.direction is CallDirection.INCOMING
    assert report.from_number == "+4930123456"
    assert report.to_number == "+4989111222"
    assert report.line == "main"
    assert report.agent_extension == "101"
    assert report.started_at == datetime(2024, 5, 14, 9, tzinfo=timezone(timedelta(hours=2)))
    assert report.ended_at == datetime(2024, 5, 14, 7, 5, tzinfo=UTC)
    assert report.occurred_at == datetime(2024, 5, 14, 7, 5, tzinfo=UTC)
    assert report.duration == 300
    assert report.disposition is Disposition.ANSWERED
    assert report.recording_url == "https://pbx.example/rec/77.wav"
    assert report.caller_name == "Anna Meier"


@pytest.mark.parametrize(
    ("event", "stage"),
    [("call.ringing", CallStage.RINGING), ("call.answered", CallStage.ANSWERED)],
)
def test_stages_before_the_end_have_no_outcome(event: str, stage: CallStage) -> None:
    report = parse_generic(_body(event=event, disposition="busy"))
    assert report.stage is stage
    assert report.disposition is None


@pytest.mark.parametrize(
    ("fields", "stage", "disposition"),
    [
        ({"duration": 12}, CallStage.ENDED, Disposition.ANSWERED),
        ({"duration": 0}, CallStage.MISSED, Disposition.MISSED),
        ({}, CallStage.MISSED, Disposition.MISSED),
        ({"disposition": "busy"}, CallStage.MISSED, Disposition.BUSY),
        ({"event": "call.missed"}, CallStage.MISSED, Disposition.MISSED),
        (
            {"event": "call.missed", "disposition": "DECLINED"},
            CallStage.MISSED,
            Disposition.DECLINED,
        ),
        # An unanswered outgoing call is over, not "missed".
        ({"direction": "outbound", "disposition": "busy"}, CallStage.ENDED, Disposition.BUSY),
        ({"event": "call.missed", "direction": "outgoing"}, CallStage.ENDED, Disposition.MISSED),
    ],
)
def test_final_stage_and_disposition(
    fields: dict[str, Any], stage: CallStage, disposition: Disposition
) -> None:
    report = parse_generic(_body(**fields))
    assert (report.stage, report.disposition) == (stage, disposition)


def test_withheld_numbers_may_be_null_or_empty() -> None:
    report = parse_generic(_body(**{"from": None, "to": ""}))
    assert report.from_number is None
    assert report.to_number is None


def test_unknown_event_is_422() -> None:
    with pytest.raises(PayloadError) as caught:
        parse_generic(_body(event="call.transferred"))
    assert caught.value.status == 422
    assert "call.transferred" in caught.value.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[]", "JSON object"),
        (b"x" * 70_000, "larger"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "not valid JSON"),  # nested too deep
        (b"[" * 30_000 + b"]" * 30_000, "not valid JSON"),
        (_body(event=...), "event is required"),
        (_body(event=5), "event must be a string"),
        (_body(call_id=...), "call_id is required"),
        (_body(call_id="x" * 201), "call_id is longer"),
        (_body(direction="sideways"), "direction"),
        (_body(duration=-1), "duration"),
        (_body(duration="10"), "duration"),
        (_body(duration=True), "duration"),
        (_body(started_at="yesterday"), "started_at is not ISO-8601"),
        (_body(started_at="2024-05-14T09:00:00"), "timezone"),
        (_body(ended_at=1e30), "plausible"),
        (_body(ended_at=[1]), "ended_at must be"),
        (_body(answered_at="soon"), "answered_at"),
        (_body(disposition="maybe"), "disposition must be one of"),
        (_body(event="call.missed", disposition="answered"), "cannot have disposition"),
        (_body(recording_url="javascript:alert(1)"), "http(s) URL"),
        (_body(**{"from": {"n": 1}}), "from must be a string"),
    ],
)
def test_malformed_input_is_400_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_generic(body)
    assert caught.value.status == 400
    assert reason in caught.value.reason
