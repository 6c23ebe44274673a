"""Fixtures of the chaos tests: servers of their own (never the shared ones), a database per
scenario, and the leadbot processes, all removed at the end whatever the outcome."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from crm.db import Database
from tests.chaos.harness import Fleet
from tests.chaos.servers import PgCluster, RedisServer, pg_bin


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL cluster for the module's scenarios (they run one after another)."""
    try:
        pg_bin()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


_names = itertools.count(1)


@pytest.fixture
async def pg_db(pg_cluster: PgCluster) -> AsyncIterator[tuple[str, Database]]:
    """A fresh database in the cluster: its URL, and a connection pool to audit it with."""
    if not pg_cluster.running():  # an earlier scenario failed while it was stopped
        await asyncio.to_thread(pg_cluster.start)
    name = f"chaos_{next(_names)}"
    await asyncio.to_thread(pg_cluster.create_database, name)
    url = pg_cluster.url(name)
    db = Database(url, pool_size=2)
    yield url, db
    await db.dispose()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    logs = tmp_path / "logs"
    logs.mkdir()
    group = Fleet(logs)
    try:
        yield group
    finally:
        await group.close()
