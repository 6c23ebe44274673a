"""The benchmarks' PostgreSQL seeding leaves the tables it does not fill without statistics,
as a production database has them before autovacuum first looks: a table recorded as empty
makes a connection's cached foreign-key check plans scan it row by row as it grows (the
intake bench's first phase paid that, its baselines did not)."""

from __future__ import annotations

import asyncpg

from benchmarks.seed import seed_postgres
from crm.config import CrmConfig
from crm.db import Database
from crm.facade import Crm
from crm.models import Base


async def test_seeding_analyzes_the_tables_it_fills_and_no_other(empty_postgres: str) -> None:
    db = Database(empty_postgres)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        await Crm(db, CrmConfig()).prepare()  # the pipelines the seeded deals are in
    finally:
        await db.dispose()
    dsn = empty_postgres.replace("postgresql+asyncpg://", "postgresql://")
    await seed_postgres(dsn, 200)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT relname, last_analyze IS NOT NULL AS analyzed FROM pg_stat_user_tables"
        )
        analyzed = {r["relname"] for r in rows if r["analyzed"]}
        for table in ("contacts", "companies", "communications", "leads", "deals"):
            assert table in analyzed
        for table in ("activities", "activity_bindings", "inbound_events", "timeline", "outbox"):
            assert table not in analyzed
            # Never analyzed: the planner assumes some pages, so a key look-up takes the index.
            count = await conn.fetchval("SELECT reltuples FROM pg_class WHERE relname = $1", table)
            assert count == -1
    finally:
        await conn.close()
