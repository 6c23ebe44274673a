"""Shared fixtures: a real database per test on SQLite and on PostgreSQL, and a CRM on it.

PostgreSQL: each run creates its own database (and drops it at the end), migrated once with
Alembic; every test starts from empty tables. SQLite: a fresh file per test.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select, text

from crm.config import CrmConfig
from crm.db import Database
from crm.facade import Crm
from crm.models import Base
from crm.schema import head_revision, upgrade_blocking
from crm.transfer import tables as transfer_tables
from matching.event import Channel, InboundEvent

# Servers of a test's own (own_redis, own_postgres) for tests that kill or restart them.
pytest_plugins = ["tests.servers"]

PG_ADMIN_DSN = os.environ.get("LEADBOT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
# Each pytest-xdist worker (gw0, gw1, …) gets a Redis database of its own: streams and the
# change feed's channel keep their default names in some tests.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
REDIS_URL = os.environ.get("LEADBOT_TEST_REDIS", f"redis://127.0.0.1:6379/{15 - _WORKER % 8}")


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run blocking set-up that starts its own event loop, even when a test loop is running."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, migrated with Alembic."""
    name = f"leadbot_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _in_thread(lambda: asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"')))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    _in_thread(lambda: upgrade_blocking(url))
    yield url
    _in_thread(lambda: asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))


@pytest.fixture
async def empty_postgres() -> AsyncIterator[str]:
    """The URL of a new PostgreSQL database with nothing in it (not migrated)."""
    name = f"leadbot_empty_{uuid.uuid4().hex[:8]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def table_counts(url: str) -> dict[str, int]:
    """Rows per table of the database at `url` (the tables `db copy` carries: the board's
    counters are the target's own, kept by its triggers)."""
    db = Database(url)
    try:
        async with db.read_engine.connect() as conn:
            return {
                t.name: int(await conn.scalar(select(func.count()).select_from(t)) or 0)
                for t in transfer_tables()
            }
    finally:
        await db.dispose()


async def unanalyzed_tables(url: str) -> list[str]:
    """PostgreSQL tables of the database at `url` that have no statistics gathered yet."""
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            rows = await conn.scalars(
                text("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NULL")
            )
            return sorted(rows)
    finally:
        await db.dispose()


async def _truncate(db: Database) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


async def open_db(backend: str, tmp_path: Path, pg_url: str | None) -> Database:
    if backend == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'leadbot.db'}")
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            # Stamped as migrated (the models are the migrations' schema, tests/crm checks),
            # so a `leadbot serve` on it starts as on a database `db upgrade` made.
            await conn.exec_driver_sql(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"
            )
            await conn.exec_driver_sql(f"INSERT INTO alembic_version VALUES ('{head_revision()}')")
        return db
    assert pg_url is not None
    db = Database(pg_url, pool_size=5)
    await _truncate(db)
    return db


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def db(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Database]:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    database = await open_db(backend, tmp_path, url)
    yield database
    await database.dispose()


def crm_config(**overrides: Any) -> CrmConfig:
    return CrmConfig(**overrides)


@pytest.fixture
async def crm(db: Database) -> Crm:
    service = Crm(db, CrmConfig())
    await service.prepare()
    return service


_counter = iter(range(1, 10**9))


async def leadbot_process(
    *args: str, env: dict[str, str], stdout: int = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    """`leadbot <args>` as a child process, the way an operator starts it."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "leadbot.cli",
        *args,
        env=env,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
async def stream_name() -> AsyncIterator[str]:
    """A Redis stream name of this test's own (the stream is deleted afterwards)."""
    name = f"test:events:{uuid.uuid4().hex[:8]}"
    yield name
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    await redis.delete(name)
    await redis.aclose()


def leadbot_env(db: Database, stream: str) -> dict[str, str]:
    """The environment of a `leadbot` command on the test database and Redis, its queue on
    `stream` (its change feed on `<stream>:changes`)."""
    env = dict(os.environ)
    env.pop("LEADBOT_CONFIG", None)
    env.update(
        LEADBOT_DATABASE__URL=db.url.render_as_string(hide_password=False),
        LEADBOT_REDIS__URL=REDIS_URL,
        LEADBOT_REDIS__STREAM=stream,
    )
    return env


async def worker_process(db: Database, stream: str, group: str = "g") -> asyncio.subprocess.Process:
    """`leadbot worker` on the test database, consuming `stream` of the test Redis (its change
    feed on `<stream>:changes`)."""
    env = leadbot_env(db, stream)
    env["LEADBOT_REDIS__GROUP"] = group
    return await leadbot_process(
        "--log-level", "WARNING", "worker", env=env, stdout=asyncio.subprocess.DEVNULL
    )


_DRAINS: set[asyncio.Task[None]] = set()


async def serve_process(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, int]:
    """`leadbot serve` as a child process, once it listens: the process and its port. Its
    stderr is read on from then on (a full pipe would stop it at its next log line)."""
    proc = await leadbot_process("serve", env=env)
    assert proc.stderr is not None
    stderr, seen = proc.stderr, []
    async with asyncio.timeout(60):
        while True:
            line = (await stderr.readline()).decode()
            assert line, "serve exited early:\n" + "".join(seen)
            seen.append(line)
            found = re.search(r"listening on http://[\d.]+:(\d+)", line)
            if found:
                break

    async def drain() -> None:
        while await stderr.read(65536):
            pass

    task = asyncio.create_task(drain())
    _DRAINS.add(task)
    task.add_done_callback(_DRAINS.discard)
    return proc, int(found.group(1))


async def leadbot_run(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    """`leadbot <args>` run to its end: the exit code, stdout and stderr."""
    proc = await leadbot_process(*args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def make_event(**fields: Any) -> InboundEvent:
    """An incoming event with sensible defaults; pass any InboundEvent field to override."""
    base: dict[str, Any] = {
        "channel": Channel.CALL,
        "external_id": f"ext-{next(_counter)}",
        "occurred_at": datetime.now(UTC),
    }
    base.update(fields)
    return InboundEvent(**base)


def service_settings(db: Database, **sections: Any) -> Any:
    """Settings for a service on the test database, HTTP on a free loopback port."""
    from leadbot.settings import Settings

    sections.setdefault("http", {"host": "127.0.0.1", "port": 0})
    # Tests may run several services on one database: a queue journal each (never the
    # default ./leadbot-queue in the working directory).
    if db.is_sqlite and db.url.database:
        sections.setdefault("queue", {"journal_dir": f"{db.url.database}.queue-{next(_counter)}"})
    else:
        sections.setdefault("queue", {"journal_dir": tempfile.mkdtemp(prefix="leadbot-queue-")})
    return Settings(database={"url": db.url.render_as_string(hide_password=False)}, **sections)


@pytest.fixture
async def start_service(db: Database) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Start a real service (HTTP on a free port) with the given settings sections and
    component factories; `service.port` is where it listens. Stopped after the test."""
    from leadbot.app import Service

    started: list[Service] = []

    async def _start(components: list[Any] | None = None, **sections: Any) -> Service:
        service = Service(service_settings(db, **sections), components=components or [])
        await service.start()
        started.append(service)
        return service

    yield _start
    for service in reversed(started):
        await service.stop()
