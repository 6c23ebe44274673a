"""The event queue between channels and intake, with two backends behind one interface.

In-process (default): an asyncio queue, nothing to install (journaled on disk by
`crm.journal`). Redis Streams (when a Redis URL is configured): a consumer group shares the work
among worker processes; a message is acknowledged (and deleted) only after intake committed it,
and messages a dead worker left pending are reclaimed with XAUTOCLAIM. Idempotent intake makes
a redelivered message take effect once.

What travels is a `QueueItem`: a normalized `InboundEvent`, or a `RawInput` a channel accepted
(verified, validated) and left for the worker to turn into its event, so that a busy webhook
answers sooner.

Every queue retries an item intake could not take, with capped exponential backoff. An outage
(`crm.outage.is_outage`: the database or Redis is down) never counts toward giving up; after
`RetryPolicy.max_failures` other failures the item moves to the dead letters, where
`leadbot dead` lists it, puts it back or drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ReadOnlyError, ResponseError

from crm.outage import is_outage
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


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one item a handler was given. done: committed, a known duplicate, or
    nothing to record. retry: an outage (a server or the disk is down); tried again later and
    never given up. failed: the same input would fail again; tried again, and after
    `RetryPolicy.max_failures` of these moved to the dead letters."""

    status: Literal["done", "retry", "failed"]
    reason: str = ""


DONE = Outcome("done")


def outcome_of(exc: BaseException) -> Outcome:
    """The outcome of an item whose processing raised `exc`."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    reason = f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
    return Outcome("retry" if is_outage(exc) else "failed", reason)


# Takes a batch of items and says, per item, what became of it (`Outcome`).
Handler = Callable[[list[QueueItem]], Awaitable[list[Outcome]]]

# Items per handler call: whatever is waiting, up to this many. One transaction per batch is
# what lets intake keep up with bursts; a lone event is a batch of one and goes at once.
MAX_BATCH = 100


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits for intake: items queued or handed out and not yet done, and how long the
    oldest of them has waited (None when there is none)."""

    items: int
    oldest_age: float | None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How an item intake could not take is tried again: after first_delay, doubling up to
    max_delay; given up (dead-lettered) after max_failures failures that were not an outage."""

    max_failures: int = 5
    first_delay: float = 1.0
    max_delay: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds before try `attempt + 1` (attempt >= 1 tries so far)."""
        return float(min(self.max_delay, self.first_delay * 2 ** min(max(attempt - 1, 0), 30)))


# Called with how many items were moved to the dead letters (for a metric).
DeadHook = Callable[[int], None]


class EventQueue(Protocol):
    async def open(self) -> None: ...

    async def put(self, item: QueueItem) -> None: ...

    async def run(self, handler: Handler, stop: asyncio.Event) -> None: ...

    async def depth(self) -> int: ...

    async def backlog(self) -> Backlog: ...

    async def close(self) -> None: ...

    @property
    def dead_waiting(self) -> int:
        """Dead letters waiting for an operator, as last counted (no I/O)."""
        ...


def describe(item: QueueItem) -> str:
    """An item's name for a log line or a listing: no contents (they are customer data)."""
    if isinstance(item, RawInput):
        return f"{item.kind} input received at {item.received_at:.3f}"
    return f"{item.channel.value}:{item.external_id}"


async def handle_batch(handler: Handler, items: list[QueueItem]) -> list[Outcome]:
    """The handler's outcomes; when it raises, the same outcome for every item (a database
    outage is an outage for all of them)."""
    try:
        outcomes = await handler(items)
    except Exception as exc:
        outcome = outcome_of(exc)
        if outcome.status != "retry":  # an outage is logged once, by OutageWait
            log.exception("processing a batch of %d events failed", len(items))
        return [outcome] * len(items)
    if len(outcomes) != len(items):  # a handler bug: nothing is taken as done
        log.error("handler returned %d outcomes for %d items", len(outcomes), len(items))
        return [Outcome("failed", "handler returned no outcome")] * len(items)
    return outcomes


class OutageWait:
    """While intake reports an outage for everything it was given, take no new work: wait
    (capped backoff) instead of failing each item against a server that is down. Logged once
    when it starts and once when intake works again."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self._count = 0
        self._until = 0.0
        self._since: float | None = None

    def report(self, outcomes: Sequence[Outcome], now: float) -> None:
        if outcomes and all(o.status == "retry" for o in outcomes):
            if self._since is None:
                self._since = now
                log.warning(
                    "intake reports an outage (%s): events wait, none is given up",
                    outcomes[0].reason,
                )
            self._count += 1
            self._until = now + self.policy.delay(self._count)
        elif any(o.status == "done" for o in outcomes):
            if self._since is not None:
                log.warning("intake works again after %.1f s of outage", now - self._since)
            self._count, self._until, self._since = 0, 0.0, None

    def remaining(self, now: float) -> float:
        return max(0.0, self._until - now)

    @property
    def active(self) -> bool:
        """An outage is under way: one item at a time probes whether it is over."""
        return self._since is not None


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))


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
    ) -> None:
        self.policy = policy or RetryPolicy()
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
            batch = await self._take(min(0.2, self._next_due(now)))
            if batch:
                await self._process(handler, batch)

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


T = TypeVar("T")


async def next_batch(q: asyncio.Queue[T], wait: float = 0.2, size: int = MAX_BATCH) -> list[T]:
    """Whatever waits in `q`, up to `size`, after waiting up to `wait` seconds for the
    first; empty when nothing came (so a consumer can look at its stop flag)."""
    try:
        batch = [await asyncio.wait_for(q.get(), timeout=wait)]
    except TimeoutError:
        return []
    while len(batch) < size and not q.empty():
        batch.append(q.get_nowait())
    return batch


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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_ms(entry_id: str) -> int:
    """The unix milliseconds a stream id starts with (Redis' clock when it was added)."""
    return int(entry_id.split("-", 1)[0])


def _is_nogroup(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


@dataclass(slots=True)
class _Later:
    due: float  # monotonic
    delivered: float  # monotonic: when this consumer was last handed the entry


@dataclass(slots=True)
class _Down:
    """A Redis outage as the consumer saw it: logged once, and once when it ends."""

    since: float | None = None
    tries: int = 0
    reconnect_max_delay: float = 5.0

    def seen(self, exc: BaseException) -> float:
        """Note a failed round; the seconds to wait before the next."""
        if self.since is None:
            self.since = time.monotonic()
            log.warning("queue: Redis unreachable (%s); the consumer waits and retries", exc)
        self.tries += 1
        return float(min(self.reconnect_max_delay, 0.1 * 2 ** min(self.tries, 10)))

    def ok(self) -> None:
        if self.since is not None:
            log.warning(
                "queue: Redis reachable again after %.1f s; the consumer goes on",
                time.monotonic() - self.since,
            )
            self.since, self.tries = None, 0


class RedisStreamQueue:
    """Redis Streams with one consumer group. An entry is acknowledged and deleted in one
    transaction once all its items are done, so the stream holds only what waits (XLEN stays
    bounded). One consumer group per stream: deleting is safe only then."""

    def __init__(
        self,
        redis: Redis,
        *,
        stream: str = "leadbot:events",
        group: str = "leadbot-workers",
        consumer: str | None = None,
        claim_idle_ms: int = 30_000,
        block_ms: int = 500,
        policy: RetryPolicy | None = None,
        on_dead: DeadHook | None = None,
        reconnect_max_delay: float = 5.0,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.claim_idle_ms = claim_idle_ms
        self.block_ms = block_ms
        self.policy = policy or RetryPolicy()
        self.on_dead = on_dead
        self._group_ready = False
        self._puts = GroupCommit(self._xadd)
        # Entries of ours that intake could not take, by id: each is claimed again (XCLAIM)
        # when its time comes. Tries count per entry, for the backoff.
        self._later: dict[str, _Later] = {}
        self._tries: dict[str, int] = {}
        self._to_ack: set[str] = set()  # done, but Redis went away before the XACK
        self._outage = OutageWait(self.policy)
        self._down = _Down(reconnect_max_delay=reconnect_max_delay)
        self._dead_count = 0
        self._next_count = 0.0  # monotonic: when to count the dead letters (and trim) again
        self.dead_total = 0

    @property
    def dead_letters(self) -> str:
        return f"{self.stream}:dead"

    @property
    def failures(self) -> str:
        """A hash: entry id -> failures that were not an outage, shared by every consumer."""
        return f"{self.stream}:failures"

    @property
    def dead_waiting(self) -> int:
        return self._dead_count

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
        MAX_BATCH items (`GroupCommit`), one XADD each, in one round trip. Raises Redis'
        error when Redis cannot be reached."""
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

    # --- what waits -----------------------------------------------------------------------

    async def depth(self) -> int:
        """Entries not yet done (an entry holds one put, or several made together)."""
        return (await self.backlog()).items

    async def backlog(self) -> Backlog:
        """Entries pending (handed out, not acknowledged) plus entries not yet handed out,
        and the age of the oldest of them by its stream id. Counted from the group's
        last-delivered id, not its `lag` (nil after a restart or a deletion)."""
        seconds, micros = await self.redis.time()
        now_ms = seconds * 1000 + micros // 1000
        waiting = await self._waiting()
        if waiting is None:
            return Backlog(0, None)
        items, oldest = waiting
        return Backlog(items, max(0.0, (now_ms - _id_ms(oldest)) / 1000) if oldest else None)

    async def _waiting(self) -> tuple[int, str | None] | None:
        """(entries waiting, the oldest one's id), or None without a stream."""
        length = int(await self.redis.xlen(self.stream))
        if length == 0:
            return None
        last = await self._last_delivered()
        if last is None:  # no group (yet, or lost in a restart): everything waits
            first = await self.redis.xrange(self.stream, count=1)
            return length, _text(first[0][0]) if first else None
        summary: Any = await self.redis.xpending(self.stream, self.group)
        pending = int(summary.get("pending") or 0)
        # Entries up to the last delivered one still in the stream: the pending ones, and
        # any acknowledged one a crash or an older version left undeleted.
        behind, start = 0, "-"
        while True:
            page: Any = await self.redis.xrange(self.stream, start, last, count=1000)
            behind += len(page)
            if len(page) < 1000:
                break
            start = "(" + _text(page[-1][0])
        undelivered = max(0, length - behind)
        first_new: Any = await self.redis.xrange(self.stream, "(" + last, "+", count=1) or []
        candidates = [_text(summary["min"])] if pending and summary.get("min") else []
        if first_new:
            candidates.append(_text(first_new[0][0]))
        oldest = (
            min(candidates, key=lambda i: tuple(map(int, i.split("-")))) if candidates else None
        )
        return pending + undelivered, oldest

    async def _last_delivered(self) -> str | None:
        try:
            groups: Any = await self.redis.xinfo_groups(self.stream)
        except ResponseError:
            return None
        for g in groups:
            if _text(g.get("name")) == self.group:
                return _text(g.get("last-delivered-id"))
        return None

    async def _housekeeping(self) -> None:
        """Now and then: count the dead letters (a gauge), and trim entries older than the
        oldest one still waiting (acknowledged ones an older version or a crash left)."""
        self._next_count = time.monotonic() + 5
        self._dead_count = int(await self.redis.xlen(self.dead_letters))
        waiting = await self._waiting()
        if waiting is not None and waiting[1] is not None:
            await self.redis.xtrim(self.stream, minid=waiting[1], approximate=False)

    # --- the consumer ---------------------------------------------------------------------

    async def run(self, handler: Handler, stop: asyncio.Event) -> None:
        """Consume until `stop` is set. Survives Redis going away (waits, logs once, goes on)
        and a restart that lost the group (recreated; logged as an error)."""
        while not stop.is_set():
            try:
                await self._round(handler, stop)
            except Exception as exc:
                if _is_nogroup(exc):
                    self._group_lost()
                    await wait_or_stop(stop, 0.1)
                    continue
                if not (is_outage(exc) or isinstance(exc, ReadOnlyError)):
                    raise
                await wait_or_stop(stop, self._down.seen(exc))
            else:
                self._down.ok()

    def _group_lost(self) -> None:
        if self._group_ready:
            log.error(
                "queue: consumer group %s of stream %s is gone (Redis restarted without "
                "persistence?); recreated from the start of the stream. Events acknowledged to "
                "their senders before the restart may have been lost: run Redis with "
                "appendonly yes",
                self.group,
                self.stream,
            )
        self._group_ready = False
        self._later.clear()
        self._tries.clear()
        self._to_ack.clear()

    async def _round(self, handler: Handler, stop: asyncio.Event) -> None:
        await self.ensure_group()
        if self._to_ack:
            ids = list(self._to_ack)
            await self._ack(ids)
            self._to_ack.difference_update(ids)
        if time.monotonic() >= self._next_count:
            await self._housekeeping()
        await self._retry_due(handler)
        pause = self._outage.remaining(time.monotonic())
        if pause > 0:  # intake is down: only the retries that come due probe it
            await wait_or_stop(stop, min(pause, self._until_due()))
            return
        await self._reclaim(handler)
        block = max(1, int(min(self.block_ms / 1000, self._until_due()) * 1000))
        resp: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=MAX_BATCH, block=block
        )
        for _stream, messages in resp or []:
            await self._deliver(handler, messages)

    def _until_due(self) -> float:
        if not self._later:
            return 3600.0
        return max(0.0, min(r.due for r in self._later.values()) - time.monotonic())

    async def _retry_due(self, handler: Handler) -> None:
        """Claim our entries whose retry time came and hand them over again. An entry another
        consumer claimed meanwhile (it was idle less long than since we had it) is its now."""
        now = time.monotonic()
        due = [i for i, r in self._later.items() if r.due <= now]
        if not due:
            return
        if self._outage.active:  # one entry probes; the others wait for the outage's end
            for i in due[1:]:
                self._later[i].due = now + max(self._outage.remaining(now), 0.05)
            due = due[:1]
        # Taken off the schedule before the round trip: another worker task of this
        # process must not claim them too.
        idle = min(now - self._later.pop(i).delivered for i in due)
        ids: list[Any] = due
        claimed: Any = await self.redis.xclaim(
            self.stream, self.group, self.consumer, max(0, int(idle * 1000) - 100), ids
        )
        got = {_text(i) for i, f in claimed if f is not None}
        for i in due:
            if i not in got:
                self._tries.pop(i, None)
        await self._deliver(handler, [(i, f) for i, f in claimed if f is not None])

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
        split). What cannot be read goes to the dead-letter stream `<stream>:dead` first:
        logged, kept, never lost."""
        chunk: list[tuple[str, list[QueueItem]]] = []
        size = 0
        for msg_id, fields in messages:
            items, unreadable = _entry_items(fields)
            if unreadable:
                await self._dead_letter(_text(msg_id), unreadable)
            if chunk and size + len(items) > MAX_BATCH:
                await self._finish(handler, chunk)
                chunk, size = [], 0
            chunk.append((_text(msg_id), items))
            size += len(items)
        if chunk:
            await self._finish(handler, chunk)

    async def _dead_letter(self, source: str, unreadable: list[bytes]) -> None:
        log.error(
            "queue message %s: %d unreadable item(s) moved to %s",
            source,
            len(unreadable),
            self.dead_letters,
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            for data in unreadable:
                pipe.xadd(self.dead_letters, {"from": source, "data": data, "reason": "unreadable"})
            await pipe.execute()
        self._count_dead(len(unreadable))

    def _count_dead(self, n: int) -> None:
        self.dead_total += n
        self._dead_count += n
        if self.on_dead is not None:
            self.on_dead(n)

    async def _finish(self, handler: Handler, chunk: list[tuple[str, list[QueueItem]]]) -> None:
        """An entry whose items are all done is acknowledged. One with a failed item has its
        failure counted (in Redis, so every consumer sees it) and is tried again later, or
        given up when it failed max_failures times. One with items meeting an outage only is
        tried again later, whatever how often."""
        items = [item for _, entry in chunk for item in entry]
        outcomes = await handle_batch(handler, items) if items else []
        now = time.monotonic()
        self._outage.report(outcomes, now)
        results = iter(outcomes)
        done: list[str] = []
        failing: list[tuple[str, list[QueueItem], list[Outcome]]] = []
        for msg_id, entry in chunk:
            got = [next(results) for _ in entry]
            if all(o.status == "done" for o in got):
                done.append(msg_id)
            elif any(o.status == "failed" for o in got):
                failing.append((msg_id, entry, got))
            else:
                self._later_again(msg_id, now)
        if failing:
            async with self.redis.pipeline(transaction=False) as pipe:
                for msg_id, _, _ in failing:
                    pipe.hincrby(self.failures, msg_id, 1)
                counts = await pipe.execute()
            for (msg_id, entry, got), count in zip(failing, counts, strict=True):
                reason = next(o.reason for o in got if o.status == "failed")
                if int(count) >= self.policy.max_failures:
                    await self._give_up(msg_id, entry, got, int(count))
                    continue
                log.warning(
                    "queue message %s failed (%d of %d tries): %s",
                    msg_id,
                    count,
                    self.policy.max_failures,
                    reason,
                )
                self._later_again(msg_id, now)
        if done:
            try:
                await self._ack(done)
            except Exception:
                self._to_ack.update(done)  # done in the database: acknowledged once Redis is back
                raise

    async def _ack(self, ids: list[str]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            self._ack_into(pipe, ids)
            await pipe.execute()

    def _later_again(self, msg_id: str, now: float) -> None:
        tries = self._tries.get(msg_id, 0) + 1
        self._tries[msg_id] = tries
        # Claimed again before other consumers would take it for a dead one's.
        delay = min(self.policy.delay(tries), self.claim_idle_ms / 2000)
        self._later[msg_id] = _Later(now + delay, now)

    def _ack_into(self, pipe: Any, ids: list[str]) -> None:
        """Acknowledge and delete the entries (the stream keeps only what waits)."""
        pipe.xack(self.stream, self.group, *ids)
        pipe.xdel(self.stream, *ids)
        pipe.hdel(self.failures, *ids)
        for i in ids:
            self._later.pop(i, None)
            self._tries.pop(i, None)

    async def _give_up(
        self, msg_id: str, entry: list[QueueItem], got: list[Outcome], count: int
    ) -> None:
        """Move the entry's failed items to the dead letters; items of it that met an outage
        go back into the stream as a new entry; the entry is done. All in one transaction."""
        failed = [(item, o) for item, o in zip(entry, got, strict=True) if o.status == "failed"]
        again = [encode_item(i) for i, o in zip(entry, got, strict=True) if o.status == "retry"]
        async with self.redis.pipeline(transaction=True) as pipe:
            for item, o in failed:
                pipe.xadd(
                    self.dead_letters,
                    {
                        "from": msg_id,
                        "data": encode_item(item),
                        "reason": o.reason,
                        "failures": count,
                    },
                )
            if again:
                pipe.xadd(self.stream, {"items": b"[" + b",".join(again) + b"]"})
            self._ack_into(pipe, [msg_id])
            await pipe.execute()
        for item, o in failed:
            log.error(
                "queue: %s (message %s) moved to %s after %d failures: %s",
                describe(item),
                msg_id,
                self.dead_letters,
                count,
                o.reason,
            )
        self._count_dead(len(failed))

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
