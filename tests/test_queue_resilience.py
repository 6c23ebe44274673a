"""The Redis queue when things go wrong: Redis restarts (with and without persistence), an item
that always fails, intake down for a while, and the stream's length over a long run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import func, select

from crm.db import Database
from crm.facade import Crm
from crm.models import InboundEventLog, Lead
from crm.queue import (
    DONE,
    Handler,
    Outcome,
    QueueItem,
    RawInput,
    RedisStreamQueue,
    RetryPolicy,
    decode_item,
    outcome_of,
)
from leadbot.app import Service
from matching.event import InboundEvent
from tests.conftest import REDIS_URL, leadbot_run, make_event, service_settings
from tests.servers import OwnRedis, free_port, wait_until

FAST = RetryPolicy(max_failures=3, first_delay=0.05, max_delay=0.2)


def _name(item: QueueItem) -> str:
    assert isinstance(item, InboundEvent)
    return item.external_id


class Recorder:
    """Counts what it was handed; the names in `fail` always fail (not an outage)."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.fail = fail or set()

    async def __call__(self, items: list[QueueItem]) -> list[Outcome]:
        self.calls.update(_name(x) for x in items)
        return [
            Outcome("failed", "ValueError: refused") if _name(x) in self.fail else DONE
            for x in items
        ]


@contextlib.asynccontextmanager
async def consuming(queue: RedisStreamQueue, handler: Handler) -> AsyncIterator[asyncio.Task[None]]:
    """`queue.run(handler)` as a task for the block; stopped (and awaited) on the way out."""
    stop = asyncio.Event()
    task = asyncio.create_task(queue.run(handler, stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def shared() -> AsyncIterator[Callable[..., RedisStreamQueue]]:
    """Queues on unique streams of the shared Redis; their keys removed afterwards."""
    redis = Redis.from_url(REDIS_URL)
    made: list[RedisStreamQueue] = []

    def make(stream: str | None = None, **kw: object) -> RedisStreamQueue:
        name = stream or f"test:res:{uuid.uuid4().hex[:8]}"
        queue = RedisStreamQueue(redis, stream=name, group="g", **kw)  # type: ignore[arg-type]
        made.append(queue)
        return queue

    yield make
    for q in made:
        await redis.delete(q.stream, q.dead_letters, q.failures)
    await redis.aclose()


async def _put_until_accepted(queue: RedisStreamQueue, item: QueueItem) -> None:
    """What a sender does with a 503: try again shortly."""
    while True:
        try:
            await queue.put(item)
            return
        except RedisConnectionError:
            await asyncio.sleep(0.1)


def _messages(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


@pytest.mark.parametrize("backend", ["postgres"])
async def test_the_consumer_goes_on_over_a_redis_restart_with_aof(
    crm: Crm, own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="crm.queue")
    server = await own_redis(appendonly=True)
    queue = RedisStreamQueue(Redis.from_url(server.url), stream="events", group="g")
    await queue.open()

    async def intake(items: list[QueueItem]) -> list[Outcome]:
        results = await crm.intake.process_many([x for x in items if isinstance(x, InboundEvent)])
        return [outcome_of(r) if isinstance(r, Exception) else DONE for r in results]

    total = 300
    events = [make_event(external_id=f"r-{i}", phones=(f"+49 30 6{i:06d}",)) for i in range(total)]
    try:
        async with consuming(queue, intake) as consumer:
            for k, event in enumerate(events):
                if k == 100:  # Redis goes away mid-stream and comes back 1.5 s later
                    await server.stop()
                    restart = asyncio.create_task(asyncio.sleep(1.5))
                    restart.add_done_callback(lambda _: asyncio.ensure_future(server.start()))
                await _put_until_accepted(queue, event)
                if k % 10 == 0:
                    await asyncio.sleep(0.02)

            async def all_in() -> bool:
                async with crm.db.transaction() as s:
                    n = await s.scalar(select(func.count()).select_from(InboundEventLog))
                return n == total

            await wait_until(all_in, 90)
            assert not consumer.done()  # the same task, never restarted
            async with crm.db.transaction() as s:
                assert await s.scalar(select(func.count()).select_from(Lead)) == total
            # Everything acknowledged and deleted, also what was done just as Redis went away.
            await wait_until(lambda: _zero(queue.redis.xlen("events")), 60)
    finally:
        await queue.close()
    # One line when the outage began and one when it ended, however many retries between.
    assert len(_messages(caplog, "Redis unreachable")) == 1
    assert len(_messages(caplog, "Redis reachable again")) == 1
    assert not _messages(caplog, "consumer group")  # AOF kept the group


async def _zero(length: Awaitable[int]) -> bool:
    return await length == 0


async def test_a_restart_without_persistence_recreates_the_group_and_says_so(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="crm.queue")
    server = await own_redis(appendonly=False)
    queue = RedisStreamQueue(Redis.from_url(server.url), stream="events", group="g")
    await queue.open()
    handler = Recorder()
    try:
        async with consuming(queue, handler) as consumer:
            for i in range(5):
                await queue.put(make_event(external_id=f"before-{i}"))
            await wait_until(lambda: _seen(handler, 5))
            await server.stop()
            await asyncio.sleep(0.5)
            await server.start()  # empty: the stream and its group are gone
            for i in range(5):
                await _put_until_accepted(queue, make_event(external_id=f"after-{i}"))
            await wait_until(lambda: _seen(handler, 10))
            assert {f"after-{i}" for i in range(5)} <= set(handler.calls)
            assert not consumer.done()
    finally:
        await queue.close()
    [loud] = _messages(caplog, "may have been lost")
    assert loud.levelno == logging.ERROR
    assert "appendonly yes" in loud.getMessage()


async def _seen(handler: Recorder, n: int) -> bool:
    return len(handler.calls) >= n


async def test_an_item_that_always_fails_ends_in_the_dead_letters_and_others_go_on(
    shared: Callable[..., RedisStreamQueue],
) -> None:
    queue = shared(policy=FAST)
    await queue.put(make_event(external_id="first"))
    # Put together: one entry holds both, the poison and a good one.
    await asyncio.gather(*(queue.put(make_event(external_id=n)) for n in ("bad", "next")))
    await queue.put(make_event(external_id="last"))
    handler = Recorder(fail={"bad"})
    async with consuming(queue, handler):
        await wait_until(lambda: _dead_count(queue, 1))
        await wait_until(lambda: _zero(queue.redis.xlen(queue.stream)))
    assert handler.calls["bad"] == FAST.max_failures
    assert handler.calls["first"] == handler.calls["last"] == 1
    [(_, fields)] = await queue.redis.xrange(queue.dead_letters)
    item = decode_item(json.loads(fields[b"data"]))
    assert isinstance(item, InboundEvent) and item.external_id == "bad"
    assert fields[b"reason"] == b"ValueError: refused"
    assert int(fields[b"failures"]) == FAST.max_failures
    assert (await queue.redis.xpending(queue.stream, queue.group))["pending"] == 0
    assert not await queue.redis.exists(queue.failures)  # no failure record lingers
    assert queue.dead_total == 1


async def _dead_count(queue: RedisStreamQueue, n: int) -> bool:
    return int(await queue.redis.xlen(queue.dead_letters)) >= n


async def test_failures_are_counted_across_consumers(
    shared: Callable[..., RedisStreamQueue],
) -> None:
    first = shared(policy=RetryPolicy(max_failures=3, first_delay=0.05, max_delay=0.05))
    await first.put(make_event(external_id="bad"))
    a = Recorder(fail={"bad"})
    async with consuming(first, a):
        await wait_until(lambda: _called(a, "bad", 2))
    assert a.calls["bad"] == 2  # the first consumer stopped (died) after two failures
    # Another consumer (another process) takes the entry over once it is idle; its one
    # failure is the third: given up.
    second = shared(
        first.stream,
        consumer="other",
        claim_idle_ms=200,
        policy=RetryPolicy(max_failures=3, first_delay=30, max_delay=30),
    )
    b = Recorder(fail={"bad"})
    async with consuming(second, b):
        await wait_until(lambda: _dead_count(second, 1))
    assert b.calls["bad"] == 1


async def _called(handler: Recorder, name: str, n: int) -> bool:
    return handler.calls[name] >= n


async def test_an_outage_is_retried_until_it_ends_and_never_given_up(
    shared: Callable[..., RedisStreamQueue], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="crm.queue")
    closed = free_port()  # nothing listens there: a real connection refusal each time
    tries: Counter[str] = Counter()
    database_up = asyncio.Event()

    async def flaky(items: list[QueueItem]) -> list[Outcome]:
        tries.update(_name(x) for x in items)
        if not database_up.is_set():
            try:
                await asyncpg.connect(host="127.0.0.1", port=closed, user="x", database="x")
            except OSError as exc:
                return [outcome_of(exc)] * len(items)
        return [DONE] * len(items)

    queue = shared(policy=FAST)
    for i in range(3):
        await queue.put(make_event(external_id=f"o-{i}"))
    async with consuming(queue, flaky):
        await wait_until(lambda: _tried(tries, "o-0", 3 * FAST.max_failures))
        database_up.set()
        await wait_until(lambda: _zero(queue.redis.xlen(queue.stream)))
    assert set(tries) == {"o-0", "o-1", "o-2"}
    assert await queue.redis.xlen(queue.dead_letters) == 0
    assert queue.dead_total == 0
    assert len(_messages(caplog, "intake reports an outage")) == 1
    assert len(_messages(caplog, "intake works again")) == 1


async def _tried(tries: Counter[str], name: str, n: int) -> bool:
    return tries[name] >= n


async def test_backlog_is_right_after_a_restart(
    own_redis: OwnRedis,
) -> None:
    server = await own_redis(appendonly=True)
    slow = RetryPolicy(max_failures=5, first_delay=600, max_delay=600)
    queue = RedisStreamQueue(Redis.from_url(server.url), stream="events", group="g", policy=slow)
    await queue.open()
    assert await queue.backlog() == (await queue.backlog()).__class__(0, None)
    await queue.put(make_event(external_id="f1"))
    await asyncio.sleep(1.0)  # the oldest waits at least this long
    for name in ("ok", "f2"):
        await queue.put(make_event(external_id=name))
    handler = Recorder(fail={"f1", "f2"})
    async with consuming(queue, handler):
        await wait_until(lambda: _seen(handler, 3))
    for i in range(4):
        await queue.put(make_event(external_id=f"new-{i}"))  # not delivered yet
    before = await queue.backlog()
    assert before.items == 2 + 4  # two pending (failed), four undelivered; "ok" is gone
    await server.stop()
    await server.start()
    after = await queue.backlog()  # a new connection, after the restart
    assert after.items == 6
    assert after.oldest_age is not None and 1.0 <= after.oldest_age < 60
    assert await queue.depth() == 6
    await queue.close()


async def test_the_stream_stays_short_over_a_long_run(
    shared: Callable[..., RedisStreamQueue],
) -> None:
    queue = shared()
    await queue.ensure_group()
    handler = Recorder()
    lengths: list[int] = []
    async with consuming(queue, handler):
        for r in range(40):  # 4,000 events, a batch of 100 concurrent puts at a time
            await asyncio.gather(
                *(queue.put(make_event(external_id=f"l-{r}-{i}")) for i in range(100))
            )
            lengths.append(int(await queue.redis.xlen(queue.stream)))
            await wait_until(lambda r=r: _seen(handler, 100 * (r + 1)))  # type: ignore[misc]
        await wait_until(lambda: _zero(queue.redis.xlen(queue.stream)))
    assert len(handler.calls) == 4000
    # At most the batch just put waits (a few entries); nothing of the 4,000 done lingers.
    assert max(lengths) <= 5


async def test_acknowledged_entries_an_older_version_left_are_trimmed(
    shared: Callable[..., RedisStreamQueue],
) -> None:
    queue = shared()
    await queue.ensure_group()
    redis = queue.redis
    for i in range(20):
        await queue.put(make_event(external_id=f"old-{i}"))
    # As a version that acknowledged without deleting left them.
    read = await redis.xreadgroup(queue.group, "old", {queue.stream: ">"}, count=100)
    await redis.xack(queue.stream, queue.group, *[i for i, _ in read[0][1]])
    await queue.put(make_event(external_id="fresh"))
    assert await redis.xlen(queue.stream) == 21
    handler = Recorder()
    async with consuming(queue, handler):
        await wait_until(lambda: _zero(redis.xlen(queue.stream)))
    assert set(handler.calls) == {"fresh"}


async def test_leadbot_dead_lists_retries_and_drops_redis_dead_letters(
    shared: Callable[..., RedisStreamQueue], tmp_path: Path
) -> None:
    queue = shared(policy=RetryPolicy(max_failures=1))
    for name in ("bad-1", "bad-2"):
        await queue.put(make_event(external_id=name))
    refuse = Recorder(fail={"bad-1", "bad-2"})
    async with consuming(queue, refuse):
        await wait_until(lambda: _dead_count(queue, 2))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}
    env.update(
        LEADBOT_DATABASE__URL=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
        LEADBOT_REDIS__URL=REDIS_URL,
        LEADBOT_REDIS__STREAM=queue.stream,
    )

    async def dead(*args: str) -> tuple[int, str, str]:
        return await leadbot_run("dead", *args, env=env)

    code, out, _ = await dead("list")
    assert code == 0
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    assert [(r[2], r[3], r[4]) for r in rows] == [
        ("1", "call:bad-1", "ValueError: refused"),
        ("1", "call:bad-2", "ValueError: refused"),
    ]
    code, out, _ = await dead("retry", rows[0][0])
    assert code == 0, out
    code, out, _ = await dead("drop", rows[1][0])
    assert code == 0, out
    assert await queue.redis.xlen(queue.dead_letters) == 0
    # The one put back is in the live stream: a consumer takes it.
    accept = Recorder()
    async with consuming(queue, accept):
        await wait_until(lambda: _seen(accept, 1))
    assert accept.calls == Counter({"bad-1": 1})
    code, _, err = await dead("retry", rows[1][0])
    assert code == 2 and f"no dead letter {rows[1][0]}" in err


class CuttableProxy:
    """A TCP proxy in front of the shared PostgreSQL: `cut()` refuses new connections and
    drops open ones (what the service sees of a database that went down), `mend()` undoes it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def mend(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, up_writer}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        self._open -= {writer, up_writer}


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_database_outage_loses_nothing_and_gives_nothing_up(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator's case: PostgreSQL down for seconds under the in-process queue."""
    caplog.set_level(logging.WARNING, logger="crm.queue")
    assert db.url.port is not None
    proxy = CuttableProxy(db.url.port)
    await proxy.mend()
    settings = service_settings(
        db,
        queue={
            "journal_dir": str(tmp_path / "journal"),
            "max_failures": 2,
            "retry_delay": 0.1,
            "retry_max_delay": 0.5,
        },
    )
    proxied = db.url.set(port=proxy.port).render_as_string(hide_password=False)
    service = Service(
        settings.model_copy(
            update={"database": settings.database.model_copy(update={"url": proxied})}
        ),
        components=[],
    )
    await service.start()
    total = 300
    try:
        for i in range(total):
            if i == 100:
                await proxy.cut()
                mend = asyncio.get_running_loop().call_later(
                    3.0, lambda: asyncio.ensure_future(proxy.mend())
                )
            await service.submit(make_event(external_id=f"pg-{i}", phones=(f"+49 30 4{i:06d}",)))
            await asyncio.sleep(0.01)

        async def all_in() -> bool:
            async with db.transaction() as s:
                n = await s.scalar(select(func.count()).select_from(InboundEventLog))
            return n == total

        await wait_until(all_in, 120)
        mend.cancel()
    finally:
        await service.stop()
    async with db.transaction() as s:
        assert await s.scalar(select(func.count()).select_from(Lead)) == total
    assert service.queue.dead_waiting == 0
    assert service.metrics.dead_letters._value.get() == 0  # type: ignore[attr-defined]
    assert not list((tmp_path / "journal").glob("segment-*"))  # all done: nothing to replay
    # The outage was seen (and waited out) once, not an error per event and retry.
    assert len(_messages(caplog, "intake reports an outage")) == 1
    assert len(_messages(caplog, "intake works again")) == 1
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert noisy == []


# --- the puts' own connection -----------------------------------------------------------------


async def _send_until(
    queue: RedisStreamQueue, acked: list[str], stop: asyncio.Event, k: int
) -> None:
    """A sender: puts one item after the other; an item whose put returned is acknowledged
    (a 202), one whose put raised is not (a 503) and the sender goes on with the next."""
    i = 0
    while not stop.is_set():
        name = f"s{k}-{i}"
        i += 1
        try:
            await queue.put(RawInput("test", 1.0, {"id": name}))
        except (RedisError, OSError):
            await asyncio.sleep(0.05)
            continue
        acked.append(name)


async def _stream_entries(url: str, stream: str) -> list[bytes]:
    redis = Redis.from_url(url)
    try:
        return [fields[b"items"] for _, fields in await redis.xrange(stream)]
    finally:
        await redis.aclose()


def _names(entries: list[bytes]) -> Counter[str]:
    return Counter(item["doc"]["id"] for entry in entries for item in json.loads(entry))


async def _puts_over(
    queue: RedisStreamQueue, trouble: Callable[[], Awaitable[None]], rounds: int
) -> list[str]:
    acked: list[str] = []
    stop = asyncio.Event()
    senders = [asyncio.create_task(_send_until(queue, acked, stop, k)) for k in range(16)]
    try:
        for _ in range(rounds):
            await wait_until(lambda n=len(acked): _more(acked, n + 100), 60)
            assert queue._line is not None  # the puts go through their own connection
            await trouble()
        await wait_until(lambda n=len(acked): _more(acked, n + 100), 60)
    finally:
        stop.set()
        await asyncio.gather(*senders)
    return acked


async def _more(acked: list[str], n: int) -> bool:
    return len(acked) >= n


async def test_puts_over_redis_crashes_lose_nothing_acknowledged(own_redis: OwnRedis) -> None:
    server = await own_redis(appendonly=True)
    queue = RedisStreamQueue(Redis.from_url(server.url), stream="events", group="g")
    await queue.open()

    async def crash() -> None:
        await server.kill()
        await asyncio.sleep(0.3)
        await server.start()

    try:
        acked = await _puts_over(queue, crash, 2)
    finally:
        await queue.close()
    await _nothing_acknowledged_lost(server.url, acked, faults=2)


async def _nothing_acknowledged_lost(url: str, acked: list[str], *, faults: int) -> None:
    """Every acknowledged item is in the stream; an entry is written again only after its
    reply was lost with its connection (what the client's own retry does): at most once per
    fault."""
    entries = await _stream_entries(url, "events")
    assert set(acked) <= set(_names(entries))
    assert sum(n - 1 for n in Counter(entries).values()) <= faults


async def test_puts_over_cut_connections_lose_nothing_acknowledged(own_redis: OwnRedis) -> None:
    server = await own_redis(appendonly=False)
    proxy = CuttableProxy(server.port)
    await proxy.mend()
    url = f"redis://127.0.0.1:{proxy.port}/0"
    queue = RedisStreamQueue(Redis.from_url(url), stream="events", group="g")
    await queue.open()

    async def cut() -> None:
        await proxy.cut()
        await asyncio.sleep(0.1)
        await proxy.mend()

    try:
        acked = await _puts_over(queue, cut, 3)
    finally:
        await queue.close()
        await proxy.cut()
    await _nothing_acknowledged_lost(server.url, acked, faults=3)


async def test_a_put_redis_refuses_raises_as_before_and_the_next_goes_through(
    own_redis: OwnRedis,
) -> None:
    server = await own_redis(appendonly=False)
    queue = RedisStreamQueue(Redis.from_url(server.url), stream="events", group="g")
    await queue.redis.set("events", "not a stream")
    try:
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await queue.put(RawInput("test", 1.0, {"id": "refused"}))
        await queue.redis.delete("events")
        await queue.open()
        await queue.put(RawInput("test", 1.0, {"id": "taken"}))
        assert queue._line is not None
        assert _names(await _stream_entries(server.url, "events")) == Counter({"taken": 1})
    finally:
        await queue.close()
