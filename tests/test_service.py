"""The service as a whole: health, readiness, metrics, queue → intake, graceful stop."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import aiohttp

from crm.looping import BREATHE_EVERY
from crm.queue import RawInput
from leadbot import heap
from tests.conftest import make_event


async def test_health_ready_and_metrics_over_http(start_service: Any) -> None:
    service = await start_service()
    base = f"http://127.0.0.1:{service.port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with http.get(f"{base}/readyz") as r:
            body = await r.json()
            assert r.status == 200 and body["status"] == "ok"
            checks = body["checks"]
            assert set(checks) == {"database", "tasks", "backlog"}
            assert checks["database"] == {"ok": True}
            consumer = checks["tasks"]["tasks"]["queue.consumer-1"]
            assert consumer["state"] == "running" and consumer["restarts"] == 0
        await service.submit(make_event(phones=("+49 30 1234567",)))
        for _ in range(100):
            if (await service.crm.events.page())[1]:
                break
            await asyncio.sleep(0.02)
        async with http.get(f"{base}/metrics") as r:
            text = await r.text()
            assert 'leadbot_events_received_total{channel="call"} 1.0' in text
            assert 'leadbot_events_processed_total{channel="call",outcome="new_lead"} 1.0' in text
        # Received events are counted as they come and added to the metric when it is read:
        # every read shows all of them, none twice.
        for k in range(2):
            await service.submit(make_event(external_id=f"more-{k}", phones=("+49 30 1234567",)))
        for _ in range(2):
            async with http.get(f"{base}/metrics") as r:
                assert 'leadbot_events_received_total{channel="call"} 3.0' in await r.text()
        async with http.get(f"{base}/no/such/path") as r:
            assert r.status == 404 and (await r.json())["error"] == "not_found"


async def test_stop_finishes_queued_work(start_service: Any) -> None:
    service = await start_service()
    for i in range(20):
        await service.submit(make_event(phones=(f"+49 30 12345{i:02d}",)))
    await service.stop()
    # Everything accepted before the stop was processed, nothing lost.
    from crm.facade import Crm

    crm = Crm(service.db, service.crm.config)
    crm.db = type(service.db)(service.settings.database.url)
    events, total = await crm.events.page(limit=50)
    await crm.db.dispose()
    assert total == 20 and {e.outcome for e in events} == {"new_lead"}


async def test_start_up_frozen_young_passes_rarer_until_the_stop(start_service: Any) -> None:
    """The collector's full passes skip the start-up heap while serving; after the stop, a
    process that goes on collects it again."""
    service = await start_service()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == heap.YOUNG  # an intake batch's objects: few young passes
    await service.stop()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] == 700


async def test_converting_a_long_batch_lets_the_event_loop_run_others(start_service: Any) -> None:
    service = await start_service()
    turns = 0
    seen: list[int] = []

    async def ticker() -> None:  # another task on the loop (a webhook, say)
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    def convert(raw: RawInput) -> None:
        seen.append(turns)
        return None  # nothing to record: no intake

    service.converters["test.kind"] = convert
    items: list[Any] = [RawInput("test.kind", 0.0, {"k": k}) for k in range(3 * BREATHE_EVERY)]
    task = asyncio.create_task(ticker())
    try:
        outcomes = await service._from_queue(items)
    finally:
        task.cancel()
    assert [o.status for o in outcomes] == ["done"] * len(items)
    assert len(set(seen)) >= 3  # the loop turned every BREATHE_EVERY conversions
