"""`leadbot backup` / `leadbot restore` as an operator runs them: a backup taken while the
service is flooded restores to a service that has every lead acknowledged before the backup
started; PostgreSQL through pg_dump / pg_restore; a running service or a filled database is
never overwritten by accident."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from crm.config import CrmConfig
from crm.db import Database
from crm.facade import Crm
from crm.models import InboundEventLog
from crm.schema import upgrade
from tests.conftest import (
    leadbot_run,
    make_event,
    open_db,
    serve_process,
    table_counts,
    unanalyzed_tables,
)
from tests.servers import end_process


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}
    config = home / "leadbot.toml"
    if not config.exists():
        home.mkdir(parents=True, exist_ok=True)
        config.write_text(
            '[http]\nport = 0\n[[forms]]\nkey = "contact"\nrate_limit_per_minute = 100000\n'
        )
    env["LEADBOT_CONFIG"] = str(config)
    env.update(extra)
    return env


async def _events(url: str, ids: set[str]) -> set[str]:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            rows = await conn.scalars(
                select(InboundEventLog.external_id).where(InboundEventLog.channel == "webform")
            )
            return {r for r in rows if r in ids}
    finally:
        await db.dispose()


@pytest.mark.timeout(300)
async def test_a_backup_under_load_restores_every_acknowledged_lead(tmp_path: Path) -> None:
    live, restored = tmp_path / "live", tmp_path / "restored"
    env = _env(live)
    assert (await leadbot_run("db", "upgrade", env=env))[0] == 0
    proc, port = await serve_process(env)
    acked: list[tuple[float, str]] = []  # when the 202 came, the event's id
    stop, enough = asyncio.Event(), asyncio.Event()

    async def flood(worker: int) -> None:
        url = f"http://127.0.0.1:{port}/forms/contact"
        async with aiohttp.ClientSession() as http:
            n = 0
            while not stop.is_set():
                sid = f"w{worker}-{n:06d}-{uuid.uuid4().hex[:6]}"
                body = {"email": f"{sid}@example.de", "name": f"Kunde {sid}", "submission_id": sid}
                async with http.post(url, json=body) as r:
                    if r.status == 202:
                        acked.append((time.monotonic(), f"contact:{sid}"))
                        if len(acked) >= 400:
                            enough.set()
                n += 1

    backup_file = tmp_path / "leadbot-backup.tar.gz"
    try:
        floods = [asyncio.create_task(flood(k)) for k in range(8)]
        await asyncio.wait_for(enough.wait(), 60)
        started = time.monotonic()
        code, out, err = await leadbot_run("backup", str(backup_file), env=env, timeout=120)
        assert code == 0, err
        assert "journal file(s)" in out
        await asyncio.sleep(0.3)  # the flood goes on after the backup
        # Restoring over the running service is refused.
        code, _, err = await leadbot_run("restore", str(backup_file), "--force", env=env)
        assert code == 2 and "stop it first" in err
    finally:
        stop.set()
        await asyncio.gather(*floods, return_exceptions=True)
        await end_process(proc)
    before = {event for at, event in acked if at < started}
    assert len(before) >= 400

    env2 = _env(restored)
    code, out, err = await leadbot_run("restore", str(backup_file), env=env2)
    assert code == 0, err
    proc, _ = await serve_process(env2)  # replays what the journal held at the backup
    try:
        url = f"sqlite+aiosqlite:///{restored / 'leadbot.db'}"
        found: set[str] = set()
        async with asyncio.timeout(60):
            while found != before:
                found = await _events(url, before)
                await asyncio.sleep(0.2)
    finally:
        await end_process(proc)
    # Restoring again over what is now a filled database needs --force.
    code, _, err = await leadbot_run("restore", str(backup_file), env=env2)
    assert code == 2 and "--force" in err


async def _populated(url: str, n: int) -> None:
    db = Database(url)
    try:
        await upgrade(db)
        crm = Crm(db, CrmConfig())
        await crm.prepare()
        await crm.intake.process_many(
            [make_event(phones=(f"+49 30 {4000000 + i}",)) for i in range(n)]
        )
        await crm.tokens.create("kept")
    finally:
        await db.dispose()


async def test_postgres_backup_restores_into_another_database(
    tmp_path: Path, pg_url: str, empty_postgres: str
) -> None:
    await (await open_db("postgres", tmp_path, pg_url)).dispose()  # emptied
    await _populated(pg_url, 150)
    source_counts = await table_counts(pg_url)
    assert source_counts["leads"] == 150
    backup_file = tmp_path / "pg.tar.gz"
    env = _env(tmp_path / "a", LEADBOT_DATABASE__URL=pg_url)
    code, _, err = await leadbot_run("backup", str(backup_file), env=env, timeout=120)
    assert code == 0, err

    env2 = _env(tmp_path / "b", LEADBOT_DATABASE__URL=empty_postgres)
    code, _, err = await leadbot_run("restore", str(backup_file), env=env2, timeout=120)
    assert code == 0, err
    assert await table_counts(empty_postgres) == source_counts
    assert await unanalyzed_tables(empty_postgres) == []  # a dump carries no statistics
    # Now it holds data: replaced only with --force.
    code, _, err = await leadbot_run("restore", str(backup_file), env=env2, timeout=120)
    assert code == 2 and "already holds data" in err
    code, _, err = await leadbot_run("restore", str(backup_file), "--force", env=env2, timeout=120)
    assert code == 0, err
    assert await table_counts(empty_postgres) == source_counts

    # A backup of one kind of database is not restored into the other.
    code, _, err = await leadbot_run("restore", str(backup_file), env=_env(tmp_path / "c"))
    assert code == 2 and "db copy" in err
