"""Routine faults under a steady stream of call webhooks: every event Leadbot acknowledged is
processed once, none lost, none doubled.

Each scenario starts `leadbot serve` (and workers) as child processes on a PostgreSQL cluster
and a redis-server of its own, sends 50 signed webhooks a second the way a PBX does (a 503 or
a refused connection is tried again), breaks something a few seconds in, and then audits the
database. The figures go to stdout and to tests/chaos/last-run.jsonl ($LEADBOT_CHAOS_RESULTS);
docs/operations/reliability.md shows them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from crm.db import Database
from tests.chaos.harness import (
    Fleet,
    Leadbot,
    check_promise,
    leadbot_env,
    migrate,
    run_scenario,
)
from tests.chaos.servers import PgCluster, RedisServer, free_port

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

# A dead consumer's entries are taken over after this long (redis.claim_idle_ms; 30 s by
# default, which would only make the scenarios longer).
CLAIM_IDLE_MS = "3000"
PG_DOWN = 10.0
REDIS_DOWN = 8.0


async def _redis_fleet(
    fleet: Fleet, url: str, redis: RedisServer, workers: int = 2
) -> tuple[int, dict[str, str], Leadbot, list[Leadbot]]:
    """serve and `workers` worker processes on one database and one Redis stream."""
    port = free_port()
    env = leadbot_env(
        database__url=url,
        redis__url=redis.url,
        redis__claim_idle_ms=CLAIM_IDLE_MS,
        http__port=str(port),
    )
    await migrate(env)
    serve = await fleet.serve("serve", port, env)
    members = [await fleet.run(f"worker-{k}", "worker", env=env) for k in range(1, workers + 1)]
    return port, env, serve, members


async def _postgres_down(
    name: str, cluster: PgCluster, port: int, db: Database, fleet: Fleet
) -> None:
    """PostgreSQL stopped (fast shutdown) 3 s into the stream, started again PG_DOWN later."""

    async def outage() -> None:
        await asyncio.to_thread(cluster.stop)
        try:
            await asyncio.sleep(PG_DOWN)
        finally:
            await asyncio.to_thread(cluster.start)

    figures = await run_scenario(
        name, port=port, db=db, fault=outage, fault_at=3, seconds=PG_DOWN + 8
    )
    check_promise(figures, fleet)


async def test_a_worker_killed_mid_stream(
    pg_db: tuple[str, Database], redis_server: RedisServer, fleet: Fleet
) -> None:
    url, db = pg_db
    port, _, _, workers = await _redis_fleet(fleet, url, redis_server)
    figures = await run_scenario(
        "a-kill-worker", port=port, db=db, fault=workers[0].kill, fault_at=3, seconds=10
    )
    check_promise(figures, fleet)


async def test_b_redis_restarted_mid_stream(
    pg_db: tuple[str, Database], redis_server: RedisServer, fleet: Fleet
) -> None:
    url, db = pg_db
    port, _, _, _ = await _redis_fleet(fleet, url, redis_server)

    async def restart() -> None:
        await asyncio.to_thread(redis_server.kill)
        await asyncio.sleep(REDIS_DOWN)
        await asyncio.to_thread(redis_server.start)

    figures = await run_scenario(
        "b-restart-redis", port=port, db=db, fault=restart, fault_at=2, seconds=16
    )
    check_promise(figures, fleet)


async def test_c_postgres_down_10s_with_redis_and_workers(
    pg_cluster: PgCluster, pg_db: tuple[str, Database], redis_server: RedisServer, fleet: Fleet
) -> None:
    url, db = pg_db
    port, _, _, _ = await _redis_fleet(fleet, url, redis_server)
    await _postgres_down("c-postgres-down-redis", pg_cluster, port, db, fleet)


async def test_d_postgres_down_10s_with_the_journaled_in_process_queue(
    pg_cluster: PgCluster, pg_db: tuple[str, Database], fleet: Fleet, tmp_path: Path
) -> None:
    url, db = pg_db
    port = free_port()
    env = leadbot_env(
        database__url=url, queue__journal_dir=str(tmp_path / "journal"), http__port=str(port)
    )
    await migrate(env)
    await fleet.serve("serve", port, env)
    await _postgres_down("d-postgres-down-journal", pg_cluster, port, db, fleet)


async def test_e_serve_killed_and_restarted_with_redis(
    pg_db: tuple[str, Database], redis_server: RedisServer, fleet: Fleet
) -> None:
    url, db = pg_db
    port, env, serve, _ = await _redis_fleet(fleet, url, redis_server)

    async def crash() -> None:
        await serve.kill()
        await fleet.serve("serve-again", port, env)

    figures = await run_scenario(
        "e-kill-serve-redis", port=port, db=db, fault=crash, fault_at=3, seconds=10
    )
    check_promise(figures, fleet)


async def test_e_serve_killed_and_restarted_with_the_journal_on_sqlite(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The restarted serve hands its journal's events to intake again."""
    port = free_port()
    db_file = tmp_path / "leadbot.db"
    env = leadbot_env(
        database__url=f"sqlite+aiosqlite:///{db_file}",
        queue__journal_dir=str(tmp_path / "journal"),
        http__port=str(port),
    )
    await migrate(env)
    serve = await fleet.serve("serve", port, env)

    async def crash() -> None:
        await serve.kill()
        await fleet.serve("serve-again", port, env)

    db = Database(f"sqlite+aiosqlite:///{db_file}")
    try:
        figures = await run_scenario(
            "e-kill-serve-journal-sqlite", port=port, db=db, fault=crash, fault_at=3, seconds=10
        )
    finally:
        await db.dispose()
    check_promise(figures, fleet)
