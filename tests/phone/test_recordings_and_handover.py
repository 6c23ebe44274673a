"""Twilio recordings that arrive after the call's outcome, Twilio's recording status callbacks,
and a call's ringing-created lead handed to the rep who answered it (the generic webhook), over
real HTTP."""

from __future__ import annotations

from sqlalchemy import select

from crm.models import Activity, OutboxMessage
from tests.phone.conftest import PhoneClient, add_rep

CALLER = "+4930123456"
LINE = "+4989111222"
RECORDING = "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE"


def _form(sid: str, **fields: str) -> dict[str, str]:
    return {
        "CallSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": CALLER,
        "To": LINE,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
        **fields,
    }


async def _call_activity(phone: PhoneClient, sid: str) -> Activity:
    async with phone.service.db.transaction() as s:
        act = await s.scalar(select(Activity).where(Activity.external_id == sid))
        assert act is not None
        return act


async def test_a_recording_on_the_completed_callback_after_the_dial_action(
    phone: PhoneClient,
) -> None:
    sid = "CA" + "d" * 32
    await phone.twilio("/hooks/twilio/voice", _form(sid))
    # <Dial action> first: the rep answered and talked 30 s; the call's final event.
    dial = _form(sid, CallStatus="in-progress", DialCallStatus="completed", DialCallDuration="30")
    assert (await phone.twilio("/hooks/twilio/status", dial)).status == 200
    await phone.settle()
    # Then Twilio's final status callback, with the recording: the same final stage again.
    done = _form(sid, CallStatus="completed", CallDuration="35", RecordingUrl=RECORDING + "1")
    reply = await phone.twilio("/hooks/twilio/status", done)
    assert reply.status == 200 and reply.content_type == "text/xml"
    await phone.settle()
    act = await _call_activity(phone, sid)
    assert act.meta is not None and act.meta["recording_url"] == RECORDING + "1"
    assert act.meta["disposition"] == "answered" and act.meta["duration"] == 30


async def test_recording_status_callbacks_at_the_status_and_the_recording_url(
    phone: PhoneClient,
) -> None:
    sid = "CA" + "e" * 32
    await phone.twilio("/hooks/twilio/voice", _form(sid))
    await phone.twilio("/hooks/twilio/status", _form(sid, CallStatus="completed", CallDuration="9"))
    recording = {
        "AccountSid": "AC" + "0" * 32,
        "CallSid": sid,
        "RecordingSid": "RE" + "1" * 32,
        "RecordingUrl": RECORDING + "2",
        "RecordingStatus": "completed",
        "RecordingDuration": "8",
        "RecordingChannels": "1",
        "RecordingSource": "DialVerb",
    }
    # At the status URL (no Direction, no CallStatus): accepted, not "Direction is required".
    at_status = await phone.twilio("/hooks/twilio/status", recording)
    assert at_status.status == 204, at_status.text
    act = await _call_activity(phone, sid)
    assert act.meta is not None and act.meta["recording_url"] == RECORDING + "2"
    # At its own URL; a later recording replaces the link; in-progress changes nothing.
    later = {**recording, "RecordingUrl": RECORDING + "3"}
    assert (await phone.twilio("/hooks/twilio/recording", later)).status == 204
    progress = {**recording, "RecordingStatus": "in-progress", "RecordingUrl": RECORDING + "4"}
    assert (await phone.twilio("/hooks/twilio/recording", progress)).status == 204
    act = await _call_activity(phone, sid)
    assert act.meta is not None and act.meta["recording_url"] == RECORDING + "3"
    # Signed like everything from Twilio; a link that is no http(s) URL is refused.
    forged = await phone.twilio("/hooks/twilio/recording", later, token="wrong")
    assert forged.status == 401
    bad = await phone.twilio("/hooks/twilio/recording", {**later, "RecordingUrl": "file:///x"})
    assert bad.status == 400 and "RecordingUrl" in bad.json()["detail"]


async def test_generic_webhook_hands_the_ringing_lead_to_the_rep_who_answered(
    phone: PhoneClient,
) -> None:
    anna = await add_rep(phone, "Anna", extension="201")
    bernd = await add_rep(phone, "Bernd", extension="202")
    await phone.call_event("c-1", "call.ringing", CALLER, agent_extension="201")
    await phone.settle()
    [lead] = await phone.leads()
    assert lead.responsible_id == anna
    await phone.call_event("c-1", "call.answered", CALLER, agent_extension="202")
    await phone.call_event("c-1", "call.ended", CALLER, agent_extension="202", duration=20)
    await phone.settle()
    [lead] = await phone.leads()
    assert lead.responsible_id == bernd
    [call] = await phone.activities("call")
    assert call.responsible_id == bernd
    # Bernd is told, as Bitrix24's finish tells the rep who finished the call.
    async with phone.service.db.transaction() as s:
        cards = list(await s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "assigned")))
    assert [(c.rep_id, c.payload["lead_id"]) for c in cards] == [(bernd, lead.id)]


async def test_the_handover_leaves_a_reassigned_lead_and_inactive_reps_alone(
    phone: PhoneClient,
) -> None:
    anna = await add_rep(phone, "Anna", extension="201")
    bernd = await add_rep(phone, "Bernd", extension="202")
    carla = await add_rep(phone, "Carla", extension="203")
    await phone.call_event("c-2", "call.ringing", CALLER, agent_extension="201")
    await phone.settle()
    # An inactive rep's extension answering: nothing changes hands.
    await phone.service.crm.reps.deactivate(carla)
    await phone.call_event("c-2", "call.answered", CALLER, agent_extension="203")
    await phone.settle()
    [lead] = await phone.leads()
    assert lead.responsible_id == anna
    # A supervisor moved the lead meanwhile: the rep who answered does not take it.
    dora = await add_rep(phone, "Dora", extension="204")
    await phone.service.crm.leads.assign(lead.id, bernd)
    await phone.call_event("c-2", "call.ended", CALLER, agent_extension="204", duration=5)
    await phone.settle()
    [lead] = await phone.leads()
    assert lead.responsible_id == bernd
    [call] = await phone.activities("call")
    assert call.responsible_id == anna != dora
