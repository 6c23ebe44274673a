"""The intake bench's server CPU is that of the PostgreSQL server it runs on, alone: another
cluster on the machine (a test's own, another bench's) is not counted."""

from __future__ import annotations

import asyncpg

from benchmarks.intake import _postgres_cpu, _postmaster
from tests.servers import PostgresServer

from .conftest import PG_ADMIN_DSN


async def test_server_cpu_counts_the_bench_servers_processes_and_no_other_clusters(
    own_postgres: PostgresServer,
) -> None:
    bench, other = await _postmaster(PG_ADMIN_DSN), await _postmaster(own_postgres.url())
    assert bench is not None and other is not None and bench != other
    bench_before, other_before = _postgres_cpu(bench), _postgres_cpu(other)
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.fetchval("SELECT count(*) FROM generate_series(1, 5000000)")
        bench_spent = _postgres_cpu(bench) - bench_before  # the backend still lives
    finally:
        await conn.close()
    assert bench_spent >= 0.2
    assert _postgres_cpu(other) - other_before < bench_spent / 2  # idle but for its own chores
    assert _postgres_cpu(None) == 0.0  # a server on another machine
