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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from crm.db import Database
from tests.chaos.harness import (
    Fault,
    Fleet,
    Leadbot,
    check_promise,
    leadbot_env,
    migrate,
    run_scenario,
)
from tests.servers import OwnRedis, PostgresServer, RedisServer, free_port

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

# A dead consumer's entries are taken over after this long (redis.claim_idle_ms; 30 s by
# default, which would only make the scenarios longer).
CLAIM_IDLE_MS = "3000"
PG_DOWN = 10.0
REDIS_DOWN = 8.0


@dataclass
class RedisFleet:
    """serve and two worker processes on one database and one Redis stream."""

    port: int
    env: dict[str, str]
    serve: Leadbot
    workers: list[Leadbot]
    db: Database
    redis: RedisServer


@pytest.fixture
async def redis_fleet(
    pg_db: tuple[str, Database], own_redis: OwnRedis, fleet: Fleet
) -> AsyncIterator[RedisFleet]:
    url, db = pg_db
    redis = await own_redis()
    port = free_port()
    env = leadbot_env(
        database__url=url,
        redis__url=redis.url,
        redis__claim_idle_ms=CLAIM_IDLE_MS,
        http__port=str(port),
    )
    await migrate(env)
    serve = await fleet.serve("serve", port, env)
    workers = [await fleet.run(f"worker-{k}", "worker", env=env) for k in (1, 2)]
    yield RedisFleet(port, env, serve, workers, db, redis)


def outage(
    down: Callable[[], Awaitable[None]], up: Callable[[], Awaitable[None]], seconds: float
) -> Fault:
    """A fault: `down()`, `seconds` later `up()` (also when the wait is cut short)."""

    async def fault() -> None:
        await down()
        try:
            await asyncio.sleep(seconds)
        finally:
            await up()

    return fault


def restart_serve(fleet: Fleet, serve: Leadbot, port: int, env: dict[str, str]) -> Fault:
    """A fault: serve killed (SIGKILL) and started again on the same port."""

    async def crash() -> None:
        await serve.kill()
        await fleet.serve("serve-again", port, env)

    return crash


async def _postgres_down(
    name: str, cluster: PostgresServer, port: int, db: Database, fleet: Fleet
) -> None:
    """PostgreSQL stopped (fast shutdown) 3 s into the stream, started again PG_DOWN later."""
    figures = await run_scenario(
        name,
        port=port,
        db=db,
        fault=outage(cluster.stop, cluster.start, PG_DOWN),
        fault_at=3,
        seconds=PG_DOWN + 8,
    )
    check_promise(figures, fleet)


async def test_a_worker_killed_mid_stream(redis_fleet: RedisFleet, fleet: Fleet) -> None:
    r = redis_fleet
    figures = await run_scenario(
        "a-kill-worker", port=r.port, db=r.db, fault=r.workers[0].kill, fault_at=3, seconds=10
    )
    check_promise(figures, fleet)


async def test_b_redis_restarted_mid_stream(redis_fleet: RedisFleet, fleet: Fleet) -> None:
    r = redis_fleet
    restart = outage(r.redis.kill, r.redis.start, REDIS_DOWN)
    figures = await run_scenario(
        "b-restart-redis", port=r.port, db=r.db, fault=restart, fault_at=2, seconds=16
    )
    check_promise(figures, fleet)


async def test_c_postgres_down_10s_with_redis_and_workers(
    pg_cluster: PostgresServer, redis_fleet: RedisFleet, fleet: Fleet
) -> None:
    r = redis_fleet
    await _postgres_down("c-postgres-down-redis", pg_cluster, r.port, r.db, fleet)


async def test_d_postgres_down_10s_with_the_journaled_in_process_queue(
    pg_cluster: PostgresServer, pg_db: tuple[str, Database], fleet: Fleet, tmp_path: Path
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
    redis_fleet: RedisFleet, fleet: Fleet
) -> None:
    r = redis_fleet
    crash = restart_serve(fleet, r.serve, r.port, r.env)
    figures = await run_scenario(
        "e-kill-serve-redis", port=r.port, db=r.db, fault=crash, fault_at=3, seconds=10
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
    crash = restart_serve(fleet, serve, port, env)
    db = Database(f"sqlite+aiosqlite:///{db_file}")
    try:
        figures = await run_scenario(
            "e-kill-serve-journal-sqlite", port=port, db=db, fault=crash, fault_at=3, seconds=10
        )
    finally:
        await db.dispose()
    check_promise(figures, fleet)
