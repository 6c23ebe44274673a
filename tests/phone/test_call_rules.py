"""The call rules end to end: signed webhooks over HTTP → queue → intake → CRM rows, on SQLite
and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from crm.models import ActivityBinding, InboundEventLog
from tests.phone.conftest import PhoneClient, add_rep

NUMBER = "+4930123456"
NATIONAL = "030 123456"  # the same number as a German PBX writes it


async def test_unknown_incoming_call_creates_one_lead(phone: PhoneClient) -> None:
    await phone.answered_call("c-1", NATIONAL)
    await phone.settle()
    [lead] = await phone.leads()
    assert lead.source == "CALL"
    assert lead.title == f"{NUMBER} — incoming call"
    assert lead.status_semantic == "process"


async def test_five_missed_calls_make_one_lead_and_one_task_counted_five_times(
    phone: PhoneClient,
) -> None:
    rep = await add_rep(phone, "Anna")
    for i in range(5):
        at = f"2024-05-14T09:0{i}:00+00:00"
        await phone.missed_call(f"m-{i}", NATIONAL if i % 2 else NUMBER, timestamp=at)
    await phone.settle()
    [lead] = await phone.leads()
    [task] = await phone.activities("task")
    assert not task.done
    assert task.attempts == 5
    assert task.counterparty == NUMBER
    assert task.responsible_id == rep == lead.responsible_id
    assert task.due_at is not None  # due at once
    assert task.last_attempt_at == datetime(2024, 5, 14, 9, 4, tzinfo=UTC)
    async with phone.service.db.transaction() as s:
        bound = set(
            await s.scalars(
                select(ActivityBinding.owner_type).where(ActivityBinding.activity_id == task.id)
            )
        )
    assert "lead" in bound
    # One call activity per call, however many events each call sent.
    calls = await phone.activities("call")
    assert len(calls) == 5 and all(c.meta and c.meta["missed"] for c in calls)


async def test_answered_call_afterwards_closes_the_task(phone: PhoneClient) -> None:
    await phone.missed_call("m-1", NUMBER)
    await phone.missed_call("m-2", NUMBER)
    await phone.settle()
    [task] = await phone.activities("task")
    assert not task.done and task.attempts == 2
    await phone.call_event("a-1", "call.ringing", NUMBER)
    await phone.settle()
    [task] = await phone.activities("task")
    assert not task.done  # ringing is not reaching anybody yet
    await phone.call_event("a-1", "call.answered", NUMBER)
    await phone.settle()
    [task] = await phone.activities("task")
    assert task.done and task.result == "called back"
    # A new missed call after that opens a fresh task.
    await phone.missed_call("m-3", NUMBER)
    await phone.settle()
    tasks = await phone.activities("task")
    assert [(t.done, t.attempts) for t in tasks] == [(True, 2), (False, 1)]


async def test_outgoing_call_to_the_number_closes_the_task_when_it_gets_through(
    phone: PhoneClient,
) -> None:
    await phone.missed_call("m-1", NUMBER)
    await phone.settle()
    # The rep tries, nobody answers: still to do.
    await phone.call_event("o-1", "call.ringing", NATIONAL, direction="outgoing")
    await phone.call_event("o-1", "call.ended", NATIONAL, direction="outgoing", duration=0)
    await phone.settle()
    [task] = await phone.activities("task")
    assert not task.done
    await phone.call_event("o-2", "call.ended", NUMBER, direction="outgoing", duration=75)
    await phone.settle()
    [task] = await phone.activities("task")
    assert task.done and task.result == "called back"
    assert len(await phone.leads()) == 1


async def test_outgoing_calls_and_internal_extensions_never_create_leads(
    phone: PhoneClient,
) -> None:
    await add_rep(phone, "Ben", extension="42")
    await phone.call_event("o-1", "call.ended", "+4917612345678", direction="outgoing", duration=9)
    for internal in ("42", "7777", "client:ben", "+4989111222"):  # extensions, our own line
        reply = await phone.call_event(f"i-{internal}", "call.missed", internal)
        assert reply.status == 200 and reply.json()["status"] == "ignored"
    await phone.settle()
    assert await phone.leads() == []
    assert await phone.activities("task") == []


async def test_withheld_number_is_logged_never_matched(phone: PhoneClient) -> None:
    await phone.answered_call("c-0", NUMBER)  # somebody known exists
    for i, number in enumerate((None, "anonymous", "")):
        await phone.missed_call(f"w-{i}", number)  # type: ignore[arg-type]
    await phone.settle()
    assert len(await phone.leads()) == 1
    assert await phone.activities("task") == []
    async with phone.service.db.transaction() as s:
        rows = list(
            await s.scalars(select(InboundEventLog).where(InboundEventLog.external_id.like("w-%")))
        )
    assert len(rows) == 6  # two events per call, all logged
    assert {r.outcome for r in rows} == {"ignored"}
    assert all(r.payload["meta"]["withheld"] and r.payload["phones"] == [] for r in rows)


async def test_call_activity_records_the_call_once(phone: PhoneClient) -> None:
    rec = "https://pbx.example.com/rec/c-9.mp3"
    await phone.call_event("c-9", "call.ringing", NUMBER, agent_extension="101")
    await phone.call_event("c-9", "call.answered", NUMBER)
    for _ in range(3):  # the PBX retries the final event
        await phone.call_event("c-9", "call.ended", NUMBER, duration=61, recording_url=rec)
    await phone.settle()
    [call] = await phone.activities("call")
    assert call.direction == "incoming"
    assert call.meta is not None
    assert call.meta["duration"] == 61
    assert call.meta["disposition"] == "answered"
    assert call.meta["recording_url"] == rec
    assert call.meta["stage"] == "ended"
    assert call.meta["agent_extension"] == "101"  # an earlier event's fact is kept


async def test_unparsable_number_is_kept_raw_and_flagged(phone: PhoneClient) -> None:
    await phone.missed_call("u-1", "12345678901234567890x")
    await phone.settle()
    [lead] = await phone.leads()
    assert lead.title == "12345678901234567890x — incoming call"
    async with phone.service.db.transaction() as s:
        row = await s.scalar(
            select(InboundEventLog).where(InboundEventLog.external_id == "u-1:ringing")
        )
    assert row is not None and row.payload["meta"]["number_parsed"] is False
    assert "not a valid number" in row.reason
