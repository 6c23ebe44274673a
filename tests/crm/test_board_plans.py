"""The board's queries walk the (status | stage, created_at, id) indexes on both backends:
the statements the service really sends, captured and EXPLAINed on a seeded database (the
benchmarks' seeding, 20,000 contacts: 10,000 leads, 6,000 deals). No timings: the plans."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text

from benchmarks.seed import seed_postgres, seed_sqlite
from crm.db import Database
from crm.dto import Actor
from crm.facade import Crm
from crm.services.board import BoardFilters

CONTACTS = 20_000


@contextmanager
def captured(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """The board's SELECTs on leads / deals while the block runs, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if re.search(r"FROM (leads|deals)\b", statement):
            seen.append((statement, params))

    engine = db.read_engine.sync_engine
    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", keep)


async def plan(db: Database, statement: str, params: Any) -> str:
    prefix = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "
    async with db.read_engine.connect() as conn:
        rows = await conn.exec_driver_sql(prefix + statement, params)
        return "\n".join(str(r[-1] if db.is_sqlite else r[0]) for r in rows)


async def seeded(crm: Crm) -> tuple[Actor, Actor]:
    db = crm.db
    if db.is_sqlite:
        assert db.sqlite_file
        seed_sqlite(db.sqlite_file, CONTACTS)
    else:
        dsn = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        await seed_postgres(dsn, CONTACTS)
    rita = await crm.reps.add("Rita Rep")
    async with db.engine.begin() as conn:
        # Every seventh record is Rita's; the rest is the unassigned queue.
        for table in ("leads", "deals"):
            await conn.execute(
                text(f"UPDATE {table} SET responsible_id = :r WHERE id % 7 = 0"), {"r": rita.id}
            )
        await conn.exec_driver_sql("ANALYZE")
    return Actor(rita.id, "rep"), Actor(None)


FILTERS = [
    BoardFilters(),
    BoardFilters(unassigned=True),
    BoardFilters(source="call", repeat=False),
    BoardFilters(created_from=datetime(2025, 1, 1, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize("kind", ["lead", "deal"])
async def test_columns_and_pages_walk_the_board_indexes(crm: Crm, kind: str) -> None:
    rita, admin = await seeded(crm)
    for actor in (admin, rita):
        for flt in FILTERS:
            with captured(crm.db) as statements:
                board = await crm.board.columns(kind, flt, actor, per_column=5)
                fullest = max(board.columns, key=lambda c: c.count)
                assert fullest.next_cursor, (flt, actor)
                await crm.board.column_page(
                    kind, fullest.code, flt, actor, after=fullest.next_cursor, limit=5
                )
            table = "leads" if kind == "lead" else "deals"
            pages = [(s, p) for s, p in statements if "ORDER BY" in s and f"FROM {table}" in s]
            columns = [*board.columns, fullest]
            assert len(pages) == len(columns)
            for (statement, params), column in zip(pages, columns, strict=True):
                if column.count < 100:
                    continue  # the planner may as well sort a handful of rows
                shown = await plan(crm.db, statement, params)
                # The column's rows come off the index in order: no scan of the table, no
                # sort of everything the column holds.
                assert "ix_" in shown and "_created" in shown, shown
                if crm.db.is_sqlite:
                    assert f"SCAN {table}" not in shown and "TEMP B-TREE" not in shown, shown
                else:
                    assert f"Seq Scan on {table}" not in shown, shown
                    assert not re.search(r"^\s*(->\s*)?Sort\b", shown, re.M), shown


@pytest.mark.parametrize("kind", ["lead", "deal"])
async def test_counts_read_the_index_not_the_table(crm: Crm, kind: str) -> None:
    """No filter or only an owner / the queue: the board reads its counters and sends no
    GROUP BY over the records (and they equal one). Other filters: one GROUP BY counts (and
    sums) all columns. SQLite reads the index for any filter; PostgreSQL does for a selective
    one (a recent range) and reads the rows in one pass where most of them count anyway."""
    rita, admin = await seeded(crm)
    table = "leads" if kind == "lead" else "deals"
    selective = [
        BoardFilters(owner_id=rita.rep_id),
        BoardFilters(created_from=datetime(2025, 1, 1, 5, 30, tzinfo=UTC)),
    ]
    for actor in (admin, rita):
        for flt in FILTERS + selective:
            with captured(crm.db) as statements:
                await crm.board.columns(kind, flt, actor, per_column=1)
            counted = [(s, p) for s, p in statements if "GROUP BY" in s]
            if not (flt.source or flt.created_from):
                assert counted == []
                live = await crm.board.live_totals(kind, flt, actor)
                assert await crm.board.counted_totals(kind, flt, actor) == live
                continue
            [(statement, params)] = counted
            shown = await plan(crm.db, statement, params)
            if crm.db.is_sqlite:
                assert f"SCAN {table}" not in shown and "USING" in shown, shown
            elif flt in selective:
                assert f"Seq Scan on {table}" not in shown and "Index" in shown, shown
