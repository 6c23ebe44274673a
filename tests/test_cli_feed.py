"""One-shot commands tell the running processes what they wrote: with Redis configured, the
records a `leadbot import-csv` or `leadbot ingest` makes reach a running service's change feed
at once, so its caller cache and live boards need no TTL or reload to see them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crm.changes import Change
from crm.db import Database
from crm.facade import Crm
from crm.services.callers import CacheSettings
from crm.services.telephony import CallerInfo
from leadbot.app import Service
from tests.conftest import REDIS_URL, leadbot_env, leadbot_run
from tests.servers import free_port

# Only the change feed can make a cached answer fresh within a test.
FOREVER = CacheSettings(size=1000, ttl=3600, negative_ttl=3600)


async def _service(start_service: Callable[..., Any], stream: str) -> Service:
    service: Service = await start_service(redis={"url": REDIS_URL, "stream": stream})
    service.crm.callers.configure_cache(FOREVER)
    return service


async def _until_known(service: Service, e164: str) -> CallerInfo:
    async with asyncio.timeout(10):
        while True:
            info = await service.crm.callers.caller(e164)
            if info is not None:
                return info
            await asyncio.sleep(0.05)


async def test_a_csv_import_reaches_a_running_services_caller_cache(
    stream_name: str, db: Database, start_service: Callable[..., Any], tmp_path: Path
) -> None:
    service = await _service(start_service, stream_name)
    number = "+4930555000111"
    assert await service.crm.callers.caller(number) is None  # cached as nobody, for an hour
    assert await service.crm.callers.caller(number) is None
    assert service.crm.callers.cache is not None and service.crm.callers.cache.hits == 1

    csv = tmp_path / "people.csv"
    csv.write_text("Name,Phone\nCora Import,+49 30 555000111\n", encoding="utf-8")
    code, _out, err = await leadbot_run(
        "import-csv", str(csv), "--as", "contact", "--no-progress", env=leadbot_env(db, stream_name)
    )
    assert code == 0, err

    info = await _until_known(service, number)  # no TTL passed: the feed cleared the cache
    assert info.contact_name == "Cora Import"


async def test_an_ingested_event_reaches_a_running_services_board_feed(
    stream_name: str, db: Database, start_service: Callable[..., Any], tmp_path: Path
) -> None:
    service = await _service(start_service, stream_name)
    changes = service.crm.changes.subscribe()
    event = {
        "channel": "call",
        "external_id": "cli-feed-1",
        "occurred_at": datetime.now(UTC).isoformat(),
        "phones": ["+4930555000222"],
        "text": "missed call",
    }
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(event) + "\n", encoding="utf-8")
    code, _out, err = await leadbot_run("ingest", str(events), env=leadbot_env(db, stream_name))
    assert code == 0, err

    async with asyncio.timeout(10):
        while True:
            item = await changes.get()
            if isinstance(item, Change) and (item.kind, item.action) == ("lead", "created"):
                break
    assert (await _until_known(service, "+4930555000222")).lead_id is not None


async def test_a_command_writes_though_the_feeds_redis_is_away(
    stream_name: str, crm: Crm, tmp_path: Path
) -> None:
    env = leadbot_env(crm.db, stream_name)
    env["LEADBOT_REDIS__URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens
    csv = tmp_path / "people.csv"
    csv.write_text("Name,Phone\nDora Offline,+49 30 555000333\n", encoding="utf-8")
    code, _out, err = await leadbot_run(
        "import-csv", str(csv), "--as", "contact", "--no-progress", env=env
    )
    assert code == 0, err  # the feed is a hint: its failure never fails the write
    assert "change feed: publishing failed" in err
    info = await crm.callers.caller("+4930555000333")
    assert info is not None and info.contact_name == "Dora Offline"
