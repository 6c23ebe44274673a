"""Twilio voice / status parameters → CallReport, and the TwiML we answer with."""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree import ElementTree

import pytest
from multidict import MultiDict

from channels.phone.calls import CallDirection, CallStage, Disposition, PayloadError
from channels.phone.twilio import parse_twilio, twiml_response

BASE = {
    "CallSid": "CA" + "0" * 32,
    "AccountSid": "AC" + "0" * 32,
    "From": "+4930123456",
    "To": "+4989111222",
    "CallStatus": "ringing",
    "Direction": "inbound",
    "ApiVersion": "2010-04-01",
}


def test_incoming_voice_request() -> None:
    report = parse_twilio({**BASE, "CallerName": "ANNA MEIER"})
    assert report.call_id == BASE["CallSid"]
    assert report.stage is CallStage.RINGING
    assert report.direction is CallDirection.INCOMING
    assert report.from_number == "+4930123456"
    assert report.line == "+4989111222"
    assert report.caller_name == "ANNA MEIER"
    assert report.disposition is None


@pytest.mark.parametrize(
    ("status", "stage", "disposition"),
    [
        ("queued", CallStage.RINGING, None),
        ("initiated", CallStage.RINGING, None),
        ("in-progress", CallStage.ANSWERED, None),
        ("completed", CallStage.ENDED, Disposition.ANSWERED),
        ("busy", CallStage.MISSED, Disposition.BUSY),
        ("no-answer", CallStage.MISSED, Disposition.MISSED),
        ("canceled", CallStage.MISSED, Disposition.CANCELLED),
        ("failed", CallStage.MISSED, Disposition.FAILED),
    ],
)
def test_status_mapping_for_incoming_calls(
    status: str, stage: CallStage, disposition: Disposition | None
) -> None:
    report = parse_twilio({**BASE, "CallStatus": status})
    assert (report.stage, report.disposition) == (stage, disposition)


@pytest.mark.parametrize("direction", ["outbound-api", "outbound-dial"])
def test_outgoing_unanswered_is_ended_not_missed(direction: str) -> None:
    report = parse_twilio({**BASE, "Direction": direction, "CallStatus": "no-answer"})
    assert report.direction is CallDirection.OUTGOING
    assert (report.stage, report.disposition) == (CallStage.ENDED, Disposition.MISSED)
    assert report.line == "+4930123456"


def test_final_callback_carries_duration_recording_and_time() -> None:
    report = parse_twilio(
        {
            **BASE,
            "CallStatus": "completed",
            "CallDuration": "95",
            "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE1",
            "Timestamp": "Tue, 14 May 2024 09:05:00 +0000",
        }
    )
    assert report.duration == 95
    assert report.recording_url and report.recording_url.endswith("RE1")
    assert report.ended_at == datetime(2024, 5, 14, 9, 5, tzinfo=UTC)
    assert report.occurred_at == report.ended_at


def test_dial_action_decides_whether_the_rep_answered() -> None:
    # The parent call is still in progress; the rep's leg was not answered.
    report = parse_twilio({**BASE, "CallStatus": "in-progress", "DialCallStatus": "no-answer"})
    assert (report.stage, report.disposition) == (CallStage.MISSED, Disposition.MISSED)
    answered = parse_twilio(
        {**BASE, "CallStatus": "completed", "DialCallStatus": "completed", "DialCallDuration": "61"}
    )
    assert (answered.stage, answered.duration) == (CallStage.ENDED, 61)


@pytest.mark.parametrize("number", ["anonymous", "Anonymous", "", "+266696687", "+7378742833"])
def test_withheld_caller(number: str) -> None:
    assert parse_twilio({**BASE, "From": number}).from_number is None


def test_softphone_calling_out_is_outgoing_with_the_agent() -> None:
    report = parse_twilio({**BASE, "From": "client:alice", "To": "+4930123456"})
    assert report.direction is CallDirection.OUTGOING
    assert report.agent_extension == "alice"
    assert report.customer_number == "+4930123456"


def test_call_to_a_sip_endpoint_names_the_agent() -> None:
    report = parse_twilio({**BASE, "To": "sip:101@leadbot.sip.twilio.com"})
    assert report.direction is CallDirection.INCOMING
    assert report.agent_extension == "101"


def test_multidict_form_is_accepted() -> None:
    form = MultiDict(BASE)
    form.add("From", "+4930999")  # a repeated name: the first value counts
    assert parse_twilio(form).from_number == "+4930123456"


@pytest.mark.parametrize(
    ("fields", "status", "reason"),
    [
        ({"CallSid": ""}, 400, "CallSid is required"),
        ({"Direction": "sideways"}, 400, "Direction"),
        ({"CallStatus": ""}, 400, "CallStatus is required"),
        ({"CallStatus": "teleported"}, 422, "unknown call status"),
        ({"CallStatus": "completed", "CallDuration": "ten"}, 400, "CallDuration"),
        ({"CallStatus": "completed", "CallDuration": "١٢"}, 400, "CallDuration"),
        ({"Timestamp": "not a date"}, 400, "Timestamp"),
        ({"RecordingUrl": "file:///etc/passwd"}, 400, "RecordingUrl"),
        ({"From": "x" * 3000}, 400, "From is longer"),
    ],
)
def test_bad_parameters(fields: dict[str, str], status: int, reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_twilio({**BASE, **fields})
    assert caught.value.status == status
    assert reason in caught.value.reason


def test_twiml_dials_the_rep_and_escapes_everything() -> None:
    xml = twiml_response("+4917612345678", "+4989000", "Hallo & <willkommen>\x00", timeout=20)
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ElementTree.fromstring(xml)
    assert root.tag == "Response"
    assert [child.tag for child in root] == ["Say", "Dial"]
    assert root.findtext("Say") == "Hallo & <willkommen>"
    dial = root.find("Dial")
    assert dial is not None and dial.get("timeout") == "20"
    assert dial.findtext("Number") == "+4917612345678"


def test_twiml_falls_back_or_just_answers() -> None:
    fallback = ElementTree.fromstring(
        twiml_response(None, "+4989000", None, action_url="/a?x=1&y=2")
    )
    assert fallback.findtext("Dial/Number") == "+4989000"
    assert fallback.find("Dial").get("action") == "/a?x=1&y=2"  # type: ignore[union-attr]
    empty = ElementTree.fromstring(twiml_response(None, None, None))
    assert empty.tag == "Response" and len(empty) == 0
    refused = ElementTree.fromstring(twiml_response(None, None, None, reject=True))
    assert [child.tag for child in refused] == ["Reject"]
