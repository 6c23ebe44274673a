"""`leadbot ingest FILE.jsonl`: replay events through the same queue and intake."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from pathlib import Path

from crm.queue import DONE, InProcessQueue, Outcome, QueueItem, outcome_of
from leadbot.app import Service
from leadbot.settings import Settings
from matching.event import InboundEvent

log = logging.getLogger(__name__)


async def ingest_file(settings: Settings, path: Path) -> dict[str, int]:
    """Queue every line, process them, and count the outcomes (bad lines count as "invalid")."""
    service = Service(settings, components=[], http=False, workers=0, journal=False)
    outcomes: Counter[str] = Counter()
    await service.crm.prepare()
    try:
        events: list[InboundEvent] = []
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    events.append(InboundEvent.from_json(json.loads(line)))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("%s:%d: skipped: %s", path, n, exc)
                    outcomes["invalid"] += 1
        for event in events:
            await service.submit(event)

        done = asyncio.Event()

        # The last result of each event: one that failed may come again (a retry).
        last: dict[tuple[str, str], str] = {}
        expected = len({(e.channel.value, e.external_id) for e in events})

        async def handle(batch: list[QueueItem]) -> list[Outcome]:
            # A channel's raw input from the shared queue is not ours to convert: it waits
            # for a worker with that channel.
            mine = [item for item in batch if isinstance(item, InboundEvent)]
            results = iter(await service.handle_many(mine) if mine else [])
            said: list[Outcome] = []
            for item in batch:
                if not isinstance(item, InboundEvent):
                    said.append(Outcome("retry", "not an event of this file"))
                    continue
                result = next(results)
                key = (item.channel.value, item.external_id)
                if isinstance(result, Exception):
                    last[key] = "failed"
                    said.append(outcome_of(result))
                else:
                    last[key] = result.outcome
                    said.append(DONE)
            if len(last) >= expected:
                done.set()
            return said

        stop = asyncio.Event()
        if isinstance(service.queue, InProcessQueue):
            stop.set()  # drain what is queued, then return
            await service.queue.run(handle, stop)
        else:
            # Shared Redis queue: process until our own events are through.
            task = asyncio.create_task(service.queue.run(handle, stop))
            if events:
                await done.wait()
            stop.set()
            await task
    finally:
        outcomes.update(last.values())
        await service.queue.close()
        await service.db.dispose()
    return dict(outcomes)
