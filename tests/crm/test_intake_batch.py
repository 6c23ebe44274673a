"""Intake of a batch (what one queue read returns): one transaction, the same result as one
event after the other."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.event import listen, remove
from sqlalchemy.util import await_

from crm.changes import Change
from crm.config import CrmConfig
from crm.db import Database, lock_id
from crm.facade import Crm
from crm.intake import batching as intake_batching
from crm.intake import rounds as intake_rounds
from crm.intake.labels import title
from crm.looping import BREATHE_EVERY
from crm.models import Activity, ActivityBinding, Deal, InboundEventLog, Lead
from crm.services.leads import LeadInput
from crm.services.records import ContactInput
from crm.tracking import TrackedSession
from matching.event import Channel, InboundEvent
from tests.conftest import make_event


async def count(crm: Crm, model: Any, *where: Any) -> int:
    async with crm.db.transaction() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_one_new_number_three_times_in_a_batch_is_one_lead_with_three_calls(
    crm: Crm,
) -> None:
    events = [make_event(phones=("+49 30 4455667",)) for _ in range(3)]
    results = await crm.intake.process_many(events)
    assert [getattr(r, "outcome", r) for r in results] == [
        "new_lead",
        "attached_lead",
        "attached_lead",
    ]
    lead_ids = {getattr(r, "lead_id", None) for r in results}
    assert len(lead_ids) == 1 and None not in lead_ids
    assert await count(crm, Lead) == 1
    assert (
        await count(
            crm,
            ActivityBinding,
            ActivityBinding.owner_type == "lead",
            ActivityBinding.owner_id == lead_ids.pop(),
        )
        == 3
    )


async def test_each_event_of_a_batch_names_its_own_log_row_numbered_in_key_order(
    crm: Crm,
) -> None:
    """A batch's log rows are numbered in (channel, external id) order, as one INSERT of them
    all would number them, whatever order the events came in; each answer names its own."""
    events = [make_event(external_id=f"k-{n}", phones=(f"+49 30 555{n:04d}",)) for n in (3, 1, 2)]
    events.append(make_event(channel=Channel.EMAIL, external_id="k-0", emails=("k@example.com",)))
    results = await crm.intake.process_many(events)
    async with crm.db.read() as s:
        rows = {r.id: (r.channel, r.external_id) for r in await s.scalars(select(InboundEventLog))}
    ids = [getattr(r, "event_log_id", 0) or 0 for r in results]
    assert [rows.get(i) for i in ids] == [(str(e.channel), e.external_id) for e in events]
    assert [rows[i] for i in sorted(ids)] == sorted(rows.values())


async def test_a_copy_of_an_event_in_the_same_batch_is_a_duplicate(crm: Crm) -> None:
    event = make_event(channel=Channel.EMAIL, external_id="<same@x>", emails=("a@b.de",))
    first, second = await crm.intake.process_many([event, event])
    assert not isinstance(first, Exception) and not isinstance(second, Exception)
    assert (first.outcome, second.outcome) == ("new_lead", "duplicate")
    assert second.event_log_id == first.event_log_id and second.lead_id == first.lead_id
    assert await count(crm, InboundEventLog) == 1 and await count(crm, Activity) == 1


async def test_phone_and_email_of_one_client_in_one_batch_make_one_repeat_lead(crm: Crm) -> None:
    """The two events share no phone or email, only the client: the second must see the
    repeat lead the first created instead of opening another."""
    anna = await crm.records.create_contact(
        ContactInput(name="Anna", phones=("+49 30 1112223",), emails=("anna@example.com",))
    )
    by_phone = make_event(phones=("030 1112223",))
    by_mail = make_event(channel=Channel.EMAIL, emails=("Anna@Example.com",))
    results = await crm.intake.process_many([by_phone, by_mail])
    outcomes = [getattr(r, "outcome", r) for r in results]
    assert outcomes == ["new_repeat_lead", "attached_lead"]
    assert await count(crm, Lead, Lead.contact_id == anna.id) == 1


async def test_a_bad_event_does_not_hold_up_the_rest_of_its_batch(crm: Crm) -> None:
    good = [make_event(phones=(f"+49 30 99000{i}",)) for i in range(3)]
    bad = make_event(phones=("+49 30 9900099",), occurred_at=datetime(2026, 1, 1))  # naive
    results = await crm.intake.process_many([good[0], bad, good[1], good[2]])
    assert isinstance(results[1], Exception)
    assert [getattr(r, "outcome", None) for r in (results[0], *results[2:])] == ["new_lead"] * 3
    assert await count(crm, Lead) == 3
    # Nothing of the bad event was written: sent again once fixed, it is new, not a duplicate.
    assert await count(crm, InboundEventLog, InboundEventLog.external_id == bad.external_id) == 0


def _script(prefix: str) -> list[InboundEvent]:
    """A mixed stream: new numbers, repeats, a known client by phone and by email, a copy."""
    p = [f"+49 {prefix} 10000{i}" for i in range(4)]
    known = f"+49 {prefix} 777777"
    mail = f"known-{prefix}@example.com"
    events = [
        make_event(phones=(p[0],)),
        make_event(phones=(p[1],)),
        make_event(phones=(p[0],)),
        make_event(phones=(known,)),
        make_event(channel=Channel.EMAIL, emails=(mail,)),
        make_event(phones=(p[2], p[1])),
        make_event(channel=Channel.EMAIL, emails=(f"new-{prefix}@example.com",)),
        make_event(phones=(p[3],), emails=(f"new-{prefix}@example.com",)),
        make_event(phones=(known,)),
    ]
    events.append(events[1])  # delivered twice
    return events


async def test_a_batch_ends_as_one_event_after_the_other_would(crm: Crm) -> None:
    for prefix in ("30", "40"):  # Berlin, Hamburg: valid numbers, or they would match nobody
        await crm.records.create_contact(
            ContactInput(
                name=f"Known {prefix}",
                phones=(f"+49 {prefix} 777777",),
                emails=(f"known-{prefix}@example.com",),
            )
        )
    one_by_one = [await crm.intake.process(e) for e in _script("30")]
    batched = await crm.intake.process_many(_script("40"))
    assert not any(isinstance(r, Exception) for r in batched)
    assert [r.outcome for r in one_by_one] == [getattr(r, "outcome", r) for r in batched]
    # Same shape of records: the k-th result refers to the same record as its twin does.
    shapes = []
    for results in (one_by_one, batched):
        seen: dict[int | None, int] = {}
        shapes.append([seen.setdefault(getattr(r, "lead_id", None), len(seen)) for r in results])
    assert shapes[0] == shapes[1]
    leads = {r.lead_id for r in one_by_one} - {None}
    assert len(leads) == 4 and await count(crm, Lead) == 2 * len(leads)


async def test_new_leads_of_one_batch_go_round_the_reps_in_turn(crm: Crm) -> None:
    reps = [await crm.reps.add(name) for name in ("Rita", "Sam", "Tom")]
    events = [make_event(phones=(f"+49 30 5550{i}",)) for i in range(5)]
    results = await crm.intake.process_many(events)
    owners = [getattr(r, "responsible_id", r) for r in results]
    ids = [r.id for r in reps]
    assert owners == [*ids, *ids[:2]]
    # The position survives the batch: the next new lead goes to the one after.
    nxt = await crm.intake.process(make_event(phones=("+49 30 5559",)))
    assert nxt.responsible_id == ids[2]


def _colleagues(tag: str) -> list[InboundEvent]:
    return [
        make_event(phones=(f"+49 {tag} 5550301",)),
        make_event(channel=Channel.EMAIL, emails=(f"bea-{tag}@acme.example",)),
        make_event(phones=(f"+49 {tag} 5550301",)),
    ]


async def test_colleagues_of_one_company_in_a_batch_end_as_one_after_the_other(
    crm: Crm,
) -> None:
    """Anna and Bea share no phone or email, only their company (which holds neither): the
    second must see the repeat lead the first opened on the company."""
    for tag in ("41", "42"):
        acme = await crm.records.create_company(f"Acme {tag}")
        for name, phones, emails in (
            ("Anna", (f"+49 {tag} 5550301",), ()),
            ("Bea", (), (f"bea-{tag}@acme.example",)),
        ):
            await crm.records.create_contact(
                ContactInput(name=name, phones=phones, emails=emails, company_id=acme.id)
            )
    one_by_one = [await crm.intake.process(e) for e in _colleagues("41")]
    batched = await crm.intake.process_many(_colleagues("42"))
    expected = ["new_repeat_lead", "attached_lead", "attached_lead"]
    assert [r.outcome for r in one_by_one] == expected
    assert [getattr(r, "outcome", r) for r in batched] == expected
    for results in (one_by_one, batched):
        assert len({getattr(r, "lead_id", None) for r in results}) == 1
    assert await count(crm, Lead) == 2


async def test_concurrent_workers_share_new_leads_in_turn_with_no_repeat_or_skip(
    crm: Crm,
) -> None:
    """Workers taking batches at the same time (on PostgreSQL each in its own transaction)
    each move the round-robin position atomically: the reps get the new leads evenly."""
    reps = [await crm.reps.add(name) for name in ("Rita", "Sam", "Tom")]
    batches = [
        [make_event(phones=(f"+49 30 66{w:02}{i:02}",)) for i in range(1 + w % 3)]
        for w in range(16)
    ]  # 31 new leads in batches of 1, 2 and 3
    results: list[list[Any]] = []

    async def worker(mine: list[list[InboundEvent]]) -> None:
        for b in mine:
            results.append(list(await crm.intake.process_many(b)))

    # Four workers, each one's pick committed on its own, apart from its batch's transaction.
    await asyncio.gather(*(worker(batches[w::4]) for w in range(4)))
    owners = [getattr(r, "responsible_id", r) for batch in results for r in batch]
    ids = [r.id for r in reps]
    # 31 turns in a row from the first rep: 11, 10, 10 (a repeat or a skip would show).
    assert Counter(owners) == {ids[0]: 11, ids[1]: 10, ids[2]: 10}
    for batch in results:
        turns = [ids.index(getattr(r, "responsible_id", r)) for r in batch]
        assert turns == [(turns[0] + i) % 3 for i in range(len(turns))]
    nxt = await crm.intake.process(make_event(phones=("+49 30 6699",)))
    assert nxt.responsible_id == ids[31 % 3]


async def test_repeat_leads_of_calls_are_titled_with_their_company_or_contact(
    crm: Crm,
) -> None:
    """A call gives no name: its repeat lead says whose it is (the client's company only
    looked up when there is one)."""
    await crm.records.create_company("Acme", phones=("+49 30 7770001",))
    await crm.records.create_contact(ContactInput(name="Anna Weber", phones=("+49 30 7770002",)))
    calls = [make_event(phones=(f"+49 30 777000{i}",)) for i in (1, 2)]
    results = await crm.intake.process_many(calls)
    assert [getattr(r, "outcome", r) for r in results] == ["new_repeat_lead"] * 2
    async with crm.db.transaction() as s:
        leads = [await s.get(Lead, getattr(r, "lead_id", 0)) for r in results]
    own = [title(e) for e in calls]
    assert [lead.title if lead else None for lead in leads] == [
        f"Acme: {own[0]}",
        f"Anna Weber: {own[1]}",
    ]


async def test_records_a_batch_goes_to_take_its_time_as_modified_at_and_say_so(crm: Crm) -> None:
    """Attached leads and deals get their modified_at in one UPDATE per table: in the
    database, on the feed (the field and the numbers whose caller answer it moves), and
    another lead of the same batch keeps its own."""
    lead = await crm.leads.create(LeadInput(title="Open lead", phones=("+4930111",)))
    won = await crm.leads.create(LeadInput(title="To convert", phones=("+4930222",)))
    deal = (await crm.leads.convert(won.id)).deal
    idle = await crm.leads.create(LeadInput(title="Idle", phones=("+4930333",)))
    assert deal is not None
    before = {r.id: r.modified_at for r in await _rows(crm, Lead, Deal)}
    feed = crm.changes.subscribe()
    done = await crm.intake.process_many(
        [
            make_event(external_id="m-1", phones=("+4930111",)),
            make_event(external_id="m-2", phones=("+4930222",)),
            make_event(external_id="m-3", phones=("+4930111",)),  # the same lead, next round
        ]
    )
    assert [getattr(r, "outcome", r) for r in done] == [
        "attached_lead",
        "attached_deal",
        "attached_lead",
    ]
    after = {(type(r).__name__, r.id): r.modified_at for r in await _rows(crm, Lead, Deal)}
    assert after[("Lead", lead.id)] > before[lead.id]
    assert after[("Deal", deal.id)] > before[deal.id]
    assert after[("Lead", idle.id)] == before[idle.id]
    got: dict[tuple[str, int], Change] = {}
    async with asyncio.timeout(10):
        while ("lead", lead.id) not in got or ("deal", deal.id) not in got:
            change = await anext(feed)
            if isinstance(change, Change) and change.action == "changed":
                got[(change.kind, change.id)] = change
    assert "modified_at" in got[("lead", lead.id)].fields
    assert "+4930111" in (got[("lead", lead.id)].numbers or ())
    assert "modified_at" in got[("deal", deal.id)].fields
    assert "+4930222" in (got[("deal", deal.id)].numbers or ())


async def _rows(crm: Crm, *models: Any) -> list[Any]:
    async with crm.db.transaction() as s:
        return [row for model in models for row in await s.scalars(select(model))]


async def test_a_batch_finds_the_open_tasks_and_log_rows_of_each_of_its_events(crm: Crm) -> None:
    """The batch's reads by lists of values (the open call-back tasks of its numbers, the log
    rows of the events logged before) find each event's own: two numbers' missed calls count
    on their own tasks, and of two events sharing an external id on two channels only the
    one processed before is a duplicate (a cross pair of the two lists is not)."""

    def missed(number: str, call: str) -> InboundEvent:
        meta = {"call_id": call, "stage": "missed", "missed": True, "disposition": "missed"}
        return make_event(external_id=f"{call}:missed", phones=(number,), meta=meta)

    numbers = ["+49 30 5550001", "+49 30 5550002", "+49 30 5550003"]
    first = await crm.intake.process_many([missed(n, f"a{k}") for k, n in enumerate(numbers)])
    shared_id = make_event(channel=Channel.EMAIL, external_id="x-1", emails=("x@example.com",))
    await crm.intake.process(shared_id)
    again = [missed(numbers[0], "b0"), missed(numbers[2], "b2"), missed(numbers[2], "c2")]
    call_x1 = make_event(external_id="x-1", phones=("+49 30 5550009",))
    results = await crm.intake.process_many([*again, call_x1, shared_id])
    outcomes = [getattr(r, "outcome", r) for r in results]
    assert outcomes == ["attached_lead"] * 3 + ["new_lead", "duplicate"]
    async with crm.db.read() as s:
        tasks = list(
            await s.scalars(select(Activity).where(Activity.kind == "task").order_by(Activity.id))
        )
    assert [(t.counterparty, t.attempts, t.done) for t in tasks] == [
        ("+49305550001", 2, False),
        ("+49305550002", 1, False),
        ("+49305550003", 3, False),
    ]
    assert [getattr(r, "task_id", None) for r in results[:3]] == [
        tasks[0].id,
        tasks[2].id,
        tasks[2].id,
    ]
    assert all(getattr(r, "task_id", None) is not None for r in first)


async def test_a_call_back_task_made_earlier_in_a_batch_is_found_by_its_next_missed_call(
    crm: Crm,
) -> None:
    """A new number's missed calls in one batch: the first makes the lead and its call-back
    task in one round, the next ones (later rounds of the same transaction) find that task
    and count on it, however the open tasks are read (on PostgreSQL a plain read first)."""

    def missed(call: str) -> InboundEvent:
        meta = {"call_id": call, "stage": "missed", "missed": True, "disposition": "missed"}
        return make_event(external_id=f"{call}:missed", phones=("+49 30 5550077",), meta=meta)

    results = await crm.intake.process_many([missed("n1"), missed("n2"), missed("n3")])
    assert [getattr(r, "outcome", r) for r in results] == ["new_lead"] + ["attached_lead"] * 2
    async with crm.db.read() as s:
        tasks = list(await s.scalars(select(Activity).where(Activity.kind == "task")))
    assert [(t.counterparty, t.attempts, t.done) for t in tasks] == [("+49305550077", 3, False)]
    assert {getattr(r, "task_id", None) for r in results} == {tasks[0].id}


@pytest.mark.parametrize("backend", ["postgres"])
async def test_two_workers_given_the_same_events_process_each_once(crm: Crm) -> None:
    """Two worker processes (each its own connections) handed the same events at the same
    time, in other orders and batch sizes: each event takes effect in one of them, the other
    answers it as a duplicate of that; every event has one log row, every number one lead."""
    await crm.records.create_contact(ContactInput(name="Known", phones=("+49 30 777777",)))
    events: list[InboundEvent] = []
    for k in range(40):
        if k % 4 == 0:
            events.append(make_event(phones=("+49 30 777777",)))  # the known client
        elif k % 4 == 1:  # two events of one call
            events.append(make_event(phones=(f"+49 30 55{k:04}",), meta={"call_id": f"c{k}"}))
            events.append(make_event(phones=(f"+49 30 55{k:04}",), meta={"call_id": f"c{k}"}))
        else:
            events.append(make_event(phones=(f"+49 30 66{k % 7:04}",)))  # numbers shared
    other = Crm(Database(crm.db.url.render_as_string(hide_password=False)), CrmConfig())
    await other.prepare()
    try:
        for attempt in range(3):
            batch = [replace(e, external_id=f"{e.external_id}-{attempt}") for e in events]

            async def work(worker: Crm, order: list[InboundEvent], size: int) -> list[Any]:
                out: list[Any] = []
                for i in range(0, len(order), size):
                    part = order[i : i + size]
                    out += zip(part, await worker.intake.process_many(part), strict=True)
                return out

            done = await asyncio.gather(work(crm, batch, 7), work(other, batch[::-1], 5 + attempt))
            by_event: dict[str, list[Any]] = {}
            for event, result in (*done[0], *done[1]):
                assert not isinstance(result, Exception), result
                by_event.setdefault(event.external_id, []).append(result)
            for results in by_event.values():
                first, second = sorted(results, key=lambda r: r.outcome == "duplicate")
                assert first.outcome != "duplicate" and second.outcome == "duplicate"
                assert second.event_log_id == first.event_log_id
                assert second.lead_id == first.lead_id
        assert await count(crm, InboundEventLog) == 3 * len(events)
        # One lead per new number (the later attempts' events go to it), one repeat lead of
        # the known client.
        numbers = {e.phones[0] for e in events} - {"+49 30 777777"}
        assert await count(crm, Lead) == len(numbers) + 1
    finally:
        await other.db.dispose()


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_worker_handed_an_event_another_holds_waits_on_its_lock_then_answers_duplicate(
    crm: Crm, caplog: pytest.LogCaptureFixture
) -> None:
    """The per-event lock itself. Events with no number, address nor call id take no identity
    lock, so only the event's own lock keeps a second worker out while the first one's batch
    is open: worker A is held just before its commit (its log row written, uncommitted);
    worker B, handed the same event, must wait on that event's advisory lock (not run the
    event and then wait on A's log row), and once A commits answer it as a duplicate of A's
    on its first try (no refused batch taken again one by one). B's other event, which
    shares nothing with A's, is not held up meanwhile: it is committed while B waits."""
    event, other = make_event(), make_event()  # calls with no number: no identity keys
    other_worker = Crm(Database(crm.db.url.render_as_string(hide_password=False)), CrmConfig())
    await other_worker.prepare()
    gate, held = asyncio.Event(), asyncio.get_running_loop().create_future()
    a_engine = crm.db.engine.sync_engine

    def hold(session: Any) -> None:  # worker A's transaction, mid-commit
        if session.bind is a_engine and not held.done():
            held.set_result(session.connection().connection.driver_connection.get_server_pid())
            await_(gate.wait())

    listen(TrackedSession, "before_commit", hold)
    caplog.set_level(logging.WARNING, logger="crm.intake")
    tasks: list[asyncio.Task[list[Any]]] = []
    try:
        tasks.append(asyncio.create_task(crm.intake.process_many([event])))
        a_pid = await asyncio.wait_for(held, 10)
        tasks.append(asyncio.create_task(other_worker.intake.process_many([other, event])))
        key = lock_id(f"event:{event.channel.value}:{event.external_id}") & (2**64 - 1)
        holders: dict[bool, int] = {}
        async with crm.db.autocommit() as conn:
            for _ in range(200):  # B's wait shows in pg_locks; without the lock it never does
                rows = await conn.fetch(
                    "SELECT pid, granted FROM pg_locks WHERE locktype = 'advisory'"
                    " AND database = (SELECT oid FROM pg_database WHERE datname ="
                    " current_database()) AND classid::bigint = $1 AND objid::bigint = $2"
                    " AND objsubid = 1",
                    key >> 32,
                    key & (2**32 - 1),
                )
                holders = {r["granted"]: r["pid"] for r in rows}
                if False in holders:
                    break
                await asyncio.sleep(0.05)
        assert holders.get(False) not in (None, a_pid), "B waits on the event's lock"
        assert holders.get(True) == a_pid, "A holds it"
        assert not tasks[1].done()
        async with crm.db.read() as s:
            committed = await s.scalars(
                select(InboundEventLog.external_id).where(
                    InboundEventLog.external_id.in_([event.external_id, other.external_id])
                )
            )
            assert list(committed) == [other.external_id]  # A's is not committed yet
        gate.set()
        (first,), (fresh, copy) = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    finally:
        gate.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        remove(TrackedSession, "before_commit", hold)
        await other_worker.db.dispose()
    assert not isinstance(first, Exception) and first.outcome != "duplicate"
    assert not isinstance(copy, Exception) and copy.outcome == "duplicate"
    assert copy.event_log_id == first.event_log_id
    assert not isinstance(fresh, Exception) and fresh.outcome == first.outcome
    # B's batch went through whole: a refused one is taken again event by event, with a warning.
    assert [r.getMessage() for r in caplog.records] == []
    assert await count(crm, InboundEventLog) == 2


async def test_a_long_batch_lets_the_event_loop_run_others_between_its_events(
    crm: Crm, monkeypatch: pytest.MonkeyPatch
) -> None:
    turns = 0

    async def ticker() -> None:  # another task on the loop (a webhook, say)
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    seen: dict[str, list[int]] = {"decide": [], "apply": []}
    own_decide, own_apply = intake_rounds.decide, intake_batching.apply_item

    def decide(*args: Any, **kwargs: Any) -> Any:
        seen["decide"].append(turns)
        return own_decide(*args, **kwargs)

    async def apply_item(*args: Any, **kwargs: Any) -> Any:
        seen["apply"].append(turns)
        return await own_apply(*args, **kwargs)

    monkeypatch.setattr(intake_rounds, "decide", decide)
    monkeypatch.setattr(intake_batching, "apply_item", apply_item)
    events = [make_event(phones=(f"+49 30 55{k:05d}",)) for k in range(3 * BREATHE_EVERY)]
    task = asyncio.create_task(ticker())
    try:
        results = await crm.intake.process_many(events)
    finally:
        task.cancel()
    assert [getattr(r, "outcome", r) for r in results] == ["new_lead"] * len(events)
    # Deciding and applying wait on nothing: the loop turns every BREATHE_EVERY events.
    for step, at in seen.items():
        assert len(at) == len(events), step
        assert len(set(at)) >= 3, step
