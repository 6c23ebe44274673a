"""The in-process queue: an asyncio queue with retries (a failed item waits on its own,
the rest go on) and dead letters; `crm.journal` adds a journal on disk."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from crm.queue.batching import next_batch
from crm.queue.contract import (
    MAX_BATCH,
    Backlog,
    DeadHook,
    Handler,
    OutageWait,
    QueueItem,
    RetryPolicy,
    describe,
    handle_batch,
    wait_or_stop,
)

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class Waiting:
    """An item in a local queue, from put until done or dead-lettered."""

    item: QueueItem
    enqueued: float  # unix seconds
    tag: Any = None  # the journal's segment
    failures: int = 0  # failures that were not an outage
    attempts: int = 0
    reason: str = ""


class LocalQueue:
    """The in-process machinery: items wait in memory; one that intake could not take waits
    for its retry apart (it does not hold up the others) and comes before new ones when due.
    Subclasses decide where dead letters go and what settling an item means."""

    def __init__(
        self,
        maxsize: int = 10_000,
        *,
        policy: RetryPolicy | None = None,
        on_dead: DeadHook | None = None,
        linger: float = 0.0,
    ) -> None:
        self.policy = policy or RetryPolicy()
        # Seconds between the starts of two batches while fewer than a full one wait (`_linger`).
        self.linger = linger
        self._last_batch: float | None = None  # when the last batch started (monotonic)
        self._full = asyncio.Event()
        self.on_dead = on_dead
        self._room = asyncio.Semaphore(maxsize)
        self._ready: asyncio.Queue[Waiting] = asyncio.Queue()
        self._due: deque[Waiting] = deque()  # retries whose time came: first in the next batch
        self._later: list[tuple[float, int, Waiting]] = []  # (due, seq, item) heap
        self._seq = itertools.count()
        self._waiting: dict[int, Waiting] = {}  # by id(); insertion order is enqueue order
        self._idle = asyncio.Event()
        self._idle.set()
        self._outage = OutageWait(self.policy)
        self.dead_total = 0

    @property
    def dead_waiting(self) -> int:
        return 0

    async def open(self) -> None:
        return None

    async def put(self, item: QueueItem) -> None:
        await self._room.acquire()
        self._enqueue(Waiting(item, time.time()))

    def _enqueue(self, w: Waiting) -> None:
        """Queue `w`, its room already taken."""
        self._waiting[id(w)] = w
        self._idle.clear()
        self._ready.put_nowait(w)
        if self._ready.qsize() >= MAX_BATCH:
            self._full.set()

    async def run(self, handler: Handler, stop: asyncio.Event) -> None:
        """Process until `stop` is set and everything ready is done (items waiting for a retry
        are not waited for; neither is anything during an outage)."""
        while True:
            now = time.monotonic()
            self._release_due(now)
            pause = self._outage.remaining(now)
            if stop.is_set() and (pause > 0 or (not self._due and self._ready.empty())):
                return
            if pause > 0:
                await wait_or_stop(stop, pause)
                continue
            await self._idle_work()
            if not stop.is_set():
                await self._linger()
            batch = await self._take(min(0.2, self._next_due(now)))
            if batch:
                self._last_batch = time.monotonic()
                await self._process(handler, batch)

    async def _linger(self) -> None:
        """Right after a batch, wait until `linger` seconds have passed since it started or a
        full batch waits: under load intake takes fewer, larger batches (each batch has a
        fixed cost: its transaction, its reads), while a lone event after a quiet spell is
        taken at once. Retries that are due go at once too. (A stop set meanwhile waits for
        the rest of it: at most `linger`.) The first batch waits for none."""
        if self._last_batch is None:
            return
        wait = self._last_batch + self.linger - time.monotonic()
        if wait <= 0 or self._due or self._ready.qsize() >= MAX_BATCH:
            return
        self._full.clear()
        timer = asyncio.get_running_loop().call_later(wait, self._full.set)
        try:
            await self._full.wait()
        finally:
            timer.cancel()

    async def _idle_work(self) -> None:
        """A subclass's periodic work in the loop (the journal looks for items to retry)."""
        return None

    def _release_due(self, now: float) -> None:
        while self._later and self._later[0][0] <= now:
            self._due.append(heapq.heappop(self._later)[2])

    def _next_due(self, now: float) -> float:
        return max(self._later[0][0] - now, 0.001) if self._later else 3600.0

    async def _take(self, wait: float) -> list[Waiting]:
        size = 1 if self._outage.active else MAX_BATCH
        batch: list[Waiting] = []
        while self._due and len(batch) < size:
            batch.append(self._due.popleft())
        if not batch:
            return await next_batch(self._ready, wait, size)
        while len(batch) < size and not self._ready.empty():
            batch.append(self._ready.get_nowait())
        return batch

    async def _process(self, handler: Handler, batch: list[Waiting]) -> None:
        outcomes = await handle_batch(handler, [w.item for w in batch])
        now = time.monotonic()
        self._outage.report(outcomes, now)
        done: list[Waiting] = []
        dead: list[Waiting] = []
        for w, outcome in zip(batch, outcomes, strict=True):
            if outcome.status == "done":
                done.append(w)
                continue
            w.attempts += 1
            w.reason = outcome.reason
            if outcome.status == "failed":
                w.failures += 1
                if w.failures >= self.policy.max_failures:
                    dead.append(w)
                    continue
                log.warning(
                    "queue: %s failed (%d of %d tries): %s",
                    describe(w.item),
                    w.failures,
                    self.policy.max_failures,
                    w.reason,
                )
            self._retry(w, now)
        if dead:
            moved = await self._dead_letter(dead)
            for w in dead:
                if w not in moved:  # kept: the dead letter could not be written (the disk)
                    self._retry(w, now)
            dead = moved
            self.dead_total += len(dead)
            if dead and self.on_dead is not None:
                self.on_dead(len(dead))
        if done or dead:
            await self._settle(done + dead)

    def _retry(self, w: Waiting, now: float) -> None:
        heapq.heappush(self._later, (now + self.policy.delay(w.attempts), next(self._seq), w))

    async def _dead_letter(self, items: list[Waiting]) -> list[Waiting]:
        """Move `items` to the dead letters; those moved."""
        for w in items:
            log.error(
                "queue: %s given up after %d failures (%s); without a journal it is not kept",
                describe(w.item),
                w.failures,
                w.reason,
            )
        return items

    async def _settle(self, items: list[Waiting]) -> None:
        """`items` are done or dead-lettered: they leave the queue."""
        for w in items:
            del self._waiting[id(w)]
            self._room.release()
        if not self._waiting:
            self._idle.set()

    async def join(self) -> None:
        """Wait until every item put is done or dead-lettered."""
        await self._idle.wait()

    async def depth(self) -> int:
        return len(self._waiting)

    async def backlog(self) -> Backlog:
        oldest = next(iter(self._waiting.values()), None)
        age = max(0.0, time.time() - oldest.enqueued) if oldest is not None else None
        return Backlog(len(self._waiting), age)


class InProcessQueue(LocalQueue):
    """In memory only: what waits is lost if the process ends (`leadbot ingest`, which has
    its input file; a service without a journal)."""

    async def close(self) -> None:
        if self._waiting:
            log.warning("queue: %d unprocessed event(s) dropped (no journal)", len(self._waiting))
