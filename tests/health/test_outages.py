"""A Redis of the test's own killed under a running service: the consumer keeps going once it
is back, webhooks meanwhile get 503 + Retry-After (one log line when it starts, one when it
ends), /readyz says which check fails; and the AOF warning at start."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from channels.phone.component import phone_component
from channels.phone.signatures import sign_generic
from crm.db import Database
from leadbot.app import Service
from tests.channels.service_helpers import processed
from tests.conftest import make_event, service_settings
from tests.servers import OwnRedis, RedisServer

SECRET = "whsec-outage-test"


def redis_settings(server: RedisServer) -> dict[str, Any]:
    return {"url": server.url, "stream": f"test:{uuid.uuid4().hex}", "group": "g"}


async def call_hook(http: aiohttp.ClientSession, port: int, call_id: str) -> tuple[int, Any, Any]:
    body = json.dumps(
        {
            "event": "call.missed",
            "call_id": call_id,
            "direction": "incoming",
            "from": "+49 30 5550100",
            "to": "+4989111222",
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Leadbot-Signature": sign_generic(SECRET, int(time.time()), body),
    }
    async with http.post(f"http://127.0.0.1:{port}/hooks/calls", data=body, headers=headers) as r:
        return r.status, r.headers, await r.json()


async def readyz(http: aiohttp.ClientSession, port: int) -> tuple[int, Any]:
    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
        return r.status, await r.json()


async def test_consumer_keeps_processing_after_redis_is_killed_and_restarted(
    start_service: Any, own_redis: OwnRedis
) -> None:
    server = await own_redis()
    service = await start_service(redis=redis_settings(server))
    first = make_event(phones=("+49 30 1111111",))
    await service.submit(first)
    await processed(service.crm, "call", first.external_id, timeout=30)
    await server.kill()
    await asyncio.sleep(1.5)  # the consumer meets the dead server
    await server.start()
    second = make_event(phones=("+49 30 2222222",))
    for _ in range(100):  # the service's own connection finds the server again
        try:
            await service.submit(second)
            break
        except Exception:
            await asyncio.sleep(0.1)
    await processed(service.crm, "call", second.external_id, timeout=60)
    (consumer,) = [s for s in service.supervisor.states() if s.name == "queue.consumer-1"]
    assert consumer.state == "running"


async def test_webhooks_during_a_redis_outage_get_503_and_the_log_says_it_once(
    start_service: Any, own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = await own_redis()
    service = await start_service(
        components=[phone_component],
        redis=redis_settings(server),
        phone={"webhook_secret": SECRET, "region": "DE"},
    )
    port = service.port
    async with aiohttp.ClientSession() as http:
        status, _, _ = await call_hook(http, port, "before")
        assert status == 202
        assert (await readyz(http, port))[0] == 200
        await server.kill()
        for k in range(20):
            status, headers, body = await call_hook(http, port, f"during-{k}")
            assert status == 503, body
            assert headers["Retry-After"] == "5"
            assert body["error"] == "unavailable" and "queue (redis)" in body["detail"]
        status, ready = await readyz(http, port)
        assert status == 503 and ready["status"] == "unavailable"
        assert ready["checks"]["redis"]["ok"] is False
        assert "Connection" in ready["checks"]["redis"]["error"]
        assert ready["checks"]["database"] == {"ok": True}
        await server.start()
        for _ in range(100):
            status, _, _ = await call_hook(http, port, "after")
            if status == 202:
                break
            await asyncio.sleep(0.1)
        assert status == 202
        await processed(service.crm, "call", "after:final", timeout=60)
        status, ready = await readyz(http, port)
        assert status == 200, ready
    web_records = [r for r in caplog.records if r.name == "leadbot.web"]
    began = [r for r in web_records if "queue (redis) unavailable" in r.getMessage()]
    ended = [r for r in web_records if "queue (redis) available again after" in r.getMessage()]
    assert len(began) == 1 and began[0].levelno == logging.WARNING
    assert len(ended) == 1 and " s (" in ended[0].getMessage()
    assert not [r for r in web_records if r.exc_info or r.levelno >= logging.ERROR]
    # The supervisor's tracebacks: one per failure streak of a task, never one per request.
    supervised = [r for r in caplog.records if r.exc_info and r.name == "crm.supervisor"]
    assert len(supervised) <= len(service.supervisor.states())


async def test_readyz_503_while_a_supervised_task_keeps_failing(start_service: Any) -> None:
    class Flaky:
        """A component whose background task fails at once, every time."""

        def __init__(self, service: Any) -> None:
            self.service = service
            self.stop_event = asyncio.Event()

        def routes(self) -> list[Any]:
            return []

        async def start(self) -> None:
            self.service.spawn("test.flaky", self.run, self.stop_event)

        async def run(self) -> None:
            raise RuntimeError("cannot work")

        async def stop(self) -> None:
            self.stop_event.set()

    service = await start_service(components=[Flaky])
    async with aiohttp.ClientSession() as http:
        status, ready = await readyz(http, service.port)
        assert status == 503 and ready["checks"]["tasks"]["ok"] is False
        flaky = ready["checks"]["tasks"]["tasks"]["test.flaky"]
        assert flaky["state"] == "restarting" and flaky["restarts"] >= 1
        assert flaky["last_error"] == "RuntimeError: cannot work"
        assert ready["checks"]["tasks"]["tasks"]["queue.consumer-1"]["state"] == "running"
        async with http.get(f"http://127.0.0.1:{service.port}/metrics") as r:
            text = await r.text()
        assert 'leadbot_task_up{task="test.flaky"} 0.0' in text
        assert 'leadbot_task_up{task="queue.consumer-1"} 1.0' in text
        assert 'leadbot_task_restarts{task="test.flaky"} 1.0' in text


@pytest.mark.parametrize("journal", [False, True], ids=["in-process", "journaled"])
async def test_readyz_503_when_the_backlog_is_older_than_allowed(
    db: Database, tmp_path: Path, journal: bool
) -> None:
    """A service without consumers (workers=0): what is put waits and ages past the limit."""
    queue = {"journal_dir": str(tmp_path / "journal") if journal else "", "max_backlog_age": 1}
    service = Service(service_settings(db, queue=queue), components=[], workers=0)
    await service.start()
    try:
        await service.submit(make_event(phones=("+49 30 3333333",)))
        async with aiohttp.ClientSession() as http:
            status, ready = await readyz(http, service.port or 0)
            young = ready["checks"]["backlog"]
            assert status == 200 and young["items"] == 1 and young["oldest_age"] < 1
            await asyncio.sleep(1.5)
            status, ready = await readyz(http, service.port or 0)
    finally:
        await service.stop()
    assert status == 503
    check = ready["checks"]["backlog"]
    assert check["ok"] is False and check["items"] == 1 and check["oldest_age"] > 1
    assert check["max_age"] == 1


async def test_aof_off_is_warned_about_at_start(
    start_service: Any, own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    without = await own_redis(appendonly=False)
    with_aof = await own_redis(appendonly=True)
    caplog.set_level(logging.WARNING, logger="leadbot")
    await start_service(redis=redis_settings(with_aof))
    assert not [r for r in caplog.records if "appendonly" in r.getMessage()]
    await start_service(redis=redis_settings(without))
    (line,) = [r for r in caplog.records if "appendonly no" in r.getMessage()]
    assert line.levelno == logging.WARNING and "may be lost if Redis restarts" in line.getMessage()
