"""The Redis Streams queue: a consumer group shares the work among worker processes; an
entry is acknowledged (and deleted) only after intake committed it, and what a dead worker
left pending is reclaimed with XAUTOCLAIM. Survives Redis going away and coming back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ReadOnlyError, ResponseError

from crm.outage import is_outage
from crm.queue.batching import GroupCommit
from crm.queue.contract import (
    MAX_BATCH,
    Backlog,
    DeadHook,
    Handler,
    OutageWait,
    Outcome,
    QueueItem,
    RetryPolicy,
    describe,
    handle_batch,
    wait_or_stop,
)
from crm.queue.wire import as_text, encode_item, entry_items, id_ms

log = logging.getLogger(__name__)


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
        self._line: AbstractConnection | None = None  # the puts' own connection (`_xadd_on_line`)
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

    def put(self, item: QueueItem) -> asyncio.Future[None]:
        """Await it: it returns once the item is in the stream. Puts made together share
        entries of up to MAX_BATCH items (`GroupCommit`), one XADD each, in one round trip.
        Raises Redis' error when Redis cannot be reached. (The group commit's future itself,
        not a coroutine around it: one coroutine less on every webhook request.)"""
        return self._puts.put(encode_item(item))

    async def _xadd(self, items: list[bytes]) -> None:
        entries = [
            b"[" + b",".join(items[i : i + MAX_BATCH]) + b"]"
            for i in range(0, len(items), MAX_BATCH)
        ]
        if len(entries) == 1:
            if not await self._xadd_on_line(entries[0]):
                await self.redis.xadd(self.stream, {"items": entries[0]})
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.xadd(self.stream, {"items": entry})
            await pipe.execute()

    async def _xadd_on_line(self, entry: bytes) -> bool:
        """XADD on a connection of the puts' own (one writer at a time: `GroupCommit`), sent
        and read straight through it: the client's command machinery (pool, retry, response
        callbacks) costs more than the round trip. False when that connection failed in any
        way: it is dropped, and the caller writes through the client, with its retries and
        reconnects. (An XADD whose reply was lost with its connection may have been added;
        written again, as the client's own retry would write it again.)"""
        line = self._line
        try:
            if line is None:
                pool = self.redis.connection_pool
                line = self._line = await pool.get_connection()  # type: ignore[no-untyped-call]
            await line.send_packed_command(
                line.pack_command("XADD", self.stream, "*", "items", entry), check_health=False
            )
            await line.read_response()
        except BaseException as exc:
            self._line = None
            if line is not None:
                await self._drop_line(line)
            if not isinstance(exc, Exception):  # cancelled: the write's fate is unknown
                raise
            log.debug("queue: XADD on the puts' connection failed (%s); through the client", exc)
            return False
        return True

    async def _drop_line(self, line: AbstractConnection) -> None:
        with contextlib.suppress(Exception):
            await line.disconnect(nowait=True)
        await self.redis.connection_pool.release(line)

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
        return Backlog(items, max(0.0, (now_ms - id_ms(oldest)) / 1000) if oldest else None)

    async def _waiting(self) -> tuple[int, str | None] | None:
        """(entries waiting, the oldest one's id), or None without a stream."""
        length = int(await self.redis.xlen(self.stream))
        if length == 0:
            return None
        last = await self._last_delivered()
        if last is None:  # no group (yet, or lost in a restart): everything waits
            first = await self.redis.xrange(self.stream, count=1)
            return length, as_text(first[0][0]) if first else None
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
            start = "(" + as_text(page[-1][0])
        undelivered = max(0, length - behind)
        first_new: Any = await self.redis.xrange(self.stream, "(" + last, "+", count=1) or []
        candidates = [as_text(summary["min"])] if pending and summary.get("min") else []
        if first_new:
            candidates.append(as_text(first_new[0][0]))
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
            if as_text(g.get("name")) == self.group:
                return as_text(g.get("last-delivered-id"))
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
        got = {as_text(i) for i, f in claimed if f is not None}
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
            items, unreadable = entry_items(fields)
            if unreadable:
                await self._dead_letter(as_text(msg_id), unreadable)
            if chunk and size + len(items) > MAX_BATCH:
                await self._finish(handler, chunk)
                chunk, size = [], 0
            chunk.append((as_text(msg_id), items))
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
        line, self._line = self._line, None
        if line is not None:
            await self._drop_line(line)
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
