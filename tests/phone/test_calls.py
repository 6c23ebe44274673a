"""CallReport → InboundEvent: who the customer is, internal / withheld calls, meta."""

from __future__ import annotations

from datetime import UTC, datetime

from msgspec.structs import replace

from channels.event import Channel, Direction, InboundEvent
from channels.phone.calls import (
    CallDirection,
    CallReport,
    CallStage,
    Disposition,
    call_to_event,
    plainly_internal,
)

RECEIVED = datetime(2024, 5, 14, 9, 0, tzinfo=UTC)
INCOMING = CallReport(
    call_id="c-1",
    stage=CallStage.RINGING,
    direction=CallDirection.INCOMING,
    from_number="+49 30 1234567",
    to_number="+4989111222",
    line="+4989111222",
    agent_extension="101",
)


def _event(report: CallReport, **kwargs: object) -> InboundEvent | None:
    options: dict[str, object] = {
        "line_region": "DE",
        "internal_extensions": frozenset({"101", "2001"}),
        "our_numbers": frozenset({"+4989111222", "+49 89 333444"}),
        "received_at": RECEIVED,
    }
    options.update(kwargs)
    return call_to_event(report, **options)  # type: ignore[arg-type]


def test_incoming_ringing_call() -> None:
    event = _event(INCOMING)
    assert event is not None
    assert event.channel is Channel.CALL
    assert event.direction is Direction.INCOMING
    assert event.phones == ("+49 30 1234567",)
    assert event.external_id == "c-1:ringing"
    assert event.source == "CALL"
    assert event.phone_region == "DE"
    assert event.line == "+4989111222"
    assert event.occurred_at == RECEIVED
    assert event.meta["call_id"] == "c-1"
    assert event.meta["missed"] is False
    assert event.meta["withheld"] is False
    assert event.meta["number_parsed"] is True
    assert event.meta["title"] == "+49301234567 — incoming call"
    # The event survives the queue round trip.
    assert InboundEvent.from_json(event.to_json()) == event


def test_each_stage_is_its_own_event_and_uses_its_own_time() -> None:
    ended_at = datetime(2024, 5, 14, 9, 5, tzinfo=UTC)
    ended = replace(
        INCOMING,
        stage=CallStage.ENDED,
        disposition=Disposition.ANSWERED,
        duration=42,
        ended_at=ended_at,
        recording_url="https://rec.example/1.mp3",
    )
    event = _event(ended)
    assert event is not None
    assert event.external_id == "c-1:final"
    assert event.occurred_at == ended_at
    assert event.meta["duration"] == 42
    assert event.meta["disposition"] == "answered"
    assert event.meta["recording_url"] == "https://rec.example/1.mp3"
    # The call's earlier events are its thread (intake files it where they went).
    assert event.meta["references"] == ["c-1:ringing", "c-1:answered"]
    ringing = _event(INCOMING)
    assert ringing is not None and "references" not in ringing.meta
    assert event.meta["missed"] is False


def test_missed_incoming_call_is_flagged() -> None:
    missed = replace(INCOMING, stage=CallStage.MISSED, disposition=Disposition.BUSY)
    event = _event(missed)
    assert event is not None
    assert event.meta["missed"] is True
    # Ended or missed, a call has one outcome: the first one reported wins.
    assert event.external_id == "c-1:final"
    assert event.meta["title"] == "+49301234567 — incoming call"


def test_outgoing_call_names_the_callee_and_never_the_caller_name() -> None:
    outgoing = CallReport(
        call_id="c-2",
        stage=CallStage.ENDED,
        direction=CallDirection.OUTGOING,
        from_number="+4989111222",
        to_number="+4917612345678",
        disposition=Disposition.MISSED,
        caller_name="Our Company",
    )
    event = _event(outgoing)
    assert event is not None
    assert event.direction is Direction.OUTGOING
    assert event.phones == ("+4917612345678",)
    assert event.display_name is None
    assert event.meta["missed"] is False  # an unanswered outgoing call is not a missed call


def test_internal_calls_yield_no_event() -> None:
    for number in ("101", "2001", "55", "client:alice", "sip:101@pbx.example", "+49 89 111222"):
        assert _event(replace(INCOMING, from_number=number)) is None, number
    # "089 333444" is one of our own lines written nationally.
    assert _event(replace(INCOMING, from_number="089 333444")) is None


def test_the_webhooks_quick_internal_check_agrees_with_the_full_one() -> None:
    options = {
        "line_region": "DE",
        "internal_extensions": frozenset({"101", "2001"}),
        "our_numbers": frozenset({"+4989111222", "+49 89 333444"}),
    }
    quick = {
        number: plainly_internal(replace(INCOMING, from_number=number), **options)  # type: ignore[arg-type]
        for number in (
            "101",
            " 2001 ",
            "55",
            "client:alice",
            "sip:101@pbx.example",
            "+49 89 111222",
            "+49 (89) 333-444",
            "+4930123456",
            "030 123456",
            "anonymous",
            None,
            "089 333444",
        )
    }
    assert quick == {
        "101": True,
        " 2001 ": True,
        "55": True,
        "client:alice": True,
        "sip:101@pbx.example": True,
        "+49 89 111222": True,
        "+49 (89) 333-444": True,
        "+4930123456": False,
        "030 123456": False,
        "anonymous": False,
        None: False,
        # Our own line written nationally needs the number parsed: left to the full check.
        "089 333444": False,
    }
    for number, internal in quick.items():
        if internal:
            assert _event(replace(INCOMING, from_number=number)) is None, number


def test_withheld_number_is_logged_but_unmatchable() -> None:
    for number in (None, "", "anonymous", "Unknown"):
        event = _event(replace(INCOMING, from_number=number))
        assert event is not None
        assert event.phones == ()
        assert event.meta["withheld"] is True
        assert event.meta["title"] == "withheld number — incoming call"


def test_unparseable_number_is_kept_raw_and_flagged() -> None:
    event = _event(replace(INCOMING, from_number="12345678901234567890x"))
    assert event is not None
    assert event.phones == ("12345678901234567890x",)
    assert event.meta["number_parsed"] is False
    assert event.meta["title"] == "12345678901234567890x — incoming call"


def test_unknown_facts_are_left_out_of_meta() -> None:
    # A late ringing event must not blank the duration an earlier final event recorded.
    event = _event(INCOMING)
    assert event is not None
    assert "duration" not in event.meta and "disposition" not in event.meta
