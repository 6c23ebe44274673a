"""`leadbot ingest FILE`: the summary and exit code, alone and on a shared Redis queue that
other workers take events from."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from crm.facade import Crm
from crm.models import InboundEventLog
from crm.queue.wire import encode_item, entry_items
from matching.event import InboundEvent
from tests.conftest import REDIS_URL, leadbot_process, leadbot_run, make_event


@pytest.fixture
async def stream() -> AsyncIterator[tuple[Redis, str]]:
    redis = Redis.from_url(REDIS_URL)
    name = f"test:ingest:{uuid.uuid4().hex[:8]}"
    yield redis, name
    await redis.delete(name, f"{name}:dead", f"{name}:failures")
    await redis.aclose()


def _env(crm: Crm, stream: str | None = None, claim_idle_ms: int = 1500) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LEADBOT_CONFIG", None)
    env["LEADBOT_DATABASE__URL"] = crm.db.url.render_as_string(hide_password=False)
    if stream is not None:
        env.update(
            LEADBOT_REDIS__URL=REDIS_URL,
            LEADBOT_REDIS__STREAM=stream,
            LEADBOT_REDIS__GROUP="g",
            LEADBOT_REDIS__CLAIM_IDLE_MS=str(claim_idle_ms),
        )
    return env


def _write(path: Path, events: list[InboundEvent], *extra: str) -> Path:
    lines = [json.dumps(e.to_json()) for e in events] + list(extra)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _summary(out: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split("\t") for line in out.splitlines())}


async def _first_entry(redis: Redis, stream: str, consumer: str) -> asyncio.Task[tuple[Any, Any]]:
    """A task that reads the next entry added to `stream` as `consumer` of group "g" (and
    never acknowledges it), returned once its read is blocked in Redis: the entry is its."""
    # No read timeout: this read blocks until ingest adds an entry (redis-py 8 would give up
    # after its default 5 s on a busy machine).
    reader = Redis.from_url(REDIS_URL, client_name=consumer, socket_timeout=None)

    async def read() -> tuple[Any, Any]:
        try:
            taken = await reader.xreadgroup("g", consumer, {stream: ">"}, count=1, block=0)
        finally:
            await reader.aclose()
        [(_, [(entry_id, fields)])] = taken
        return entry_id, fields

    task = asyncio.create_task(read())
    for _ in range(200):
        clients = await redis.client_list()
        if any(c["name"] == consumer and c["cmd"] == "xreadgroup" for c in clients):
            return task
        await asyncio.sleep(0.05)
    task.cancel()
    raise AssertionError(f"{consumer} never blocked reading {stream}")


async def _logged(crm: Crm) -> int:
    async with crm.db.read() as s:
        return int(await s.scalar(select(func.count()).select_from(InboundEventLog)) or 0)


async def test_summary_counts_each_kind_of_outcome(crm: Crm, tmp_path: Path) -> None:
    await crm.exceptions.add("+49 30 9999999", "our own line")
    earlier = make_event(external_id="ing-earlier", phones=("+49 30 1111111",))
    await crm.intake.process(earlier)
    events = [
        earlier,  # already in the event log
        make_event(external_id="ing-1", phones=("+49 30 2222222",)),  # new lead
        make_event(external_id="ing-2", phones=("+49 30 2222222",)),  # attached to it
        make_event(external_id="ing-3", phones=("+49 30 9999999",)),  # on the exception list
    ]
    path = _write(tmp_path / "events.jsonl", events, "{not json", "")
    code, out, err = await leadbot_run("ingest", str(path), env=_env(crm))
    assert code == 0, err
    got = _summary(out)
    assert {k: got[k] for k in ("done", "new", "attached", "ignored", "duplicate")} == {
        "done": 4,
        "new": 1,
        "attached": 1,
        "ignored": 1,
        "duplicate": 1,
    }
    assert (got["pending"], got["failed"], got["invalid"]) == (0, 0, 1)
    assert got["outcome new_lead"] == 1


async def test_returns_when_another_worker_processed_its_events(
    crm: Crm, tmp_path: Path, stream: tuple[Redis, str]
) -> None:
    """A running `leadbot worker` on the same stream takes most of the file's events: ingest
    learns their outcomes from the event log and returns with all of them counted."""
    _, name = stream
    env = _env(crm, name)
    worker = await leadbot_process("--log-level", "INFO", "worker", env=env)
    try:
        # Wait until the worker consumes: it is then blocked reading the stream, and is
        # handed the first entries ingest adds.
        warm = _write(tmp_path / "warm.jsonl", [make_event(external_id="ing-warm")])
        code, _, err = await leadbot_run("ingest", str(warm), env=env)
        assert code == 0, err
        events = [
            make_event(external_id=f"ing-w{i}", phones=(f"+49 30 3{i:06d}",)) for i in range(40)
        ]
        path = _write(tmp_path / "events.jsonl", events)
        code, out, err = await leadbot_run("ingest", str(path), env=env, timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, worker_err = await asyncio.wait_for(worker.communicate(), 30)
    assert code == 0, err
    got = _summary(out)
    assert (got["done"], got["new"], got["pending"], got["failed"]) == (40, 40, 0, 0)
    # The other worker did take some of them (else this test shows nothing).
    assert "call:ing-w" in worker_err.decode()
    assert await _logged(crm) == 41


async def test_events_still_pending_at_the_timeout_are_reported(
    crm: Crm, tmp_path: Path, stream: tuple[Redis, str]
) -> None:
    """A consumer that took an event and never finishes it: ingest stops waiting at its
    timeout, says how many are pending, and exits non-zero."""
    redis, name = stream
    await redis.xgroup_create(name, "g", id="0", mkstream=True)
    # Blocked before ingest adds anything: it is handed the first entry and sits on it.
    stuck = await _first_entry(redis, name, f"stuck-{name}")
    events = [make_event(external_id=f"ing-p{i}", phones=(f"+49 30 4{i:06d}",)) for i in range(5)]
    path = _write(tmp_path / "events.jsonl", events)
    env = _env(crm, name, claim_idle_ms=600_000)  # never reclaimed from the stuck consumer
    try:
        code, out, err = await leadbot_run("ingest", "--timeout", "2", str(path), env=env)
        assert (await asyncio.wait_for(stuck, 10))[0]  # the stuck consumer holds an entry
    finally:
        stuck.cancel()
    assert code == 1
    got = _summary(out)
    assert got["pending"] >= 1
    assert got["done"] + got["pending"] == 5
    assert "still pending after 2 s" in err


async def test_an_event_another_worker_gave_up_on_is_failed_at_once(
    crm: Crm, tmp_path: Path, stream: tuple[Redis, str]
) -> None:
    """A worker that takes an entry and gives up on it (a dead letter, as RedisStreamQueue
    writes one): ingest counts the event failed and returns without waiting for its timeout."""
    redis, name = stream
    await redis.xgroup_create(name, "g", id="0", mkstream=True)
    # A dead letter from before the run: not this run's business.
    await redis.xadd(f"{name}:dead", {"data": b"{}", "reason": "old", "failures": 5})

    first = await _first_entry(redis, name, f"giving-up-{name}")

    async def give_up() -> int:
        entry_id, fields = await first
        items, _ = entry_items(fields)
        async with redis.pipeline(transaction=True) as pipe:
            for item in items:
                pipe.xadd(
                    f"{name}:dead",
                    {"from": entry_id, "data": encode_item(item), "reason": "x", "failures": 5},
                )
            pipe.xack(name, "g", entry_id)
            pipe.xdel(name, entry_id)
            await pipe.execute()
        return len(items)

    worker = asyncio.create_task(give_up())
    events = [make_event(external_id=f"ing-f{i}", phones=(f"+49 30 6{i:06d}",)) for i in range(3)]
    path = _write(tmp_path / "events.jsonl", events)
    env = _env(crm, name, claim_idle_ms=600_000)
    started = asyncio.get_running_loop().time()
    try:
        code, out, err = await leadbot_run("ingest", "--timeout", "120", str(path), env=env)
        given_up = await asyncio.wait_for(worker, 10)
    finally:
        worker.cancel()
        first.cancel()
    assert asyncio.get_running_loop().time() - started < 60  # not the timeout
    assert code == 1
    got = _summary(out)
    assert (got["failed"], got["done"], got["pending"]) == (given_up, 3 - given_up, 0)
    assert "given up on" in err


async def test_a_line_that_is_not_an_event_is_named_with_why(crm: Crm, tmp_path: Path) -> None:
    # The warning is all the operator has to fix the file by: a bare "'occurred_at'" (the
    # KeyError's text) or a TypeError about list indices says nothing.
    path = tmp_path / "events.jsonl"
    path.write_text('{"channel": "call", "external_id": "x1"}\n[1, 2]\n{not json\n')
    code, out, err = await leadbot_run("ingest", str(path), env=_env(crm))
    assert code == 0, err
    assert _summary(out)["invalid"] == 3
    assert f"{path}:1: skipped: missing field 'occurred_at'" in err
    assert f"{path}:2: skipped: not a JSON object" in err
    assert f"{path}:3: skipped: not JSON: Expecting property name" in err
