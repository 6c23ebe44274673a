"""The persisted sync points and the per-sender counts, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from channels.event import Channel, InboundEvent
from crm.db import Database
from crm.facade import Crm
from crm.models import KeyValue
from crm.services.mailstate import MailState
from tests.conftest import make_event


async def test_sync_point_round_trip_and_update(db: Database) -> None:
    state = MailState(db)
    assert await state.load("sales") is None
    await state.save("sales", uidvalidity=17, last_uid=3, source="a@h:993/INBOX")
    await state.save("sales", uidvalidity=17, last_uid=9, source="a@h:993/INBOX")
    saved = await state.load("sales")
    assert saved is not None
    assert (saved.uidvalidity, saved.last_uid, saved.source) == (17, 9, "a@h:993/INBOX")
    assert datetime.now(UTC) - saved.synced_at < timedelta(minutes=1)
    assert await state.load("support") is None  # per mailbox


async def test_a_damaged_sync_point_means_a_fresh_start(db: Database) -> None:
    async with db.transaction() as s:
        s.add(KeyValue(key="mail.sync:sales", value={"uidvalidity": "x"}))
    assert await MailState(db).load("sales") is None


async def test_recent_mail_is_counted_per_customer(crm: Crm, db: Database) -> None:
    def mail(customer: str) -> None:
        events.append(
            make_event(
                channel=Channel.EMAIL,
                emails=(customer,),
                meta={"customer": customer, "from": "robot@shop.de"},
            )
        )

    events: list[InboundEvent] = []
    for _ in range(3):
        mail("loop@example.org")
    mail("other@example.org")
    for event in events:
        await crm.intake.process(event)
    await crm.intake.process(make_event(channel=Channel.CALL, phones=("+4930123456",)))

    state = MailState(db)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert await state.recent_from("loop@example.org", hour_ago) == 3
    assert await state.recent_from("LOOP@example.org", hour_ago) == 3
    assert await state.recent_from("other@example.org", hour_ago) == 1
    assert await state.recent_from("nobody@example.org", hour_ago) == 0
    assert await state.recent_from("loop@example.org", datetime.now(UTC) + timedelta(1)) == 0


async def test_rep_addresses_are_lower_cased(crm: Crm, db: Database) -> None:
    await crm.reps.add("Max", email="Max@Shop.de")
    await crm.reps.add("Without mail")
    assert await MailState(db).rep_addresses() == frozenset({"max@shop.de"})
