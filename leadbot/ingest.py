"""`leadbot ingest FILE.jsonl`: replay events through the same queue and intake.

The file's events go into the service's queue and this process works the queue too, but on a
shared Redis queue other workers may take them: so it watches the event log for its own
(channel, external id) keys, not what passes through its own hands, until every one is
logged, given up on (dead-lettered), or the timeout has passed."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm.deadletters import RedisDeadLetters
from crm.queue import DONE, Outcome, QueueItem, outcome_of
from leadbot.app import Service
from leadbot.settings import Settings
from matching.event import InboundEvent
from matching.text import clean_event

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (channel, external id): an event's identity in the event log

DEFAULT_TIMEOUT = 300.0  # seconds; `leadbot ingest --timeout`
_POLL = 0.2  # seconds between looks at the event log
_DEAD_POLL = 2.0  # seconds between looks at the Redis dead letters


@dataclass
class IngestSummary:
    """What became of a file's events. `outcomes` counts the logged outcome of each event
    done in this run; `duplicate` those already in the event log before it."""

    outcomes: Counter[str] = field(default_factory=Counter)
    duplicate: int = 0
    failed: int = 0
    pending: int = 0
    invalid: int = 0  # lines that are not an event

    def count(self, prefix: str) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome.startswith(prefix))

    @property
    def done(self) -> int:
        return sum(self.outcomes.values()) + self.duplicate

    @property
    def complete(self) -> bool:
        """Every event of the file is in the event log (bad lines aside)."""
        return not (self.failed or self.pending)

    def lines(self) -> list[str]:
        """The summary as `name<TAB>count` lines: totals first, then each logged outcome."""
        totals = [
            ("done", self.done),
            ("new", self.count("new_")),
            ("attached", self.count("attached_")),
            ("ignored", self.outcomes["ignored"]),
            ("duplicate", self.duplicate),
            ("failed", self.failed),
            ("pending", self.pending),
            ("invalid", self.invalid),
        ]
        detail = [(f"outcome {o}", n) for o, n in sorted(self.outcomes.items())]
        return [f"{name}\t{n}" for name, n in totals + detail]


def summarize(
    keys: Iterable[Key],
    before: set[Key],
    logged: dict[Key, str],
    dead: set[Key],
    invalid: int,
) -> IngestSummary:
    """Sort the file's events: already logged before the run, logged now (by outcome), given
    up on, or still waiting."""
    s = IngestSummary(invalid=invalid)
    for key in set(keys):
        if key in before:
            s.duplicate += 1
        elif key in logged:
            s.outcomes[logged[key]] += 1
        elif key in dead:
            s.failed += 1
        else:
            s.pending += 1
    return s


def read_events(path: Path) -> tuple[list[InboundEvent], int]:
    """The file's events (cleaned as every channel's are) and how many lines were not one."""
    events: list[InboundEvent] = []
    invalid = 0
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                events.append(clean_event(InboundEvent.from_json(_object(line))))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("%s:%d: skipped: %s", path, n, _why(exc))
                invalid += 1
    return events, invalid


def _object(line: str) -> dict[str, Any]:
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object (one event per line)")
    return doc


def _why(exc: Exception) -> str:
    """What the operator reads to fix the line: a KeyError's own text is only the key."""
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc)


def _key(event: InboundEvent) -> Key:
    return (event.channel.value, event.external_id)


async def ingest_file(
    settings: Settings, path: Path, *, timeout: float = DEFAULT_TIMEOUT
) -> IngestSummary:
    """Queue every event of the file, work the queue, and wait (up to `timeout` seconds) until
    the event log holds each of them."""
    service = Service(settings, components=[], http=False, workers=0, journal=False)
    events, invalid = read_events(path)
    keys = {_key(e) for e in events}
    logged: dict[Key, str] = {}
    dead: set[Key] = set()
    before: set[Key] = set()
    failures: Counter[Key] = Counter()
    max_failures = settings.queue.max_failures

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
            if isinstance(result, Exception):
                said.append(outcome_of(result))
                # In process this worker is the only one: it sees every failure, and the
                # queue gives up after max_failures of them.
                if said[-1].status == "failed" and service.redis is None:
                    failures[_key(item)] += 1
                    if failures[_key(item)] >= max_failures:
                        dead.add(_key(item))
            else:
                said.append(DONE)
        return said

    await service.crm.prepare()
    # What this process's intake commits reaches the running services' boards and caches.
    await service.feed.start(listen=False)
    stop = asyncio.Event()
    worker: asyncio.Task[None] | None = None
    try:
        before = set(await service.crm.events.outcomes(keys))
        letters = await _DeadLetters.of(service)
        await service.queue.open()
        # Each event once, and none the log already holds: intake would only call it a
        # duplicate, and here it already counts as one.
        fresh: dict[Key, InboundEvent] = {}
        for event in events:
            if _key(event) not in before:
                fresh.setdefault(_key(event), event)
        for event in fresh.values():
            await service.submit(event)
        worker = asyncio.create_task(service.queue.run(handle, stop))
        await _wait_logged(service, keys - before, logged, dead, letters, timeout, worker)
    finally:
        stop.set()
        if worker is not None:
            await worker
        await service.queue.close()
        await service.feed.close()
        if service.redis is not None:
            await service.redis.aclose()
        await service.db.dispose()
    return summarize(keys, before, logged, dead, invalid)


class _DeadLetters:
    """The Redis dead letters written since the run began (found by entry id, not by a
    clock: Redis' clock need not be ours)."""

    def __init__(self, store: RedisDeadLetters, since: tuple[int, int]) -> None:
        self.store = store
        self.since = since

    @classmethod
    async def of(cls, service: Service) -> _DeadLetters | None:
        if service.redis is None:
            return None  # in process this worker sees every failure itself (`handle`)
        store = RedisDeadLetters(service.redis, service.settings.redis.stream)
        last: Any = await service.redis.xrevrange(store.key, count=1)
        return cls(store, _entry_id(last[0][0]) if last else (0, 0))

    async def events(self) -> set[Key]:
        new = [d for d in await self.store.letters() if _entry_id(d.id) > self.since]
        return {_key(item) for d in new if isinstance(item := d.item, InboundEvent)}


def _entry_id(entry_id: str | bytes) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def _wait_logged(
    service: Service,
    waiting: set[Key],
    logged: dict[Key, str],
    dead: set[Key],
    letters: _DeadLetters | None,
    timeout: float,
    worker: asyncio.Task[None],
) -> None:
    """Fill `logged` from the event log until every key of `waiting` is logged or dead."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    next_dead = 0.0
    while True:
        logged.update(await service.crm.events.outcomes(waiting - logged.keys()))
        now = loop.time()
        if letters is not None and now >= next_dead:
            # Another worker may have given up on one of ours.
            next_dead = now + _DEAD_POLL
            dead.update(await letters.events())
        if waiting <= logged.keys() | dead or now >= deadline:
            return
        if worker.done():
            worker.result()  # the queue stopped on an error: raise it
            return
        await asyncio.sleep(_POLL)
