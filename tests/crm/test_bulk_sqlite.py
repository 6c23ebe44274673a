"""The SQLite writes around SQLAlchemy (`crm.bulk_sqlite`) store what SQLAlchemy's INSERT and
UPDATE store, byte for byte, in the session's transaction."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bulk_sqlite import Writes, utc_text
from crm.db import Database
from crm.models import (
    Activity,
    ActivityBinding,
    Communication,
    InboundEventLog,
    Lead,
    OutboxMessage,
    TimelineEntry,
    UtcDateTime,
)
from tests.conftest import open_db

T0 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
BERLIN = timezone(timedelta(hours=1))


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


@asynccontextmanager
async def _fresh(path: Path) -> AsyncIterator[Database]:
    """A new SQLite database in `path`."""
    await asyncio.to_thread(path.mkdir)
    db = await open_db("sqlite", path, None)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def lite(tmp_path: Path) -> AsyncIterator[Database]:
    async with _fresh(tmp_path / "lite") as db:
        yield db


def test_timestamps_are_the_text_sqlalchemy_binds() -> None:
    """Aware times in any zone (stored as UTC), whole seconds, the first and last years."""
    proc = UtcDateTime()._cached_bind_processor(Database("sqlite+aiosqlite://").engine.dialect)
    assert proc is not None
    rnd = random.Random(18)
    zones = [UTC, BERLIN, timezone(timedelta(hours=-9, minutes=-30)), ZoneInfo("Europe/Berlin")]
    values = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 2, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Berlin")),
        T0,
    ]
    for _ in range(2000):
        when = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(
            seconds=rnd.randrange(0, 10**9), microseconds=rnd.choice([0, rnd.randrange(10**6)])
        )
        values.append(when.astimezone(rnd.choice(zones)))
    for value in values:
        assert utc_text(value) == proc(value), value
    with pytest.raises(ValueError):
        utc_text(datetime(2026, 1, 1))


def _rows() -> dict[Any, list[dict[str, Any]]]:
    """Rows of the tables intake writes, with every kind of value they take."""
    later = datetime(2026, 3, 1, 12, 0, 0, 0, tzinfo=BERLIN)
    return {
        Lead: [
            {
                "id": 10 + k,
                "title": f"Anruf +49 30 1234 ü{k}",
                "status": "new",
                "status_semantic": "process",
                "source": "call",
                "is_return_customer": bool(k),
                "name": None if k else "Jörg",
                "company_title": None,
                "contact_id": None,
                "company_id": None,
                "responsible_id": None,
                "utm": {"source": "ads", "n": [1, 2.5, None, True]} if k else None,
                "created_at": T0,
                "modified_at": later,
            }
            for k in range(2)
        ],
        Activity: [
            {
                "id": 20 + k,
                "kind": "call",
                "direction": "incoming",
                "subject": "Anruf",
                "body": None,
                "done": True,
                "done_at": T0,
                "responsible_id": None,
                "channel": "call",
                "external_id": f"c{k}",
                "counterparty": "+49301234",
                "last_attempt_at": later + timedelta(microseconds=k),
                "meta": {"call_id": f"c{k}", "stage": "ringing", "emoji": "☎"},
                "created_at": T0,
                "attempts": 1,
            }
            for k in range(2)
        ],
        Communication: [
            {
                "kind": "phone",
                "raw_value": "+49 30 1234",
                "value": "+49301234" if k else None,
                "owner_type": "lead",
                "owner_id": 10,
                "label": None if k else "invalid",
                "extension": "12" if k else None,
                "created_at": T0,
            }
            for k in range(2)
        ],
        ActivityBinding: [{"activity_id": 20, "owner_type": t, "owner_id": 10} for t in "ab"],
        TimelineEntry: [
            {
                "owner_type": "lead",
                "owner_id": 10,
                "actor_id": None,
                "action": "created",
                "before": None,
                "after": {"reason": "neue Nummer", "n": 2},
                "at": later,
            }
        ],
        OutboxMessage: [
            {
                "rep_id": None,
                "kind": "new_lead",
                "payload": {"event_id": 1, "x": "ü"},
                "created_at": T0,
                "next_attempt_at": later,
                "attempts": 0,
            }
        ],
        InboundEventLog: [
            {
                "channel": "call",
                "external_id": f"e{k}",
                "received_at": T0,
                "occurred_at": later,
                "direction": "incoming",
                "outcome": "processing",
                "reason": "",
                "payload": {"k": [1, "ü"], "none": None},
            }
            for k in range(2)
        ],
    }


async def _stored(s: AsyncSession, table: Table) -> list[tuple[Any, ...]]:
    """Each column's SQLite type and literal text, row by row (the ids left out: the two
    copies differ there)."""
    cols = [c.name for c in table.columns if c.name not in ("id", "activity_id")]
    shown = ", ".join(f'typeof("{c}"), quote("{c}")' for c in cols)
    return [tuple(r) for r in await s.execute(text(f'SELECT {shown} FROM "{table.name}"'))]


async def test_inserts_store_what_a_core_insert_stores(tmp_path: Path) -> None:
    stored = []
    for way in ("core", "raw"):
        async with _fresh(tmp_path / way) as db:
            async with db.transaction() as s:
                writes = Writes()
                for model, rows in _rows().items():
                    if way == "core":
                        await s.execute(insert(_table(model)), rows)
                    else:
                        writes.insert(_table(model), rows)
                await writes.run(s)
            async with db.read() as s:
                stored.append({m.__tablename__: await _stored(s, _table(m)) for m in _rows()})
    core, raw = stored
    for table, written in core.items():
        assert written and raw[table] == written, table


async def test_values_the_rows_share_and_defaults_are_written_in_each(lite: Database) -> None:
    """`same` goes in every row; a Python-side default of a column the rows leave out is
    taken once for the statement."""
    rows = [{"kind": f"k{k}", "payload": {"n": k}, "rep_id": None} for k in range(3)]
    before = datetime.now(UTC)
    async with lite.transaction() as s:
        writes = Writes()
        writes.insert(_table(OutboxMessage), rows, same={"created_at": T0})
        await writes.run(s)
    async with lite.read() as s:
        out = list(await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    assert [(r.kind, r.payload, r.attempts, r.created_at, r.sent_at) for r in out] == [
        (f"k{k}", {"n": k}, 0, T0, None) for k in range(3)
    ]
    assert len({r.next_attempt_at for r in out}) == 1 and out[0].next_attempt_at >= before


async def test_a_returning_insert_gives_the_rows_it_wrote_and_skips_conflicts(
    lite: Database,
) -> None:
    """More rows than one statement's parameters take: all of them come back in one list,
    the ids in the rows' order; a second insert of the same keys writes and returns none."""
    log = _table(InboundEventLog)
    base = _rows()[InboundEventLog][0]
    rows = [base | {"external_id": f"x{k:04d}"} for k in range(300)]
    unique = ("channel", "external_id")
    async with lite.transaction() as s:
        writes = Writes()
        writes.insert(log, rows[:1], skip_conflicts_on=unique, returning=("external_id",))
        writes.insert(log, rows, skip_conflicts_on=unique, returning=("id", *unique))
        writes.insert(log, rows[:5], skip_conflicts_on=unique, returning=("id",))
        first, written, again = await writes.run(s)
    assert first == [("x0000",)]
    assert [x for _, _, x in written] == [r["external_id"] for r in rows[1:]]
    assert [i for i, _, _ in written] == list(range(2, 301))
    assert again == []


async def test_updates_set_each_row_by_its_id_as_the_orm_s_bulk_update(tmp_path: Path) -> None:
    log = _table(InboundEventLog)
    changes = [
        {"id": 2, "outcome": "new_lead", "reason": "neu", "lead_id": 7, "activity_id": None},
        {"id": 1, "outcome": "ignored", "reason": "", "lead_id": None, "activity_id": 3},
    ]
    stored = []
    for way in ("orm", "raw"):
        async with _fresh(tmp_path / way) as db:
            async with db.transaction() as s:
                await s.execute(insert(log), [*_rows()[InboundEventLog], _log(3)])
            async with db.transaction() as s:
                writes = Writes()
                if way == "orm":
                    await s.execute(update(InboundEventLog), changes)
                writes.update(log, changes if way == "raw" else [])
                await writes.run(s)
            async with db.read() as s:
                stored.append(await _stored(s, log))
                got = await s.execute(
                    select(InboundEventLog.outcome, InboundEventLog.lead_id).order_by(
                        InboundEventLog.id
                    )
                )
                assert [tuple(r) for r in got] == [
                    ("ignored", None),
                    ("new_lead", 7),
                    ("processing", None),
                ]
    assert stored[0] == stored[1]


def _log(k: int) -> dict[str, Any]:
    return _rows()[InboundEventLog][0] | {"external_id": f"e-{k}"}


async def test_the_writes_are_part_of_the_transaction_that_rolls_back(lite: Database) -> None:
    """The first statement of a transaction going around SQLAlchemy still waits for its
    commit (SQLAlchemy began it when it took the connection)."""
    with pytest.raises(RuntimeError):
        async with lite.transaction() as s:
            writes = Writes()
            writes.insert(_table(InboundEventLog), [_log(1)])
            await writes.run(s)
            raise RuntimeError("the batch failed")
    async with AsyncSession(lite.engine) as s:
        async with s.begin():
            writes = Writes()
            writes.insert(_table(InboundEventLog), [_log(2)])
            await writes.run(s)
        async with s.begin():
            writes.insert(_table(InboundEventLog), [_log(3)])
            await writes.run(s)
            await s.rollback()
        async with s.begin():
            writes.insert(_table(InboundEventLog), [_log(4)])
            await writes.run(s)
    async with lite.read() as s:
        logged = [r.external_id for r in await s.scalars(select(InboundEventLog))]
    assert sorted(logged) == ["e-2", "e-4"]


async def test_a_refused_row_raises_as_sqlalchemy_raises_it(lite: Database) -> None:
    """An IntegrityError of SQLAlchemy's (intake retries a batch that met one), with the
    statement; nothing of the transaction stays."""
    with pytest.raises(IntegrityError) as caught:
        async with lite.transaction() as s:
            writes = Writes()
            writes.insert(_table(InboundEventLog), [_log(1)])
            writes.insert(
                _table(ActivityBinding), [{"activity_id": 99, "owner_type": "lead", "owner_id": 1}]
            )
            await writes.run(s)
    assert "activity_bindings" in str(caught.value.statement)
    async with lite.read() as s:
        assert list(await s.scalars(select(InboundEventLog))) == []
