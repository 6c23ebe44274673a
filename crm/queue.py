"""The event queue between channels and intake, with two backends behind one interface.

In-process (default): an asyncio queue, nothing to install. Redis Streams (when a Redis URL is
configured): a consumer group shares the work among worker processes; a message is acknowledged
only after intake committed it, and messages a dead worker left pending are reclaimed with
XAUTOCLAIM. Idempotent intake makes a redelivered message take effect once.

What travels is a `QueueItem`: a normalized `InboundEvent`, or a `RawInput` a channel accepted
(verified, validated) and left for the worker to turn into its event, so that a busy webhook
answers sooner.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from matching.event import InboundEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawInput:
    """Channel input that is checked but not yet an event. The worker turns it into one with
    the converter registered for `kind` (`Service.converters`). `doc` is a JSON object; `text`,
    when given, is its JSON text in UTF-8 as received, so the Redis queue does not encode the
    document again."""

    kind: str
    received_at: float  # unix seconds
    doc: dict[str, Any]
    text: bytes | None = None


QueueItem = InboundEvent | RawInput

# Takes a batch of items and says, per item, whether it is done (committed, a known duplicate,
# or nothing to record); an item that is not stays queued and comes again.
Handler = Callable[[list[QueueItem]], Awaitable[list[bool]]]

# Items per handler call: whatever is waiting, up to this many. One transaction per batch is
# what lets intake keep up with bursts; a lone event is a batch of one and goes at once.
MAX_BATCH = 100


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits for intake: items queued or handed out and not yet done, and how long the
    oldest of them has waited (None when there is none)."""

    items: int
    oldest_age: float | None


class EventQueue(Protocol):
    async def open(self) -> None: ...

    async def put(self, item: QueueItem) -> None: ...

    async def run(self, handler: Handler, stop: asyncio.Event) -> None: ...

    async def depth(self) -> int: ...

    async def backlog(self) -> Backlog: ...

    async def close(self) -> None: ...


class InProcessQueue:
    def __init__(self, maxsize: int = 10_000) -> None:
        self._q: asyncio.Queue[QueueItem] = asyncio.Queue(maxsize)

    async def open(self) -> None:
        return None

    async def put(self, item: QueueItem) -> None:
        await self._q.put(item)

    async def run(self, handler: Handler, stop: asyncio.Event) -> None:
        """Process until `stop` is set and everything already queued is done."""
        while not (stop.is_set() and self._q.empty()):
            batch = await next_batch(self._q)
            if not batch:
                continue
            try:
                await handle_batch(handler, batch)
            finally:
                for _ in batch:
                    self._q.task_done()

    async def join(self) -> None:
        await self._q.join()

    async def depth(self) -> int:
        return self._q.qsize()

    async def backlog(self) -> Backlog:
        return Backlog(self._q.qsize(), None)

    async def close(self) -> None:
        return None


T = TypeVar("T")


async def next_batch(q: asyncio.Queue[T], wait: float = 0.2) -> list[T]:
    """Whatever waits in `q`, up to MAX_BATCH, after waiting up to `wait` seconds for the
    first; empty when nothing came (so a consumer can look at its stop flag)."""
    try:
        batch = [await asyncio.wait_for(q.get(), timeout=wait)]
    except TimeoutError:
        return []
    while len(batch) < MAX_BATCH and not q.empty():
        batch.append(q.get_nowait())
    return batch


async def handle_batch(handler: Handler, items: list[QueueItem]) -> list[bool]:
    try:
        return await handler(items)
    except Exception:
        log.exception("processing a batch of %d events failed", len(items))
        return [False] * len(items)


class GroupCommit(Generic[T]):
    """Writes for puts made together: a put is written at once when no write is under way;
    puts made meanwhile wait and go in the next write, all together. Each put returns when its
    write did, or raises what the write raised. Under load one write (a round trip, an fsync)
    carries many puts; a lone put pays no extra hop."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]]) -> None:
        self._write = write
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._busy = False
        self._next: asyncio.Task[None] | None = None  # held so the task is not collected

    async def put(self, item: T) -> None:
        if self._busy:
            done = asyncio.get_running_loop().create_future()
            self._waiting.append((item, done))
            await done
            return
        self._busy = True
        try:
            await self._write([item])
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        """Write what waited meanwhile, or mark the line free."""
        if not self._waiting:
            self._busy = False
            return
        batch, self._waiting = self._waiting, []
        self._next = asyncio.create_task(self._write_waiting(batch))

    async def _write_waiting(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            await self._write([item for item, _ in batch])
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

    async def drain(self) -> None:
        """Wait for the writes of puts that waited (a closing queue lets them finish)."""
        while self._next is not None and not self._next.done():
            await self._next


# Redis wire format: a stream entry's field "items" holds a JSON array of items, each
# {"event": <InboundEvent.to_json()>} or {"raw": kind, "at": unix seconds, "doc": {...}}.
# Puts that wait for the line share an entry (up to MAX_BATCH items): one XADD instead of one
# per item is most of what a queued webhook request costs. Entries of older versions, with a
# single field "event", are still read.
def encode_item(item: QueueItem) -> bytes:
    if isinstance(item, RawInput):
        doc = item.text if item.text is not None else json.dumps(item.doc).encode()
        return b'{"raw":%s,"at":%s,"doc":%s}' % (
            json.dumps(item.kind).encode(),
            repr(float(item.received_at)).encode(),
            doc,
        )
    return b'{"event":%s}' % json.dumps(item.to_json()).encode()


def decode_item(data: Any) -> QueueItem:
    if not isinstance(data, dict):
        raise ValueError("a queue item is a JSON object")
    if "event" in data:
        return InboundEvent.from_json(data["event"])
    doc = data["doc"]
    if not isinstance(doc, dict):
        raise ValueError("a raw input's doc is a JSON object")
    return RawInput(str(data["raw"]), float(data["at"]), doc)


def _entry_items(fields: Any) -> tuple[list[QueueItem], list[bytes]]:
    """The items of one stream entry, and the JSON of those that cannot be read (the whole
    entry's fields when it is not one this version knows)."""
    batch = fields.get(b"items") or fields.get("items")
    if batch is None:
        one = fields.get(b"event") or fields.get("event")
        try:
            return [InboundEvent.from_json(json.loads(one or ""))], []
        except (TypeError, ValueError, KeyError):
            return [], [_fields_json(fields)]
    try:
        data = json.loads(batch)
        if not isinstance(data, list):
            raise ValueError("items is a JSON array")
    except (TypeError, ValueError):
        return [], [_fields_json(fields)]
    items: list[QueueItem] = []
    bad: list[bytes] = []
    for raw in data:
        try:
            items.append(decode_item(raw))
        except (TypeError, ValueError, KeyError):
            bad.append(json.dumps(raw).encode())
    return items, bad


def _fields_json(fields: Any) -> bytes:
    def text(value: Any) -> str:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    return json.dumps({text(k): text(v) for k, v in fields.items()}).encode()


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
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.claim_idle_ms = claim_idle_ms
        self.block_ms = block_ms
        self._group_ready = False
        self._puts = GroupCommit(self._xadd)

    async def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def open(self) -> None:
        await self.ensure_group()

    async def put(self, item: QueueItem) -> None:
        """Returns once the item is in the stream. Puts made together share entries of up to
        MAX_BATCH items (`GroupCommit`), one XADD each, in one round trip."""
        await self._puts.put(encode_item(item))

    async def _xadd(self, items: list[bytes]) -> None:
        entries = [
            b"[" + b",".join(items[i : i + MAX_BATCH]) + b"]"
            for i in range(0, len(items), MAX_BATCH)
        ]
        if len(entries) == 1:
            await self.redis.xadd(self.stream, {"items": entries[0]})
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.xadd(self.stream, {"items": entry})
            await pipe.execute()

    async def depth(self) -> int:
        """Entries not yet acknowledged (an entry holds one put, or several made together)."""
        await self.ensure_group()
        groups = await self.redis.xinfo_groups(self.stream)
        for g in groups:
            name = g.get("name") if isinstance(g, dict) else None
            if name in (self.group, self.group.encode()):
                lag = g.get("lag") or 0
                return int(lag) + int(g.get("pending") or 0)
        return 0

    async def backlog(self) -> Backlog:
        return Backlog(await self.depth(), None)

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
        """Hand the entries' items over in batches of up to MAX_BATCH (an entry is never
        split) and acknowledge each entry once all its items are done. An entry with a failed
        item stays pending and is reclaimed after claim_idle_ms; its other items then come
        again as duplicates, which intake answers without redoing them. What cannot be read
        goes to the dead-letter stream `<stream>:dead` first: logged, kept, never lost."""
        chunk: list[tuple[Any, list[QueueItem]]] = []
        size = 0
        for msg_id, fields in messages:
            items, unreadable = _entry_items(fields)
            if unreadable:
                await self._dead_letter(msg_id, unreadable)
            if chunk and size + len(items) > MAX_BATCH:
                await self._finish(handler, chunk)
                chunk, size = [], 0
            chunk.append((msg_id, items))
            size += len(items)
        if chunk:
            await self._finish(handler, chunk)

    @property
    def dead_letters(self) -> str:
        return f"{self.stream}:dead"

    async def _dead_letter(self, msg_id: Any, unreadable: list[bytes]) -> None:
        source = msg_id.decode() if isinstance(msg_id, bytes) else str(msg_id)
        log.error(
            "queue message %s: %d unreadable item(s) moved to %s",
            source,
            len(unreadable),
            self.dead_letters,
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            for data in unreadable:
                pipe.xadd(self.dead_letters, {"from": source, "data": data})
            await pipe.execute()

    async def _finish(self, handler: Handler, chunk: list[tuple[Any, list[QueueItem]]]) -> None:
        items = [item for _, entry in chunk for item in entry]
        ok = iter(await handle_batch(handler, items) if items else [])
        done = [msg_id for msg_id, entry in chunk if all([next(ok) for _ in entry])]
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
