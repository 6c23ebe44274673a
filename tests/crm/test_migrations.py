"""The Alembic migrations, run for real on SQLite and PostgreSQL: they end at the schema the
models describe, and 0002 moves a phone's extension out of its label into its own column."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import Actor
from crm.facade import Crm
from crm.models import Base
from crm.schema import current_revision, head_revision, upgrade
from crm.services.board import BoardFilters
from crm.services.leads import LeadInput


@pytest.fixture
async def empty_db(backend: str, tmp_path: Path, empty_postgres: str) -> AsyncIterator[Database]:
    """A database with no tables at all, of its own (the shared test database is migrated)."""
    if backend == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}")
    else:
        db = Database(empty_postgres)
    try:
        yield db
    finally:
        await db.dispose()


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_0002_moves_extensions_to_their_column_and_unmatches_unassigned_numbers(
    empty_db: Database,
) -> None:
    assert await current_revision(empty_db) is None
    await upgrade(empty_db, "0001")
    assert await current_revision(empty_db) == "0001"
    rows = [
        ("phone", "+49 30 1234567 ext 12", "+49301234567", "ext. 12"),
        ("phone", "0000000", None, "invalid"),
        ("phone", "+4930123456", "+4930123456", None),
        ("telegram", "ext. anna", "42", "ext. anna"),  # a username, however odd: untouched
        ("phone", "0000000", "+49000000", None),  # stored before numbers had to be valid
    ]
    async with empty_db.engine.begin() as conn:
        for kind, raw, value, label in rows:
            await conn.execute(
                text(
                    "INSERT INTO communications (kind, raw_value, value, owner_type, owner_id,"
                    " label, created_at) VALUES (:k, :r, :v, 'contact', 1, :l, CURRENT_TIMESTAMP)"
                ),
                {"k": kind, "r": raw, "v": value, "l": label},
            )
    await upgrade(empty_db, "head")
    assert await current_revision(empty_db) == head_revision()
    async with empty_db.engine.connect() as conn:
        found = (
            await conn.execute(
                text("SELECT raw_value, value, label, extension FROM communications ORDER BY id")
            )
        ).all()
        assert [tuple(r) for r in found] == [
            ("+49 30 1234567 ext 12", "+49301234567", None, "12"),
            ("0000000", None, "invalid", None),
            ("+4930123456", "+4930123456", None, None),
            ("ext. anna", "42", "ext. anna", None),
            ("0000000", None, "invalid", None),
        ]
        # The migrated schema is the models' (so SQLite tests, built from the models, and
        # PostgreSQL ones, built by the migrations, test the same thing).
        assert await conn.run_sync(_differences) == []


async def test_0004_keeps_existing_tokens_read_only(empty_db: Database) -> None:
    await upgrade(empty_db, "0002")
    async with empty_db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO api_tokens (name, token_hash, created_at)"
                " VALUES ('dashboard', 'h', CURRENT_TIMESTAMP)"
            )
        )
    await upgrade(empty_db, "0004")
    async with empty_db.engine.connect() as conn:
        found = (await conn.execute(text("SELECT name, scopes, rep_id FROM api_tokens"))).all()
        assert [tuple(r) for r in found] == [("dashboard", "read", None)]
    await upgrade(empty_db, "head")
    async with empty_db.engine.connect() as conn:
        assert await conn.run_sync(_differences) == []


async def test_0007_fills_the_board_counters_from_the_records(empty_db: Database) -> None:
    await upgrade(empty_db, "0004")
    crm = Crm(empty_db, CrmConfig())
    await crm.prepare()
    rita = (await crm.reps.add("Rita Rep")).id
    lead = await crm.leads.create(LeadInput("Called", responsible_id=rita))
    await crm.leads.create(LeadInput("Queue"))
    await crm.leads.junk(lead.id, "spam")
    await crm.deals.create("A", amount=Decimal("10.50"), responsible_id=rita)
    await crm.deals.create("B", amount=Decimal("2"), currency="USD")
    await crm.deals.create("C")
    await upgrade(empty_db, "head")
    sue = Actor(None)
    for kind in ("lead", "deal"):
        for flt in (BoardFilters(), BoardFilters(owner_id=rita), BoardFilters(unassigned=True)):
            live = await crm.board.live_totals(kind, flt, sue)
            assert live[0] and await crm.board.counted_totals(kind, flt, sue) == live
    # and the triggers keep them from then on
    await crm.deals.create("D", amount=Decimal("1"), responsible_id=rita)
    counts, sums = await crm.board.counted_totals("deal", BoardFilters(owner_id=rita), sue)
    assert counts == {"NEW": 2} and sums == {"NEW": {"EUR": Decimal("11.50")}}
