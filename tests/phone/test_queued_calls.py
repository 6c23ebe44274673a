"""The generic webhook on a shared Redis queue, as in production: the web process queues the
validated document as received, and a separate worker process turns it into the call's event
and records it, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from channels.phone.component import phone_component
from crm.db import Database
from crm.models import Activity, InboundEventLog, Lead
from leadbot.app import Service
from tests.conftest import REDIS_URL, service_settings
from tests.phone.conftest import LINE, PHONE_SETTINGS, PhoneClient


@pytest.fixture
async def shared(db: Database) -> AsyncIterator[dict[str, Any]]:
    """Settings sections for services sharing a Redis stream of their own."""
    stream = f"test:calls:{uuid.uuid4().hex[:8]}"
    yield {"phone": PHONE_SETTINGS, "redis": {"url": REDIS_URL, "stream": stream, "group": "g"}}
    redis = Redis.from_url(REDIS_URL)
    await redis.delete(stream)
    await redis.aclose()


async def _rows(db: Database, model: Any) -> list[Any]:
    async with db.transaction() as s:
        return list(await s.scalars(select(model).order_by(model.id)))


async def test_a_worker_elsewhere_records_what_the_webhook_queued(
    db: Database, shared: dict[str, Any]
) -> None:
    web = Service(service_settings(db, **shared), components=[phone_component], workers=0)
    worker = Service(
        service_settings(db, **shared), components=[phone_component], http=False, workers=1
    )
    await web.start()
    rep = await web.crm.reps.add("Anna", extension="201")
    http = aiohttp.ClientSession()
    phone = PhoneClient(web, http)
    try:
        # Queued while no worker runs: the web process answers without anyone converting.
        for event in ("call.ringing", "call.missed"):
            reply = await phone.call_event("q-1", event, "030 5550001", agent_extension="201")
            assert reply.status == 202, reply.text
        # Our own line written nationally: only parsing the number tells it is internal, so
        # the webhook accepts it and the worker drops it.
        reply = await phone.call_event("q-2", "call.ringing", "089 111222")
        assert reply.status == 202, reply.text
        assert (await phone.call_event("q-3", "call.ringing", LINE)).json()["status"] == "ignored"
        assert await _rows(db, InboundEventLog) == []
        await worker.start()
        for _ in range(200):
            if len(await _rows(db, InboundEventLog)) >= 2:
                break
            await asyncio.sleep(0.05)
        pending: Any = {}
        for _ in range(100):
            pending = await worker.redis.xpending(shared["redis"]["stream"], "g")  # type: ignore[union-attr]
            if pending["pending"] == 0:
                break
            await asyncio.sleep(0.05)
        assert pending["pending"] == 0  # the dropped internal call is done with, too
    finally:
        await http.close()
        await worker.stop()
        await web.stop()
    logged = {e.external_id for e in await _rows(db, InboundEventLog)}
    assert logged == {"q-1:ringing", "q-1:final"}  # nothing of the internal calls
    [lead] = await _rows(db, Lead)
    assert lead.title == "+49305550001 — incoming call"
    # The worker knew the rep's extension (its own copy of the rep directory).
    assert lead.responsible_id == rep.id
    activities = await _rows(db, Activity)
    assert sorted(a.kind for a in activities) == ["call", "task"]
    [call] = [a for a in activities if a.kind == "call"]
    assert call.meta is not None and call.meta["missed"] is True
