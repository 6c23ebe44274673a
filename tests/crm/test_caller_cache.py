"""The caller lookup's cache: answers kept in memory stay right because the change feed
clears them — for changes made by other processes too (Redis pub/sub) — and because they
expire; it is bounded, can be turned off, and is not trusted while the feed is down."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis
from sqlalchemy import select, text

from crm import affected
from crm.changes import Change, RedisFeed
from crm.config import CrmConfig
from crm.db import Database
from crm.facade import Crm
from crm.models import Communication
from crm.queue import RedisStreamQueue
from crm.services.callers import CacheSettings, CallerCache
from crm.services.leads import LeadInput
from crm.services.records import ContactInput
from crm.services.telephony import CallerInfo
from tests.conftest import REDIS_URL, make_event, worker_process

# Long enough that only the change feed can make an answer fresh within a test.
FOREVER = CacheSettings(size=1000, ttl=3600, negative_ttl=3600)


async def _until(
    crm: Crm, e164: str, ok: Callable[[CallerInfo | None], object], timeout: float = 5
) -> CallerInfo | None:
    """Look `e164` up until `ok(answer)` holds; the answer. Fails after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            info = await crm.callers.caller(e164)
            if ok(info):
                return info
            await asyncio.sleep(0.02)


@asynccontextmanager
async def _two_processes(crm: Crm, stream_name: str) -> AsyncIterator[Crm]:
    """This test's CRM on a Redis feed, and a second CRM on the same database with a feed of
    its own (its own origin): what it writes reaches the first only through Redis, as the
    writes of another process do."""
    redis = Redis.from_url(REDIS_URL)
    here = RedisFeed(redis, channel=f"{stream_name}:changes")
    await here.start()
    crm.db.feed = here
    crm.callers.configure_cache(FOREVER)
    db = Database(crm.db.url.render_as_string(hide_password=False))
    theirs = RedisFeed(redis, channel=f"{stream_name}:changes")
    await theirs.start()
    db.feed = theirs
    second = Crm(db, CrmConfig())
    try:
        yield second
    finally:
        await second.close()
        await theirs.close()
        await db.dispose()
        await crm.close()
        await here.close()
        await redis.aclose()


@pytest.fixture
async def other(crm: Crm, stream_name: str) -> AsyncIterator[Crm]:
    async with _two_processes(crm, stream_name) as second:
        yield second


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_caller_a_worker_process_creates_is_seen_by_the_next_lookup(
    crm: Crm, other: Crm, stream_name: str
) -> None:
    number = "+493076543210"
    assert await crm.callers.caller(number) is None  # cached: nobody (for an hour)
    assert await crm.callers.caller(number) is None
    assert crm.callers.cache is not None and crm.callers.cache.hits == 1
    worker = await worker_process(crm.db, stream_name)
    redis = Redis.from_url(REDIS_URL)
    try:
        queue = RedisStreamQueue(redis, stream=stream_name, group="g")
        await queue.ensure_group()
        await queue.put(make_event(phones=("+49 30 76543210",), text="hi"))
        info = await _until(crm, number, lambda i: i is not None, timeout=60)
        assert info is not None and info.lead_id is not None
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 30)
        await redis.aclose()


@pytest.mark.parametrize("backend", ["postgres"])
async def test_changes_in_another_process_reach_the_next_lookup(crm: Crm, other: Crm) -> None:
    anna = await other.records.create_contact(ContactInput(name="Anna", phones=("+4930200001",)))
    bert = await other.records.create_contact(ContactInput(name="Bert", phones=("+4930200002",)))
    info = await _until(crm, "+4930200001", lambda i: i is not None)
    assert info is not None and info.contact_name == "Anna"
    assert (await crm.callers.caller("+4930200002")) is not None

    # Renamed over there: the next lookups here say so, within the feed's delivery.
    started = time.monotonic()
    await other.records.update_contact(anna.id, ContactInput(name="Anna Neu"))
    info = await _until(crm, "+4930200001", lambda i: i and i.contact_name == "Anna Neu")
    assert time.monotonic() - started < 5

    # Anna's number moves to Bert, Bert's own is deleted (ORM writes, as any service's).
    async with other.db.transaction() as s:
        rows = {
            c.value: c
            for c in await s.scalars(select(Communication).where(Communication.kind == "phone"))
        }
        rows["+4930200001"].owner_id = bert.id
        await s.delete(rows["+4930200002"])
    info = await _until(crm, "+4930200001", lambda i: i and i.contact_id == bert.id)
    assert info is not None and info.contact_name == "Bert"
    assert await _until(crm, "+4930200002", lambda i: i is None) is None


async def test_answers_are_bounded_least_recently_used_first(crm: Crm) -> None:
    crm.callers.configure_cache(CacheSettings(size=3, ttl=3600, negative_ttl=3600))
    cache = crm.callers.cache
    assert cache is not None
    numbers = [f"+49302000{k:02d}" for k in range(5)]
    await crm.records.create_contact(ContactInput(name="Cleo", phones=(numbers[0],)))
    for number in numbers[:3]:
        await crm.callers.caller(number)
    await crm.callers.caller(numbers[0])  # used again: now the most recent
    for number in numbers[3:]:
        await crm.callers.caller(number)
    assert len(cache) == 3
    hits = cache.hits
    info = await crm.callers.caller(numbers[0])
    assert info is not None and info.contact_name == "Cleo" and cache.hits == hits + 1
    await crm.callers.caller(numbers[1])  # dropped: read again
    assert cache.hits == hits + 1
    await crm.close()


async def _bypass_rename(crm: Crm, name: str) -> None:
    """A write the change feed never hears of (raw SQL)."""
    async with crm.db.engine.begin() as conn:
        await conn.execute(text("UPDATE contacts SET name = :n"), {"n": name})


async def test_an_unnoticed_change_shows_once_the_answer_expires(crm: Crm) -> None:
    crm.callers.configure_cache(CacheSettings(size=10, ttl=0.3, negative_ttl=0.1))
    await crm.records.create_contact(ContactInput(name="Dora", phones=("+4930200100",)))
    assert (await crm.callers.caller("+4930200100") or CallerInfo("")).contact_name == "Dora"
    await _bypass_rename(crm, "Dora Neu")
    info = await crm.callers.caller("+4930200100")
    assert info is not None and info.contact_name == "Dora"  # cached: the bound is the TTL
    await asyncio.sleep(0.35)
    info = await crm.callers.caller("+4930200100")
    assert info is not None and info.contact_name == "Dora Neu"
    await crm.close()


async def test_nothing_is_cached_while_the_feed_is_not_live(crm: Crm) -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    feed = RedisFeed(redis, channel="test:nowhere")
    await feed.start()  # returns although it cannot subscribe
    crm.db.feed = feed
    crm.callers.configure_cache(FOREVER)
    try:
        assert not feed.live
        await crm.records.create_contact(ContactInput(name="Emil", phones=("+4930200200",)))
        assert (await crm.callers.caller("+4930200200") or CallerInfo("")).contact_name == "Emil"
        await _bypass_rename(crm, "Emil Neu")
        info = await crm.callers.caller("+4930200200")
        assert info is not None and info.contact_name == "Emil Neu"
        assert crm.callers.cache is not None and len(crm.callers.cache) == 0
    finally:
        await crm.close()
        await feed.close()
        await redis.aclose()


async def test_the_cache_can_be_turned_off(crm: Crm) -> None:
    crm.callers.configure_cache(None)
    await crm.records.create_contact(ContactInput(name="Fritz", phones=("+4930200300",)))
    assert (await crm.callers.caller("+4930200300") or CallerInfo("")).contact_name == "Fritz"
    await _bypass_rename(crm, "Fritz Neu")
    assert (await crm.callers.caller("+4930200300") or CallerInfo("")).contact_name == "Fritz Neu"
    await crm.close()


async def test_an_answer_read_across_a_change_is_not_kept(crm: Crm) -> None:
    cache = CallerCache(FOREVER)
    feed = crm.changes
    assert cache.get(feed, "+4930200400") is None
    generation = cache.generation
    # A change committed while the lookup's statement ran: its answer may predate it.
    await crm.records.create_contact(ContactInput(name="Gina", phones=("+4930200400",)))
    cache.put(feed, "+4930200400", None, generation)
    cache.put(feed, "+4930200401", None, generation)  # a number the change did not touch
    assert cache.get(feed, "+4930200400") is None and len(cache) == 1
    assert cache.get(feed, "+4930200401") == (None,)
    cache.put(feed, "+4930200400", None, cache.generation)
    assert cache.get(feed, "+4930200400") == (None,)
    cache.close()


# --- Only the answers a change can alter are dropped ---------------------------------------

ZED = "+4930300099"  # a caller no write below touches: their answer stays cached


@pytest.fixture(params=["same process", "other process"])
async def writer(request: pytest.FixtureRequest, crm: Crm, stream_name: str) -> AsyncIterator[Crm]:
    """Who writes while `crm` looks up: `crm` itself, or another process (on PostgreSQL,
    its changes reach `crm` through Redis)."""
    if request.param == "same process":
        crm.callers.configure_cache(FOREVER)
        yield crm
        await crm.close()
        return
    if crm.db.is_sqlite:
        pytest.skip("processes share a PostgreSQL database here")
    async with _two_processes(crm, stream_name) as second:
        yield second


async def _seen(crm: Crm, writer: Crm, *numbers: str) -> None:
    """Look each number up once, after Zed's answer is cached (a hit)."""
    cache = crm.callers.cache
    assert cache is not None
    async with asyncio.timeout(5):
        while True:
            hits = cache.hits
            if await crm.callers.caller(ZED) is not None and cache.hits > hits:
                break
            await asyncio.sleep(0.02)
    for number in numbers:
        await crm.callers.caller(number)


async def _after(
    crm: Crm,
    write: Awaitable[object],
    number: str,
    ok: Callable[[CallerInfo | None], object],
) -> None:
    """Run `write`; the next lookups of `number` come to say `ok`, and Zed's answer is
    still the cached one (a hit, not a read)."""
    cache = crm.callers.cache
    assert cache is not None
    clears = cache.clears
    await write
    await _until(crm, number, ok)
    hits = cache.hits
    assert (await crm.callers.caller(ZED) or CallerInfo("")).contact_name == "Zed"
    assert cache.hits == hits + 1
    assert cache.clears == clears  # only some answers were dropped


@pytest.fixture
async def zed(crm: Crm, writer: Crm) -> None:
    """Zed, created by `writer`; returns once the change has reached `crm` (a cached answer
    of Zed's is not dropped by it later)."""
    sub = crm.changes.subscribe()
    await writer.records.create_contact(ContactInput(name="Zed", phones=(ZED,)))
    async with asyncio.timeout(10):
        while not isinstance(item := await sub.get(), Change) or ZED not in (item.numbers or ()):
            pass
    sub.close()


@pytest.mark.usefixtures("zed")
async def test_a_new_lead_from_intake_drops_its_numbers_answer(crm: Crm, writer: Crm) -> None:
    number = "+4930300001"
    await _seen(crm, writer, number)
    assert await crm.callers.caller(number) is None  # nobody, cached
    event = make_event(phones=("+49 30 300001",), text="hi")
    write = writer.intake.process(event)
    await _after(crm, write, number, lambda i: i is not None and i.lead_id is not None)


@pytest.mark.usefixtures("zed")
async def test_a_phone_moved_on_a_contact_drops_both_numbers(crm: Crm, writer: Crm) -> None:
    old, new = "+4930300011", "+4930300012"
    kim = await writer.records.create_contact(ContactInput(name="Kim", phones=(old,)))
    await _seen(crm, writer, old, new)
    await _after(
        crm,
        writer.records.update_contact(kim.id, ContactInput(phones=(new,))),
        new,
        lambda i: i is not None and i.contact_id == kim.id,
    )
    await _after(
        crm, writer.records.remove_comm("contact", kim.id, "phone", old), old, lambda i: i is None
    )


@pytest.mark.usefixtures("zed")
async def test_a_lead_closed_drops_its_clients_numbers(crm: Crm, writer: Crm) -> None:
    # The lead holds no number of its own: Kim's second number shows it as Kim's open lead.
    kim = await writer.records.create_contact(
        ContactInput(name="Kim", phones=("+4930300021", "+4930300022"))
    )
    lead = await writer.leads.create(LeadInput(title="Order", contact_id=kim.id))
    await _seen(crm, writer, "+4930300022")
    assert (await crm.callers.caller("+4930300022") or CallerInfo("")).lead_id == lead.id
    write = writer.leads.junk(lead.id, "spam")
    await _after(crm, write, "+4930300022", lambda i: i is not None and i.lead_id is None)


@pytest.mark.usefixtures("zed")
async def test_a_contact_reassigned_drops_its_numbers(crm: Crm, writer: Crm) -> None:
    rita, otto = await writer.reps.add("Rita"), await writer.reps.add("Otto")
    kim = await writer.records.create_contact(
        ContactInput(name="Kim", phones=("+4930300031",), responsible_id=rita.id)
    )
    await _seen(crm, writer, "+4930300031")
    write = writer.records.update_contact(kim.id, ContactInput(responsible_id=otto.id))
    await _after(
        crm,
        write,
        "+4930300031",
        lambda i: i is not None and i.responsible is not None and i.responsible.id == otto.id,
    )


@pytest.mark.usefixtures("zed")
async def test_a_company_renamed_drops_its_contacts_numbers(crm: Crm, writer: Crm) -> None:
    acme = await writer.records.create_company("Acme", phones=("+4930300041",))
    await writer.records.create_contact(
        ContactInput(name="Kim", company_id=acme.id, phones=("+4930300042",))
    )
    await _seen(crm, writer, "+4930300041", "+4930300042")
    write = writer.records.update_company(acme.id, title="Acme Neu")
    await _after(crm, write, "+4930300042", lambda i: i and i.company_name == "Acme Neu")
    info = await crm.callers.caller("+4930300041")
    assert info is not None and info.company_name == "Acme Neu"


@pytest.mark.usefixtures("zed")
async def test_a_lead_converted_drops_its_numbers(crm: Crm, writer: Crm) -> None:
    lead = await writer.leads.create(LeadInput(title="Order", phones=("+4930300051",)))
    await _seen(crm, writer, "+4930300051")
    assert (await crm.callers.caller("+4930300051") or CallerInfo("")).contact_id is None
    done = await writer.leads.convert(lead.id)
    assert done.deal is not None and done.contact_id is not None
    info = await _until(crm, "+4930300051", lambda i: i and i.contact_id == done.contact_id)
    assert info is not None and info.deal_id == done.deal.id


async def test_a_change_of_too_many_numbers_drops_every_answer(
    crm: Crm, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm.callers.configure_cache(FOREVER)
    cache = crm.callers.cache
    assert cache is not None
    monkeypatch.setattr(affected, "CAP", 1)
    acme = await crm.records.create_company("Acme")
    for k in range(2):
        phone = f"+493030006{k}"
        contact = ContactInput(name="K", company_id=acme.id, phones=(phone,))
        await crm.records.create_contact(contact)
    await crm.callers.caller("+4930300060")
    clears = cache.clears
    await crm.records.update_company(acme.id, title="Acme Neu")
    info = await crm.callers.caller("+4930300060")
    assert info is not None and info.company_name == "Acme Neu" and cache.clears == clears + 1
    await crm.close()


@pytest.mark.usefixtures("zed")
async def test_a_repeat_lead_from_intake_drops_its_clients_other_numbers(
    crm: Crm, writer: Crm
) -> None:
    kim = await writer.records.create_contact(
        ContactInput(name="Kim", phones=("+4930300081", "+4930300082"))
    )
    await _seen(crm, writer, "+4930300082")
    assert (await crm.callers.caller("+4930300082") or CallerInfo("")).lead_id is None
    write = writer.intake.process(make_event(phones=("+49 30 300081",), text="again"))
    await _after(
        crm,
        write,
        "+4930300082",
        lambda i: i is not None and i.contact_id == kim.id and i.lead_id is not None,
    )


async def test_the_numbers_statement_is_built_once_and_reads_the_ids_it_is_given(
    crm: Crm,
) -> None:
    """Each commit runs the same prepared statement for its shape (no build per commit): the
    rows it reads are those of the ids passed that time, never an earlier commit's."""
    one = await crm.records.create_contact(ContactInput(name="A", phones=("+4930300091",)))
    two = await crm.records.create_contact(ContactInput(name="B", phones=("+4930300092",)))
    pg = not crm.db.is_sqlite
    stmt = affected._numbers_query(True, False, False, pg, affected.CAP)
    assert affected._numbers_query(True, False, False, pg, affected.CAP) is stmt
    async with crm.db.read() as s:
        for contact, number in ((one, "+4930300091"), (two, "+4930300092")):
            rows = list(await s.execute(stmt, {"contacts": [contact.id]}))
            assert rows == [("contact", contact.id, number)]
        both = {tuple(r) for r in await s.execute(stmt, {"contacts": [one.id, two.id]})}
    assert both == {("contact", one.id, "+4930300091"), ("contact", two.id, "+4930300092")}
    leads = [
        await crm.leads.create(LeadInput(title=f"L{k}", contact_id=c.id))
        for k, c in enumerate((one, two))
    ]
    clients = affected._clients_query(True, False, pg)
    assert affected._clients_query(True, False, pg) is clients
    async with crm.db.read() as s:
        for lead, contact in zip(leads, (one, two), strict=True):
            rows = [tuple(r) for r in await s.execute(clients, {"leads": [lead.id]})]
            assert rows == [("lead", lead.id, contact.id, None)]


async def test_a_kept_answer_is_the_answer_read_and_untracked_by_the_collector(
    crm: Crm,
) -> None:
    """A cached answer comes back as it was read (with and without a rep, and "nobody"),
    and is kept in an object the garbage collector does not track: a miss adds nothing to
    the young generation, so the cache does not bring its collections on more often."""
    import gc

    from crm.services.callers import _Entry

    crm.callers.configure_cache(FOREVER)
    cache = crm.callers.cache
    assert cache is not None
    rep = (await crm.reps.add("Rita", extension="101", phone="+4917600000009")).id
    await crm.records.create_contact(
        ContactInput(name="Zoë Ł", phones=("+4930300001",), responsible_id=rep)
    )
    await crm.records.create_contact(ContactInput(name="Olaf", phones=("+4930300002",)))
    for number in ("+4930300001", "+4930300002", "+4930300003"):
        read = await crm.callers.caller(number)
        hits = cache.hits
        assert await crm.callers.caller(number) == read and cache.hits == hits + 1
        entry = cache._entries[number]
        assert isinstance(entry, _Entry) and not gc.is_tracked(entry)
    first = await crm.callers.caller("+4930300001")
    assert first is not None and first.responsible is not None
    assert first.responsible.name == "Rita" and first.responsible.extension == "101"
    second = await crm.callers.caller("+4930300002")
    assert second is not None and second.responsible is None and second.contact_name == "Olaf"
    assert await crm.callers.caller("+4930300003") is None
    await crm.close()
