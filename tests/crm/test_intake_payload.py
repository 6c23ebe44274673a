"""The event log row's payload: on PostgreSQL it is encoded from the event in one pass
(`crm.intake.payload`); the stored text is the one `InboundEvent.to_json` gives."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import msgspec
import pytest
from sqlalchemy import select

from crm.facade import Crm
from crm.intake.payload import payload_text
from crm.models import InboundEventLog
from matching.event import Attachment, Channel, Direction, Handle, InboundEvent

AT = datetime(2026, 12, 7, 5, 43, 27, 357639, tzinfo=UTC)
EVENTS = [
    InboundEvent(Channel.CALL, "c-1", AT, phones=("+4989000001",)),
    InboundEvent(Channel.CALL, "c-2", AT.replace(microsecond=0), meta={"call_id": "c"}),
    InboundEvent(Channel.CALL, "c-3", AT.astimezone(timezone(timedelta(hours=2)))),
    InboundEvent(Channel.CALL, "c-4", AT.astimezone(ZoneInfo("Europe/London"))),  # +00:00
    InboundEvent(Channel.CALL, "c-5", AT.astimezone(timezone(timedelta(hours=-5, minutes=-30)))),
    # A quote in a value is escaped: the marker the timestamp fix looks for is not in it.
    InboundEvent(Channel.CALL, 'x Z","direction":"', AT, display_name='Z","direction":"'),
    InboundEvent(
        Channel.TELEGRAM,
        "t-1",
        AT,
        direction=Direction.OUTGOING,
        display_name="Anna Schulz",
        first_name="Anna",
        last_name="Schulz",
        company_name="ACME",
        phones=("+49 30 1234567",),
        emails=("anna@example.com",),
        handles=(Handle("telegram", "42", "anna"), Handle("telegram", "43")),
        subject="Привет",
        text='line\nbreak \u2028 and "quotes"',
        attachments=(Attachment("a.pdf", "application/pdf", 1234),),
        source="TELEGRAM",
        line="bot",
        phone_region="DE",
        raw_ref="update/1",
        hint_phones=("+4930999",),
        meta={"call_id": "x", "utm": {"source": "ads"}, "references": ["a", "b"]},
    ),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.external_id)
def test_the_payload_text_is_the_text_of_to_json(event: InboundEvent) -> None:
    assert bytes(payload_text(event)) == msgspec.json.encode(event.to_json())


async def test_the_stored_payload_is_the_events_json(crm: Crm) -> None:
    """On both backends (SQLite writes `to_json`'s dict through the ORM's JSON type)."""
    events = [InboundEvent(e.channel, f"p-{k}", e.occurred_at) for k, e in enumerate(EVENTS)]
    events.append(EVENTS[-1])
    results = await crm.intake.process_many(events)
    assert not [r for r in results if isinstance(r, Exception)]
    async with crm.db.read() as s:
        stored = {r.external_id: r.payload for r in await s.scalars(select(InboundEventLog))}
    for event in events:
        doc = stored[event.external_id]
        assert doc == json.loads(json.dumps(event.to_json()))
        assert InboundEvent.from_json(doc) == event
