"""The event queue between channels and intake, with two backends behind one interface.

In-process (default): an asyncio queue, nothing to install. Redis Streams (when a Redis URL is
configured): a consumer group shares the work among worker processes; a message is acknowledged
only after intake committed it, and messages a dead worker left pending are reclaimed with
XAUTOCLAIM. Idempotent intake makes a redelivered message take effect once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from matching.event import InboundEvent

log = logging.getLogger(__name__)

# Takes a batch of events and says, per event, whether it is done (committed or a known
# duplicate); an event that is not stays queued and comes again.
Handler = Callable[[list[InboundEvent]], Awaitable[list[bool]]]

# Events per handler call: whatever is waiting, up to this many. One transaction per batch is
# what lets intake keep up with bursts; a lone event is a batch of one and goes at once.
MAX_BATCH = 100


class EventQueue(Protocol):
    async def put(self, event: InboundEvent) -> None: ...

    async def run(self, handler: Handler, stop: asyncio.Event) -> None: ...

    async def depth(self) -> int: ...

    async def close(self) -> None: ...


class InProcessQueue:
    def __init__(self, maxsize: int = 10_000) -> None:
        self._q: asyncio.Queue[InboundEvent] = asyncio.Queue(maxsize)

    async def put(self, event: InboundEvent) -> None:
        await self._q.put(event)

    async def run(self, handler: Handler, stop: asyncio.Event) -> None:
        """Process until `stop` is set and everything already queued is done."""
        while not (stop.is_set() and self._q.empty()):
            try:
                batch = [await asyncio.wait_for(self._q.get(), timeout=0.2)]
            except TimeoutError:
                continue
            while len(batch) < MAX_BATCH and not self._q.empty():
                batch.append(self._q.get_nowait())
            try:
                await _handle(handler, batch)
            finally:
                for _ in batch:
                    self._q.task_done()

    async def join(self) -> None:
        await self._q.join()

    async def depth(self) -> int:
        return self._q.qsize()

    async def close(self) -> None:
        return None


async def _handle(handler: Handler, events: list[InboundEvent]) -> list[bool]:
    try:
        return await handler(events)
    except Exception:
        log.exception("processing a batch of %d events failed", len(events))
        return [False] * len(events)


class RedisStreamQueue:
    def __init__(
        self,
        redis: Redis,
        *,
        stream: str = "leadbot:events",
        group: str = "leadbot-workers",
        consumer: str | None = None,
        claim_idle_ms: int = 30_000,
        block_ms: int = 500,
        max_deliveries: int = 10,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.claim_idle_ms = claim_idle_ms
        self.block_ms = block_ms
        self.max_deliveries = max_deliveries
        self._group_ready = False
        self._waiting: list[tuple[str, asyncio.Future[None]]] = []
        self._in_flight = False
        self._sender: asyncio.Task[None] | None = None  # held so the task is not collected

    async def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def put(self, event: InboundEvent) -> None:
        """Returns once the event is in the stream. A put goes out at once when nothing is on
        its way to Redis; puts made meanwhile wait and go together in one pipeline, so under
        load one round trip carries many and a lone put pays no extra hop."""
        data = json.dumps(event.to_json())
        if self._in_flight:
            done = asyncio.get_running_loop().create_future()
            self._waiting.append((data, done))
            await done
            return
        self._in_flight = True
        try:
            await self.redis.xadd(self.stream, {"event": data})
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        """Send what waited meanwhile, or mark the line free."""
        if not self._waiting:
            self._in_flight = False
            return
        batch, self._waiting = self._waiting, []
        self._sender = asyncio.create_task(self._send(batch))

    async def _send(self, batch: list[tuple[str, asyncio.Future[None]]]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for data, _ in batch:
                    pipe.xadd(self.stream, {"event": data})
                await pipe.execute()
        except Exception as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
        else:
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
        finally:
            self._hand_over()

    async def depth(self) -> int:
        await self.ensure_group()
        groups = await self.redis.xinfo_groups(self.stream)
        for g in groups:
            name = g.get("name") if isinstance(g, dict) else None
            if name in (self.group, self.group.encode()):
                lag = g.get("lag") or 0
                return int(lag) + int(g.get("pending") or 0)
        return 0

    async def run(self, handler: Handler, stop: asyncio.Event) -> None:
        await self.ensure_group()
        while not stop.is_set():
            await self._reclaim(handler)
            resp: Any = await self.redis.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=MAX_BATCH, block=self.block_ms
            )
            for _stream, messages in resp or []:
                await self._deliver(handler, messages)

    async def _reclaim(self, handler: Handler) -> None:
        """Take over messages another (dead) consumer left unacknowledged for too long."""
        start = "0-0"
        while True:
            result: Any = await self.redis.xautoclaim(
                self.stream, self.group, self.consumer, self.claim_idle_ms, start, count=50
            )
            start, messages = result[0], list(result[1])
            await self._deliver(handler, [(i, f) for i, f in messages if f is not None])
            if not messages or start in ("0-0", b"0-0"):
                return

    async def _deliver(self, handler: Handler, messages: list[tuple[Any, Any]]) -> None:
        ids: list[Any] = []
        events: list[InboundEvent] = []
        done: list[Any] = []
        for msg_id, fields in messages:
            raw = fields.get("event") or fields.get(b"event")
            try:
                events.append(InboundEvent.from_json(json.loads(raw or "")))
                ids.append(msg_id)
            except (TypeError, ValueError, KeyError):
                log.error("dropping unreadable queue message %s", msg_id)
                done.append(msg_id)
        if events:
            ok = await _handle(handler, events)
            done += [msg_id for msg_id, good in zip(ids, ok, strict=True) if good]
        # A failed event stays pending and is reclaimed after claim_idle_ms.
        if done:
            await self.redis.xack(self.stream, self.group, *done)

    async def close(self) -> None:
        await self.redis.aclose()


class RedisSeen:
    """Fast duplicate check: a key per processed (channel, external id), kept for a week."""

    def __init__(self, redis: Redis, prefix: str = "leadbot:seen:", ttl: int = 7 * 86400) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl

    async def seen(self, keys: Sequence[str]) -> list[bool]:
        if not keys:
            return []
        values = await self.redis.mget([self.prefix + k for k in keys])
        return [v is not None for v in values]

    async def mark(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(self.prefix + key, "1", nx=True, ex=self.ttl)
            await pipe.execute()
