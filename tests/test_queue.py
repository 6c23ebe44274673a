"""The event queues on their own: batches handed to intake, acknowledgement, coalesced puts."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from crm.config import CrmConfig
from crm.db import Database
from crm.facade import Crm
from crm.queue import (
    DONE,
    MAX_BATCH,
    InProcessQueue,
    Outcome,
    QueueItem,
    RawInput,
    RedisSeen,
    RedisStreamQueue,
)
from matching.event import InboundEvent
from tests.conftest import REDIS_URL, make_event


@pytest.fixture
async def redis_queue() -> AsyncIterator[RedisStreamQueue]:
    redis = Redis.from_url(REDIS_URL)
    queue = RedisStreamQueue(redis, stream=f"test:q:{uuid.uuid4().hex[:8]}", group="g")
    await queue.ensure_group()
    yield queue
    await redis.delete(queue.stream, queue.dead_letters, queue.failures)
    await redis.aclose()


FAILED = Outcome("failed", "ValueError: always fails")


def _name(item: QueueItem) -> str:
    return item.external_id if isinstance(item, InboundEvent) else str(item.doc["id"])


class Recorder:
    """A handler that remembers its batches and fails the events it is told to."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.items: list[QueueItem] = []
        self.fail = fail or set()

    async def __call__(self, items: list[QueueItem]) -> list[Outcome]:
        self.batches.append([_name(x) for x in items])
        self.items += items
        return [FAILED if _name(x) in self.fail else DONE for x in items]

    @property
    def seen(self) -> list[str]:
        return [x for batch in self.batches for x in batch]


async def _run_until(queue: RedisStreamQueue, handler: Recorder, n: int) -> None:
    """Run the queue's consumer until the handler has seen n events (or 5 s)."""
    stop = asyncio.Event()
    task = asyncio.create_task(queue.run(handler, stop))
    for _ in range(100):
        if len(handler.seen) >= n:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task


async def test_in_process_queue_hands_over_what_is_waiting_as_batches() -> None:
    queue = InProcessQueue()
    events = [make_event(external_id=f"e{i}") for i in range(MAX_BATCH + 30)]
    for e in events:
        await queue.put(e)
    handler = Recorder()
    stop = asyncio.Event()
    stop.set()  # drain what is queued, then return
    await queue.run(handler, stop)
    assert handler.seen == [e.external_id for e in events]  # all of them, in order
    assert [len(b) for b in handler.batches] == [MAX_BATCH, 30]


async def _trickle(queue: InProcessQueue, count: int, every: float) -> Recorder:
    """Put `count` events one at a time, `every` seconds apart, while the queue runs; the
    handler's batches once all are done."""
    handler = Recorder()
    stop = asyncio.Event()
    task = asyncio.create_task(queue.run(handler, stop))
    for i in range(count):
        await queue.put(make_event(external_id=f"t{i}"))
        await asyncio.sleep(every)
    await asyncio.wait_for(queue.join(), 5)
    stop.set()
    await task
    assert handler.seen == [f"t{i}" for i in range(count)]
    return handler


async def test_under_load_the_lingering_queue_takes_fewer_larger_batches() -> None:
    eager = await _trickle(InProcessQueue(), 60, 0.005)
    lingering = await _trickle(InProcessQueue(linger=0.1), 60, 0.005)
    # Without lingering each event is taken as it comes; with it, batches start at most every
    # 0.1 s over the puts' 0.3 s or more (a slow machine stretches them: a generous bound).
    assert len(eager.batches) > 30
    assert len(lingering.batches) <= max(8, len(eager.batches) // 4)


async def test_the_lingering_queue_takes_a_lone_event_and_a_full_batch_at_once() -> None:
    queue = InProcessQueue(linger=1.0)
    handler = Recorder()
    stop = asyncio.Event()
    task = asyncio.create_task(queue.run(handler, stop))
    try:
        started = asyncio.get_running_loop().time()
        await queue.put(make_event(external_id="lone"))  # after a quiet spell: at once
        await asyncio.wait_for(queue.join(), 0.5)
        for i in range(MAX_BATCH):  # right after a batch, but a full one waits: at once
            await queue.put(make_event(external_id=f"f{i}"))
        await asyncio.wait_for(queue.join(), 0.5)
        assert asyncio.get_running_loop().time() - started < 0.9
        assert [len(b) for b in handler.batches] == [1, MAX_BATCH]
    finally:
        stop.set()
        await task


async def test_redis_puts_made_together_all_arrive_in_order(
    redis_queue: RedisStreamQueue,
) -> None:
    events = [make_event(external_id=f"p{i}") for i in range(250)]
    await asyncio.gather(*(redis_queue.put(e) for e in events))
    # Puts made together share entries of up to MAX_BATCH (one XADD each, in one round
    # trip), the first one too: the write starts once the loop has run what was ready.
    assert await redis_queue.redis.xlen(redis_queue.stream) == 3
    handler = Recorder()
    await _run_until(redis_queue, handler, 250)
    assert handler.seen == [e.external_id for e in events]
    assert max(len(b) for b in handler.batches) > 1  # read in batches, not one by one


async def test_a_redis_put_is_done_only_once_its_entry_is_in_the_stream(
    redis_queue: RedisStreamQueue,
) -> None:
    # put() hands out the group commit's future itself (no coroutine around it): it is done
    # when, and only when, the XADD that carries the item has returned.
    put = redis_queue.put(make_event(external_id="f1"))
    assert not put.done()
    assert await redis_queue.redis.xlen(redis_queue.stream) == 0
    await put
    assert await redis_queue.redis.xlen(redis_queue.stream) == 1
    # A write that fails fails the put, and the next put goes on.
    broken = RedisStreamQueue(Redis.from_url("redis://127.0.0.1:1/0"), stream="test:q:x")
    with pytest.raises(RedisConnectionError):
        await broken.put(make_event(external_id="f2"))
    await broken.close()
    await redis_queue.put(make_event(external_id="f3"))
    assert await redis_queue.redis.xlen(redis_queue.stream) == 2


async def test_redis_queue_acknowledges_only_what_the_handler_finished(
    redis_queue: RedisStreamQueue,
) -> None:
    for i in range(5):
        await redis_queue.put(make_event(external_id=f"a{i}"))
    handler = Recorder(fail={"a2"})
    await _run_until(redis_queue, handler, 5)
    pending = await redis_queue.redis.xpending(redis_queue.stream, redis_queue.group)
    assert pending["pending"] == 1  # the failed event waits to be delivered again


async def test_raw_inputs_and_events_travel_together_in_order(
    redis_queue: RedisStreamQueue,
) -> None:
    raws = [
        # As a webhook queues it: the body as received (spacing, unicode escapes and all) …
        RawInput(
            "call.generic", 1700000000.25, {"id": "r0", "n": "é"}, b'{ "id":"r0","n":"\\u00e9"}'
        ),
        # … or a document the queue encodes itself.
        RawInput("call.generic", 1700000001.5, {"id": "r1", "deep": [1, {"x": None}]}),
    ]
    items: list[QueueItem] = [raws[0], make_event(external_id="e0"), raws[1]]
    await asyncio.gather(*(redis_queue.put(x) for x in items))
    handler = Recorder()
    await _run_until(redis_queue, handler, 3)
    assert handler.seen == ["r0", "e0", "r1"]
    got = [x for x in handler.items if isinstance(x, RawInput)]
    assert [(x.kind, x.received_at, x.doc) for x in got] == [
        (x.kind, x.received_at, x.doc) for x in raws
    ]
    assert handler.items[1] == items[1]


async def test_an_entry_is_acknowledged_when_all_its_items_are_done(
    redis_queue: RedisStreamQueue,
) -> None:
    # A put alone is its own entry; four made together share one.
    await redis_queue.put(make_event(external_id="s0"))
    await asyncio.gather(*(redis_queue.put(make_event(external_id=f"s{i}")) for i in range(1, 5)))
    assert await redis_queue.redis.xlen(redis_queue.stream) == 2
    handler = Recorder(fail={"s3"})
    await _run_until(redis_queue, handler, 5)
    pending = await redis_queue.redis.xpending(redis_queue.stream, redis_queue.group)
    assert pending["pending"] == 1  # the shared entry waits; s1, s2, s4 come again with s3
    # Redelivered to a consumer that now succeeds, all four come again and it is done.
    retry = RedisStreamQueue(
        redis_queue.redis, stream=redis_queue.stream, group=redis_queue.group, claim_idle_ms=0
    )
    again = Recorder()
    await _run_until(retry, again, 4)
    assert again.seen == ["s1", "s2", "s3", "s4"]
    pending = await redis_queue.redis.xpending(redis_queue.stream, redis_queue.group)
    assert pending["pending"] == 0


async def test_older_entries_are_read_and_unreadable_items_are_set_aside(
    redis_queue: RedisStreamQueue,
) -> None:
    redis, stream = redis_queue.redis, redis_queue.stream
    old = make_event(external_id="old")
    await redis.xadd(stream, {"event": json.dumps(old.to_json())})  # one event per entry
    good = json.dumps({"event": make_event(external_id="ok").to_json()})
    await redis.xadd(stream, {"items": f'[{{"raw": "x"}}, 7, {good}]'})
    await redis.xadd(stream, {"items": "not json"})
    handler = Recorder()
    await _run_until(redis_queue, handler, 2)
    await asyncio.sleep(0.1)
    assert handler.seen == ["old", "ok"]
    pending = await redis.xpending(stream, redis_queue.group)
    assert pending["pending"] == 0  # nothing unreadable is left to come back forever
    # … and nothing is lost either: what could not be read waits in the dead-letter stream.
    dead = await redis.xrange(redis_queue.dead_letters)
    assert [json.loads(f[b"data"]) for _, f in dead] == [{"raw": "x"}, 7, {"items": "not json"}]


async def test_the_seen_cache_answers_duplicates_and_the_database_stays_the_truth(
    db: Database,
) -> None:
    redis = Redis.from_url(REDIS_URL)
    seen = RedisSeen(redis, prefix=f"test:seen:{uuid.uuid4().hex[:8]}:")
    crm = Crm(db, CrmConfig(), seen=seen)
    await crm.prepare()
    try:
        first = make_event(phones=("+49 30 8800001",))
        r1 = await crm.intake.process(first)
        # Committed events are marked in the cache (a week), so a redelivery skips the work.
        assert await redis.exists(f"{seen.prefix}call:{first.external_id}")
        again = await crm.intake.process_many([first, first])
        assert [getattr(r, "outcome", r) for r in again] == ["duplicate", "duplicate"]
        assert {getattr(r, "event_log_id", None) for r in again} == {r1.event_log_id}
        # The cache claims an event the database never saw (say, a restored backup): the
        # event is processed, not lost.
        lost = make_event(phones=("+49 30 8800002",))
        await seen.mark([f"{lost.channel.value}:{lost.external_id}"])
        assert (await crm.intake.process(lost)).outcome == "new_lead"
    finally:
        keys = [k async for k in redis.scan_iter(match=seen.prefix + "*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
