"""SQLAlchemy's statements on SQLite, one trip each to aiosqlite's thread
(`crm.sqlite_trips`), give SQLAlchemy what the adapter's cursors gave: rows, generated ids,
counts of rows changed, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import IntegrityError

from crm.db import Database
from crm.models import ExceptionEntry, Rep
from tests.conftest import open_db


@pytest.fixture
async def lite(tmp_path: Path) -> AsyncIterator[Database]:
    db = await open_db("sqlite", tmp_path, None)
    yield db
    await db.dispose()


async def test_rows_ids_and_counts_read_as_before(lite: Database) -> None:
    async with lite.transaction() as s:
        reps = [Rep(name=f"Rep {k}", role="rep") for k in range(3)]
        s.add_all(reps)
        await s.flush()  # the ids come from each INSERT's lastrowid
        assert [r.id for r in reps] == [1, 2, 3]
        await s.execute(
            insert(ExceptionEntry), [{"kind": "phone", "value": f"+49{k}"} for k in "12"]
        )
        changed = await s.execute(update(Rep).where(Rep.id > 1).values(role="admin"))
        assert getattr(changed, "rowcount", None) == 2
    async with lite.read() as s:
        rows = list(await s.execute(select(Rep.id, Rep.role).order_by(Rep.id)))
        assert [tuple(r) for r in rows] == [(1, "rep"), (2, "admin"), (3, "admin")]
        assert list(await s.scalars(select(ExceptionEntry.value).order_by(ExceptionEntry.id))) == [
            "+491",
            "+492",
        ]
        streamed = [r.name async for r in await s.stream_scalars(select(Rep).order_by(Rep.id))]
        assert streamed == ["Rep 0", "Rep 1", "Rep 2"]
        empty = await s.execute(text("SELECT id FROM reps WHERE id > 99"))
        assert list(empty) == []


async def test_a_refused_statement_raises_as_before_and_rolls_back(lite: Database) -> None:
    with pytest.raises(IntegrityError):
        async with lite.transaction() as s:
            s.add(Rep(name="kept?", role="rep"))
            await s.flush()
            await s.execute(
                text("INSERT INTO reps (id, name, role, active) VALUES (1, 'x', 'rep', 1)")
            )
    async with lite.read() as s:
        assert list(await s.scalars(select(Rep))) == []


async def test_each_statement_is_one_trip_to_the_connection_s_thread(lite: Database) -> None:
    async with lite.transaction() as s:
        raw = await (await s.connection()).get_raw_connection()
        driver: Any = raw.driver_connection
        trips = 0
        own = driver._execute

        async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal trips
            trips += 1
            return await own(fn, *args, **kwargs)

        driver._execute = counted
        try:
            assert list(await s.scalars(select(Rep.id))) == []
            await s.execute(insert(ExceptionEntry), [{"kind": "phone", "value": "+491"}])
        finally:
            del driver._execute
    assert trips == 2


async def test_a_connection_given_back_after_its_commit_costs_no_rollback(
    lite: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    own = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        steps.append(getattr(fn, "__name__", ""))
        return await own(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    async with lite.transaction() as s:
        s.add(Rep(name="kept", role="rep"))
    assert "commit" in steps
    assert "rollback" not in steps


async def test_a_connection_given_back_in_a_transaction_is_rolled_back(lite: Database) -> None:
    async with lite.transaction() as s:  # the pool's connection: its last step a COMMIT
        s.add(Rep(name="kept", role="rep"))
    async with lite.engine.connect() as conn:
        # A transaction SQLAlchemy does not know of, left open when the connection goes back.
        driver: Any = (await conn.get_raw_connection()).driver_connection
        await driver.execute("BEGIN IMMEDIATE")
        await driver.execute(
            "INSERT INTO reps (name, role, active, created_at)"
            " VALUES ('lost', 'rep', 1, '2026-01-01')"
        )
    async with lite.transaction() as s:  # BEGIN IMMEDIATE again: the pool rolled it back
        s.add(Rep(name="next", role="rep"))
    async with lite.read() as s:
        assert list(await s.scalars(select(Rep.name).order_by(Rep.id))) == ["kept", "next"]
