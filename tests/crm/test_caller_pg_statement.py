"""The PostgreSQL caller lookup's statements (`one_sql` for one number, `batch_sql` for many)
answer exactly as `caller_sql` over random small CRMs: numbers on contacts, companies and
leads (some dangling, some shared, more holders than are read), open and closed leads and
deals with many ties in `modified_at`."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from crm.services.callers import batch_sql, one_sql
from crm.services.telephony import MAX_HOLDERS, caller_sql

NUMBERS = [f"+49301000{k:02d}" for k in range(6)]
T0 = datetime(2026, 1, 1, 10, tzinfo=UTC)
STAMPS = [T0, T0 + timedelta(microseconds=1), T0 + timedelta(days=1)]


@pytest.fixture
async def conn(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    url = make_url(pg_url).set(drivername="postgresql")
    con = await asyncpg.connect(url.render_as_string(hide_password=False))
    # Dangling references on purpose: no foreign-key checks (nor the board triggers).
    await con.execute("SET session_replication_role = replica")
    # As the lookup's connections are set (`_PostgresReader`).
    await con.execute("SET plan_cache_mode = force_generic_plan")
    await con.execute("SET max_parallel_workers_per_gather = 0")
    try:
        yield con
    finally:
        await _clear(con)
        await con.close()


async def _clear(con: asyncpg.Connection) -> None:
    for table in ("communications", "deals", "leads", "contacts", "companies", "reps"):
        await con.execute(f"DELETE FROM {table}")


async def _fill(con: asyncpg.Connection, rng: random.Random) -> None:
    await _clear(con)
    n_reps, n_companies, n_contacts, n_leads = 4, rng.randint(0, 5), rng.randint(0, 8), 8

    def ref(n: int) -> int | None:  # an id, sometimes a missing one, sometimes none
        return rng.choice([None, n + 1, *range(1, n + 1)]) if rng.random() < 0.9 else None

    def stamp() -> datetime:
        return rng.choice(STAMPS)

    await con.executemany(
        "INSERT INTO reps (id, name, role, active, extension, created_at)"
        " VALUES ($1, $2, 'rep', $3, $4, $5)",
        [
            (i, f"Rep {i}", rng.random() < 0.5, rng.choice([None, f"10{i}"]), T0)
            for i in range(1, n_reps + 1)
        ],
    )
    await con.executemany(
        "INSERT INTO companies (id, title, responsible_id, created_at, modified_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        [(i, f"Company {i}", ref(n_reps), T0, stamp()) for i in range(1, n_companies + 1)],
    )
    await con.executemany(
        "INSERT INTO contacts (id, name, company_id, responsible_id, created_at, modified_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (i, f"Contact {i}", ref(n_companies), ref(n_reps), T0, stamp())
            for i in range(1, n_contacts + 1)
        ],
    )

    def open_or_closed() -> tuple[object, ...]:
        semantic = rng.choice(["process", "process", "success", "failure"])
        return semantic, ref(n_contacts), ref(n_companies), ref(n_reps), T0, stamp()

    await con.executemany(
        "INSERT INTO leads (id, title, status, status_semantic, source, is_return_customer,"
        " contact_id, company_id, responsible_id, escalation_count, created_at, modified_at)"
        " VALUES ($1, $2, 'x', $3, 'web', false, $4, $5, $6, 0, $7, $8)",
        [(i, f"Lead {i}", *open_or_closed()) for i in range(1, n_leads + 1)],
    )
    await con.executemany(
        "INSERT INTO deals (id, title, pipeline_id, stage_id, stage_semantic, currency,"
        " is_return_customer, is_repeated_approach, origin_repeat, contact_id, company_id,"
        " responsible_id, created_at, modified_at)"
        " VALUES ($1, $2, 1, 1, $3, 'EUR', false, false, false, $4, $5, $6, $7, $8)",
        [(i, f"Deal {i}", *open_or_closed()) for i in range(1, rng.randint(0, 10) + 1)],
    )
    owners = {"contact": n_contacts, "company": n_companies, "lead": n_leads}
    comms = []
    # Now and then more holders of one number than the lookup reads.
    crowded = rng.random() < 0.2
    for _ in range(MAX_HOLDERS + 5 if crowded else rng.randint(0, 25)):
        kind = rng.choice(["contact", "company", "lead"])
        number = NUMBERS[0] if crowded else rng.choice(NUMBERS[:4])
        phone = rng.random() < 5 / 6
        comms.append(
            ("phone" if phone else "email", number, kind, rng.randint(1, owners[kind] + 1), T0)
        )
    await con.executemany(
        "INSERT INTO communications (kind, raw_value, value, owner_type, owner_id, created_at)"
        " VALUES ($1, 'raw', $2, $3, $4, $5)",
        comms,
    )


@pytest.mark.parametrize("backend", ["postgres"])
async def test_the_pg_statements_answer_exactly_as_caller_sql(
    conn: asyncpg.Connection, backend: str
) -> None:
    reference = caller_sql(sqlite=False).replace(":e164", "$1::text")
    one, batch = one_sql(), batch_sql()
    rng = random.Random(18)
    answered = 0
    for _ in range(300):
        await _fill(conn, rng)
        rows = {row[0]: tuple(row)[1:] for row in await conn.fetch(batch, NUMBERS)}
        for k, number in enumerate(NUMBERS, 1):
            expected = tuple(await conn.fetchrow(reference, number))
            assert tuple(await conn.fetchrow(one, number)) == expected, number
            assert rows[k] == expected, number
            answered += expected[0] is not None or expected[2] is not None
    assert answered > 400  # most CRMs had someone on the numbers
