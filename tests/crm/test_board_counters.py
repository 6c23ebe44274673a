"""The board's counters (board_counters, kept by triggers) equal the live GROUP BY after any
mix of writes, on SQLite and PostgreSQL: intake, creation, moves, conversions, reassignments,
amounts, a bulk UPDATE, deletes, and the migration's backfill."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from pathlib import Path

import asyncpg
from sqlalchemy import text

from crm.config import CrmConfig
from crm.counters import SLOTS, backfill_sql
from crm.dto import Actor
from crm.errors import CrmError
from crm.facade import Crm
from crm.models import Base
from crm.services.board import BoardFilters
from crm.services.leads import LeadInput
from tests.conftest import make_event, open_db


async def _assert_counters_match(crm: Crm, actors: list[Actor], reps: list[int]) -> None:
    filters = [BoardFilters(), BoardFilters(unassigned=True)]
    filters += [BoardFilters(owner_id=r) for r in reps]
    for kind in ("lead", "deal"):
        for actor in actors:
            for flt in filters:
                live = await crm.board.live_totals(kind, flt, actor)
                counted = await crm.board.counted_totals(kind, flt, actor)
                assert counted == live, (kind, actor, flt)


async def _random_writes(crm: Crm, rnd: random.Random, reps: list[int], sue: Actor) -> None:
    owners = [None, *reps]
    statuses = [s.code for s in crm.config.lead_statuses if s.semantic == "process"]
    stages = [code for code, _, _ in await crm.deals.stages()]
    leads: list[int] = []
    deals: list[int] = []
    for step in range(60):
        op = rnd.choice(
            ["intake", "lead", "deal", "status", "junk", "assign", "convert", "move", "amount"]
        )
        try:
            if op == "intake":
                batch = [
                    make_event(phones=(f"+4930{rnd.randrange(10**6, 10**7)}",), display_name="X")
                    for _ in range(rnd.randint(1, 4))
                ]
                for r in await crm.intake.process_many(batch):
                    if not isinstance(r, Exception) and r.lead_id:
                        leads.append(r.lead_id)
            elif op == "lead":
                made = await crm.leads.create(
                    LeadInput(f"L{step}", responsible_id=rnd.choice(owners))
                )
                leads.append(made.id)
            elif op == "deal":
                amount = rnd.choice([None, Decimal(rnd.randint(1, 10**6)) / 100])
                deal = await crm.deals.create(
                    f"D{step}",
                    amount=amount,
                    currency=rnd.choice(["EUR", "USD"]),
                    responsible_id=rnd.choice(owners),
                )
                deals.append(deal.id)
            elif op == "status" and leads:
                await crm.leads.change_status(rnd.choice(leads), rnd.choice(statuses), sue)
            elif op == "junk" and leads:
                await crm.leads.junk(rnd.choice(leads), "spam", sue)
            elif op == "assign" and (leads or deals):
                if leads and (not deals or rnd.random() < 0.5):
                    await crm.leads.assign(rnd.choice(leads), rnd.choice(reps), sue)
                else:
                    await crm.deals.assign(rnd.choice(deals), rnd.choice(reps), sue)
            elif op == "convert" and leads:
                await crm.board.move(
                    "lead",
                    rnd.choice(leads),
                    "CONVERTED",
                    sue,
                    convert=True,
                    amount=str(rnd.randint(1, 999)),
                )
            elif op == "move" and deals:
                await crm.deals.move(rnd.choice(deals), rnd.choice(stages), sue, reason="r")
            elif op == "amount" and deals:
                await crm.deals.set_amount(rnd.choice(deals), Decimal(rnd.randint(0, 9999)), sue)
        except CrmError:
            pass  # a refused write (a converted lead, a closed deal …) changes nothing


async def test_counters_equal_the_live_counts_after_random_writes(crm: Crm) -> None:
    reps = [(await crm.reps.add(name)).id for name in ("Rita Rep", "Sam Rep")]
    sue = Actor((await crm.reps.add("Sue Boss", role="supervisor")).id, "supervisor")
    actors = [sue, *(Actor(r, "rep") for r in reps)]
    rnd = random.Random(15)
    await _random_writes(crm, rnd, reps, sue)
    # The writes reached several columns, owners and currencies.
    lead_counts, _ = await crm.board.live_totals("lead", BoardFilters(), sue)
    deal_counts, deal_sums = await crm.board.live_totals("deal", BoardFilters(), sue)
    assert len(lead_counts) >= 3 and len(deal_counts) >= 3, (lead_counts, deal_counts)
    assert {c for sums in deal_sums.values() for c in sums} == {"EUR", "USD"}
    await _assert_counters_match(crm, actors, reps)

    # Writes no service makes: a bulk reassignment and deletes (triggers see them too).
    async with crm.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE leads SET responsible_id = :r WHERE id % 2 = 0"), {"r": reps[0]}
        )
        await conn.execute(text("UPDATE deals SET amount = NULL WHERE id % 3 = 0"))
        await conn.execute(text("DELETE FROM deals WHERE id % 4 = 1"))
        await conn.execute(
            text(
                "DELETE FROM leads WHERE id % 3 = 1 AND id NOT IN"
                " (SELECT lead_id FROM deals WHERE lead_id IS NOT NULL)"
            )
        )
    await _assert_counters_match(crm, actors, reps)
    await _random_writes(crm, rnd, reps, sue)
    await _assert_counters_match(crm, actors, reps)

    # The migration's backfill rebuilds them from the records as they are.
    async with crm.db.engine.begin() as conn:
        await conn.execute(text("UPDATE board_counters SET n = n + 7"))
        for sql in backfill_sql():
            await conn.exec_driver_sql(sql)
    await _assert_counters_match(crm, actors, reps)


async def test_the_board_reads_counters_for_owner_filters_and_counts_live_for_others(
    crm: Crm,
) -> None:
    rita = (await crm.reps.add("Rita Rep")).id
    sue = Actor((await crm.reps.add("Sue Boss", role="supervisor")).id, "supervisor")
    await crm.leads.create(LeadInput("Mine", responsible_id=rita))
    await crm.leads.create(LeadInput("Queue", source="WEB"))
    # A skewed counter shows where a count comes from: the counters, or the records.
    async with crm.db.engine.begin() as conn:
        for owner in (rita, 0):
            await conn.execute(
                text(
                    "INSERT INTO board_counters (kind, col, responsible_id, currency, slot, n,"
                    " priced, amount) VALUES ('lead', 'NEW', :r, '', 99, 100, 0, 0)"
                ),
                {"r": owner},
            )
    new = lambda view: view.columns[0].count  # noqa: E731
    assert new(await crm.board.columns("lead", BoardFilters(), sue)) == 202
    assert new(await crm.board.columns("lead", BoardFilters(owner_id=rita), sue)) == 101
    assert new(await crm.board.columns("lead", BoardFilters(unassigned=True), sue)) == 101
    assert new(await crm.board.columns("lead", BoardFilters(), Actor(rita, "rep"))) == 202
    assert new(await crm.board.columns("lead", BoardFilters(source="WEB"), sue)) == 1
    assert new(await crm.board.columns("lead", BoardFilters(text="Mine"), sue)) == 1


async def test_create_all_on_an_existing_schema_keeps_one_set_of_triggers(crm: Crm) -> None:
    await crm.leads.create(LeadInput("Before"))
    async with crm.db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)  # what benchmarks and tests may repeat
    await crm.leads.create(LeadInput("After"))
    counts, _ = await crm.board.counted_totals("lead", BoardFilters(), Actor(None))
    assert counts == {"NEW": 2}


async def _same_slot_pair(dsn: str) -> list[asyncpg.Connection]:
    """Two connections whose backends share a counter slot (`pg_backend_pid() % SLOTS`): of
    SLOTS + 1 connections two always do."""
    opened: list[asyncpg.Connection] = []
    pair: list[asyncpg.Connection] = []
    try:
        by_slot: dict[int, asyncpg.Connection] = {}
        for _ in range(SLOTS + 1):
            conn = await asyncpg.connect(dsn)
            opened.append(conn)
            slot = conn.get_server_pid() % SLOTS
            if slot in by_slot:
                pair = [by_slot[slot], conn]
                return pair
            by_slot[slot] = conn
        raise AssertionError("no two backends share a slot")
    finally:
        for conn in opened:
            if conn not in pair:
                await conn.close()


async def test_transactions_writing_counters_in_opposite_orders_do_not_deadlock(
    pg_url: str, tmp_path: Path
) -> None:
    """Two transactions on backends of one slot, each moving a lead of rep A and one of rep B
    in two statements, in opposite orders (as a conversion's lead then deal statement meets an
    intake round's deal then lead): with counter rows per backend slot each waited for the
    other's row, a deadlock. Each transaction now writes a slot no other one holds."""
    db = await open_db("postgres", tmp_path, pg_url)
    crm = Crm(db, CrmConfig())
    await crm.prepare()
    try:
        a, b = [(await crm.reps.add(name)).id for name in ("Anna", "Bert")]
        leads = [
            (await crm.leads.create(LeadInput(f"L{i}", responsible_id=rep))).id
            for i, rep in enumerate((a, b, b, a))
        ]
        first, second = await _same_slot_pair(pg_url.replace("+asyncpg", ""))
        move = "UPDATE leads SET status = 'IN_PROCESS' WHERE id = $1"
        try:
            await first.execute("BEGIN")
            await second.execute("BEGIN")
            await first.execute(move, leads[0])  # rep A's counters
            await second.execute(move, leads[1])  # rep B's counters
            # Each now needs the other's key: rep B's after A's, rep A's after B's.
            waits = asyncio.gather(first.execute(move, leads[2]), second.execute(move, leads[3]))
            await asyncio.wait_for(waits, timeout=20)
            await first.execute("COMMIT")
            await second.execute("COMMIT")
        finally:
            await first.close()
            await second.close()
        sue = Actor((await crm.reps.add("Sue", role="supervisor")).id, "supervisor")
        await _assert_counters_match(crm, [sue], [a, b])
    finally:
        await db.dispose()


async def test_more_transactions_than_slots_share_them_and_count_right(
    pg_url: str, tmp_path: Path
) -> None:
    """Each transaction holds its slot to its end; one that finds every slot held writes its
    backend's slot unlocked, as all did before (waiting only for a holder of the same key)."""
    db = await open_db("postgres", tmp_path, pg_url)
    crm = Crm(db, CrmConfig())
    await crm.prepare()
    conns: list[asyncpg.Connection] = []
    try:
        rep, *others = [(await crm.reps.add(name)).id for name in ("Anna", "Bert", "Carl")]
        leads = [  # the last two with keys of their own: they share slots with holders
            (await crm.leads.create(LeadInput(f"L{i}", responsible_id=rep))).id
            for i in range(SLOTS)
        ]
        leads += [(await crm.leads.create(LeadInput("B", responsible_id=r))).id for r in others]
        dsn = pg_url.replace("+asyncpg", "")
        conns = [await asyncpg.connect(dsn) for _ in leads]
        slots = []
        for conn, lead in zip(conns, leads, strict=True):
            await conn.execute("BEGIN")
            move = "UPDATE leads SET status = 'IN_PROCESS' WHERE id = $1"
            await asyncio.wait_for(conn.execute(move, lead), timeout=20)
            slots.append(int(await conn.fetchval("SELECT board_counters_slot()")))
        assert sorted(slots[:SLOTS]) == list(range(SLOTS))  # one each while there are free
        assert slots[SLOTS:] == [c.get_server_pid() % SLOTS for c in conns[SLOTS:]]
        for conn in conns:
            await conn.execute("COMMIT")
        sue = Actor((await crm.reps.add("Sue", role="supervisor")).id, "supervisor")
        await _assert_counters_match(crm, [sue], [rep, *others])
    finally:
        for conn in conns:
            await conn.close()
        await db.dispose()
