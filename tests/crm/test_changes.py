"""The change feed: committed writes reach subscribers, in process and across processes."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from crm.changes import Change, LocalFeed, Missed, RedisFeed, merge
from crm.dto import Actor
from crm.facade import Crm
from crm.models import Company, utcnow
from crm.queue import RedisStreamQueue
from crm.services.builders import company_row
from crm.services.leads import LeadInput
from crm.services.records import ContactInput
from tests.conftest import REDIS_URL, make_event, worker_process


async def _next(it: AsyncIterator[Change | Missed], timeout: float = 20) -> Change | Missed:
    return await asyncio.wait_for(anext(it), timeout)


async def _until(
    it: AsyncIterator[Change | Missed], kind: str, action: str, timeout: float = 30
) -> Change:
    async with asyncio.timeout(timeout):
        while True:
            got = await anext(it)
            if isinstance(got, Change) and (got.kind, got.action) == (kind, action):
                return got


async def test_service_writes_reach_a_subscriber_after_commit(crm: Crm) -> None:
    rita = await crm.reps.add("Rita")
    feed = crm.changes.subscribe()
    lead = await crm.leads.create(LeadInput(title="Inquiry", phones=("+4930111",)))
    got = await _next(feed)
    # The numbers whose caller answers it may alter: the lead's own (it has no client).
    assert got == Change("lead", lead.id, "created", None, got.at, (), None, ("+4930111",))
    await crm.leads.take(lead.id, Actor(rita.id, "rep"))
    taken = await _next(feed)
    assert isinstance(taken, Change) and (taken.kind, taken.id, taken.action) == (
        "lead",
        lead.id,
        "changed",
    )
    assert taken.actor_id == rita.id and taken.owner_id == rita.id
    assert "responsible_id" in taken.fields
    note = await crm.activities.comment("lead", lead.id, "called back", Actor(rita.id, "rep"))
    got = await _until(feed, "activity", "created")
    assert got.id == note.id and got.actor_id == rita.id


async def _drain(it: AsyncIterator[Change | Missed]) -> set[tuple[str, int, str]]:
    """What has arrived so far, as (kind, id, action)."""
    got: set[tuple[str, int, str]] = set()
    while True:
        try:
            item = await asyncio.wait_for(anext(it), 0.2)
        except TimeoutError:
            return got
        assert isinstance(item, Change)
        got.add((item.kind, item.id, item.action))


async def test_convert_stage_reminder_and_record_edits_publish(crm: Crm) -> None:
    lead = await crm.leads.create(LeadInput(title="Big order", phones=("+4930222",)))
    feed = crm.changes.subscribe()
    done = await crm.leads.convert(lead.id)
    assert done.deal is not None and done.contact_id is not None
    got = await _drain(feed)
    assert {
        ("lead", lead.id, "changed"),
        ("contact", done.contact_id, "created"),
        ("deal", done.deal.id, "created"),
    } <= got
    await crm.deals.move(done.deal.id, "NEGOTIATION")
    await crm.records.update_contact(
        done.contact_id, ContactInput(name="Eva", phones=("+4930333",))
    )
    reminder = await crm.activities.schedule(
        "deal", done.deal.id, due_at=datetime.now(UTC), subject="call back"
    )
    got = await _drain(feed)
    assert {
        ("deal", done.deal.id, "changed"),
        ("contact", done.contact_id, "changed"),
        ("activity", reminder.id, "created"),
    } <= got


async def test_intake_publishes_what_it_created(crm: Crm) -> None:
    feed = crm.changes.subscribe()
    result = await crm.intake.process(make_event(phones=("+49 30 1234567",), text="hello"))
    lead = await _until(feed, "lead", "created")
    assert lead.id == result.lead_id and lead.actor_id is None
    activity = await _until(feed, "activity", "created")
    assert activity.id == result.activity_id


async def test_a_failed_write_publishes_nothing(crm: Crm) -> None:
    feed = crm.changes.subscribe()
    with pytest.raises(RuntimeError):
        async with crm.db.transaction() as s:
            s.add(Company(**company_row(title="x", responsible_id=None, now=utcnow())))
            await s.flush()
            raise RuntimeError("rolled back")
    lead = await crm.leads.create(LeadInput(title="after"))
    got = await _next(feed)
    assert isinstance(got, Change) and (got.kind, got.id) == ("lead", lead.id)


async def test_a_slow_subscriber_is_told_it_missed_changes_and_never_blocks() -> None:
    feed = LocalFeed(queue_size=3)
    slow = feed.subscribe()
    now = datetime.now(UTC)
    feed.publish([Change("lead", i, "changed", None, now) for i in range(10)])  # never waits
    first = await _next(slow)
    assert first == Missed(7)
    rest = [await _next(slow) for _ in range(3)]
    assert [c.id for c in rest if isinstance(c, Change)] == [7, 8, 9]


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_change_committed_by_a_worker_process_reaches_this_process(
    crm: Crm, stream_name: str
) -> None:
    stream = stream_name
    redis = Redis.from_url(REDIS_URL)
    feed = RedisFeed(redis, channel=f"{stream}:changes")  # what `serve` uses for this stream
    await feed.start()
    changes = feed.subscribe()
    worker = await worker_process(crm.db, stream)
    try:
        queue = RedisStreamQueue(redis, stream=stream, group="g")
        await queue.ensure_group()
        await queue.put(make_event(phones=("+49 30 7654321",), text="from the worker"))
        lead = await _until(changes, "lead", "created", timeout=60)
        assert (await crm.leads.get(lead.id)).title
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 30)
        await feed.close()
        await redis.aclose()


async def test_a_quiet_feed_stays_subscribed_past_the_clients_read_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """redis-py 8 reads with a 5 s socket timeout by default (blocking commands fail past it):
    a pub/sub channel quiet for longer is no outage — no subscriber is told it missed changes
    and the next change still arrives."""
    redis = Redis.from_url(REDIS_URL)
    assert redis.connection_pool.connection_kwargs.get("socket_timeout") in (None, 5)
    feed = RedisFeed(redis, channel=f"test:quiet:{uuid.uuid4().hex[:8]}")
    await feed.start()
    other = RedisFeed(Redis.from_url(REDIS_URL), channel=feed.channel)  # another process
    await other.start()
    try:
        changes = feed.subscribe()
        await asyncio.sleep(7)  # longer than redis-py's default read timeout
        other.publish([Change("lead", 41, "created", None, utcnow())])
        item = await _next(changes, timeout=10)  # not Missed: nothing was lost
        assert isinstance(item, Change) and (item.kind, item.id) == ("lead", 41), item
        assert not [r for r in caplog.records if "change feed" in r.getMessage()]
    finally:
        await other.close()
        await other.redis.aclose()
        await feed.close()
        await redis.aclose()


async def test_redis_down_fails_no_write_and_local_subscribers_still_hear(
    crm: Crm, caplog: pytest.LogCaptureFixture
) -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    feed = RedisFeed(redis, channel="test:nowhere")
    await feed.start()  # returns although it cannot subscribe
    crm.db.feed = feed
    try:
        changes = feed.subscribe()
        leads = [await crm.leads.create(LeadInput(title=f"n{i}")) for i in range(3)]
        got = [await _until(changes, "lead", "created") for _ in leads]
        assert [c.id for c in got] == [lead.id for lead in leads]
        await asyncio.sleep(0.3)  # the sender met the outage
        failures = [r for r in caplog.records if "change feed" in r.getMessage()]
        assert 1 <= len(failures) <= 2  # publishing and listening, once each a minute
    finally:
        await feed.close()
        await redis.aclose()


def test_numbers_cross_processes_and_a_message_without_them_means_unknown() -> None:
    at = datetime.now(UTC)
    change = Change("contact", 7, "changed", None, at, ("name",), 3, ("+4930111", "+4930222"))
    assert Change.from_json(change.to_json()) == change
    unknown = Change("contact", 7, "changed", None, at, ("name",), 3)
    assert Change.from_json(unknown.to_json()) == unknown
    old = {k: v for k, v in change.to_json().items() if k != "numbers"}  # an older process
    assert Change.from_json(old).numbers is None


def test_merged_changes_unite_their_numbers_and_unknown_wins() -> None:
    at = datetime.now(UTC)
    created = Change("contact", 7, "created", None, at, numbers=("+4930111",))
    phone = Change("contact", 7, "changed", None, at, ("phones",), numbers=("+4930222",))
    [both] = merge([created, phone])
    assert both.action == "created" and both.numbers == ("+4930111", "+4930222")
    [unknown] = merge([created, Change("contact", 7, "changed", None, at, ("name",))])
    assert unknown.numbers is None


def test_with_numbers_keeps_every_other_field() -> None:
    import dataclasses

    at = datetime(2026, 1, 2, tzinfo=UTC)
    change = Change("lead", 7, "changed", 3, at, ("title", "status"), 5, None)
    assert change.with_numbers(("+4930123",)) == dataclasses.replace(change, numbers=("+4930123",))
    # A value of its own in every field, whatever fields `Change` has (one added later too).
    values: dict[str, Any] = {f.name: object() for f in dataclasses.fields(Change)}
    copied = Change(**values).with_numbers(("+4930123",))
    assert copied.numbers == ("+4930123",)
    assert {k: getattr(copied, k) for k in values if k != "numbers"} == {
        k: v for k, v in values.items() if k != "numbers"
    }
