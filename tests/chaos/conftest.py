"""Fixtures of the chaos tests: servers of their own (never the shared ones), a database per
scenario, and the leadbot processes, all removed at the end whatever the outcome."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from crm.db import Database
from tests.chaos.harness import Fleet
from tests.servers import PostgresServer, postgres_server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pg_cluster() -> AsyncIterator[PostgresServer]:
    """One PostgreSQL cluster for the module's scenarios (they run one after another)."""
    async with postgres_server() as server:
        yield server


_names = itertools.count(1)


@pytest.fixture
async def pg_db(pg_cluster: PostgresServer) -> AsyncIterator[tuple[str, Database]]:
    """A fresh database in the cluster: its URL, and a connection pool to audit it with."""
    if not pg_cluster.running():  # an earlier scenario failed while it was stopped
        await pg_cluster.start()
    name = f"chaos_{next(_names)}"
    await pg_cluster.create_database(name)
    url = pg_cluster.url(name)
    db = Database(url, pool_size=2)
    yield url, db
    await db.dispose()


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    logs = tmp_path / "logs"
    logs.mkdir()
    group = Fleet(logs)
    try:
        yield group
    finally:
        await group.close()
