"""Several `leadbot worker` processes sharing a Redis Streams queue, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from crm.db import Database
from crm.facade import Crm
from crm.models import Activity, ActivityBinding, InboundEventLog, Lead
from crm.queue import MAX_BATCH, RedisStreamQueue
from crm.services.listing import ListFilter
from tests.conftest import REDIS_URL, leadbot_process, make_event


@pytest.fixture
async def stream() -> AsyncIterator[tuple[Redis, str]]:
    redis = Redis.from_url(REDIS_URL)
    name = f"test:events:{uuid.uuid4().hex[:8]}"
    yield redis, name
    await redis.delete(name)
    await redis.aclose()


def _env(db: Database, stream: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LEADBOT_DATABASE__URL=db.url.render_as_string(hide_password=False),
        LEADBOT_REDIS__URL=REDIS_URL,
        LEADBOT_REDIS__STREAM=stream,
        LEADBOT_REDIS__GROUP="g",
        LEADBOT_REDIS__CLAIM_IDLE_MS="1500",
    )
    env.pop("LEADBOT_CONFIG", None)
    return env


async def _worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await leadbot_process(
        "--log-level", "WARNING", "worker", env=env, stdout=asyncio.subprocess.DEVNULL
    )


async def _count(db: Database, model: Any, *where: Any) -> int:
    async with db.transaction() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _wait_events(db: Database, n: int, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await _count(db, InboundEventLog) < n:
        if loop.time() > deadline:
            raise AssertionError(f"only {await _count(db, InboundEventLog)} of {n} processed")
        await asyncio.sleep(0.1)


async def _stop(procs: list[asyncio.subprocess.Process]) -> None:
    for p in procs:
        if p.returncode is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        await asyncio.wait_for(p.wait(), 30)


async def test_fifty_simultaneous_events_of_one_new_phone_make_one_lead(
    crm: Crm, stream: tuple[Redis, str]
) -> None:
    redis, name = stream
    queue = RedisStreamQueue(redis, stream=name, group="g")
    await queue.ensure_group()
    for i in range(50):
        await queue.put(
            make_event(
                external_id=f"burst-{i}",
                phones=("+49 30 7654321",),
                meta={"call_id": f"burst-{i}", "stage": "ended"},
            )
        )
    env = _env(crm.db, name)
    procs = [await _worker(env) for _ in range(4)]
    try:
        await _wait_events(crm.db, 50)
    finally:
        await _stop(procs)
    assert await _count(crm.db, Lead) == 1
    lead_id = (await crm.leads.page(ListFilter()))[0][0].id
    assert (
        await _count(
            crm.db,
            ActivityBinding,
            ActivityBinding.owner_type == "lead",
            ActivityBinding.owner_id == lead_id,
        )
        == 50
    )
    assert await _count(crm.db, Activity) == 50


async def test_killed_worker_loses_nothing_and_doubles_nothing(
    crm: Crm, stream: tuple[Redis, str]
) -> None:
    redis, name = stream
    queue = RedisStreamQueue(redis, stream=name, group="g")
    await queue.ensure_group()
    # Ten batches' worth (a worker reads up to MAX_BATCH at a time), so the kill below lands
    # while most of the stream is still to do.
    total = 10 * MAX_BATCH
    await asyncio.gather(
        *(
            queue.put(make_event(external_id=f"k-{i}", phones=(f"+49 30 5{i:06d}",)))
            for i in range(total)
        )
    )
    env = _env(crm.db, name)
    first = await _worker(env)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while await _count(crm.db, InboundEventLog) < 1:
        assert loop.time() < deadline, "the first worker processed nothing"
        await asyncio.sleep(0.05)
    first.kill()  # SIGKILL mid-stream: its read but unacknowledged messages stay pending
    await first.wait()
    assert await _count(crm.db, InboundEventLog) < total
    second = await _worker(env)
    try:
        await _wait_events(crm.db, total)
        # Everything acknowledged in the end (reclaimed from the dead consumer).
        for _ in range(100):
            pending = await redis.xpending(name, "g")
            if pending["pending"] == 0:
                break
            await asyncio.sleep(0.1)
        assert pending["pending"] == 0
    finally:
        await _stop([second])
    assert await _count(crm.db, Lead) == total
    assert await _count(crm.db, Activity) == total
