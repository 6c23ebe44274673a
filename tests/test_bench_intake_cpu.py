"""The intake bench's server CPU is that of the PostgreSQL backends serving its own
connections: another session on the same server is not counted, and a backend's time is kept
when its connection closes."""

from __future__ import annotations

import os

import asyncpg
from sqlalchemy import text

from benchmarks.intake import BackendCpu, _postgres_stat, _postmaster, checkpoint
from crm.db import Database

from .conftest import PG_ADMIN_DSN

HEAVY = "SELECT count(*) FROM generate_series(1, {})"


def _cpu(pid: int) -> float:
    fields = _postgres_stat(pid)
    assert fields is not None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_server_cpu_is_its_own_backends_and_kept_when_they_close() -> None:
    postmaster = await _postmaster(PG_ADMIN_DSN)
    assert postmaster is not None
    db = Database(PG_ADMIN_DSN.replace("postgresql://", "postgresql+asyncpg://"), pool_size=2)
    spent = BackendCpu(db, postmaster)
    other = await asyncpg.connect(PG_ADMIN_DSN)  # another session on the same server
    try:
        async with db.transaction() as s:
            await s.execute(text(HEAVY.format(3_000_000)))
        await db.dispose()  # its backend ends: what it spent was read as it closed
        await other.fetchval(HEAVY.format(9_000_000))
        others = _cpu(other.get_server_pid())
        ours = spent.total()
    finally:
        await other.close()
        await db.dispose()
    assert ours >= 0.1
    assert ours < others / 2  # the other session's three times as much is not in it
    assert BackendCpu(db, None).total() == 0.0  # a server on another machine


async def test_checkpoint_before_measuring_writes_out_the_seed() -> None:
    """The seed's dirty buffers are written out before the runs (a checkpoint is taken),
    not left to the backends of the first run measured."""
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        redo = "SELECT redo_lsn FROM pg_control_checkpoint()"
        before = await conn.fetchval(redo)
        await conn.execute("CREATE TEMP TABLE seeded AS SELECT generate_series(1, 10) AS n")
        await checkpoint(PG_ADMIN_DSN.replace("postgresql://", "postgresql+asyncpg://"))
        assert await conn.fetchval(redo) > before
    finally:
        await conn.close()
