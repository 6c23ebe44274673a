"""The caller lookup: who holds a number, their open lead / deal and responsible, answered
alike by the fast path (`Crm.callers`) and `Crm.telephony.caller`, on SQLite and PostgreSQL,
and planned over the indexes on SQLite."""

from __future__ import annotations

import asyncio
import mmap
import os
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from asyncpg.exceptions import InternalClientError
from sqlalchemy import text

from crm.config import CrmConfig
from crm.db import Database
from crm.facade import Crm
from crm.models import Base
from crm.services import callers as callers_module
from crm.services.callers import CallerLookup, _PostgresReader, _SqliteReader
from crm.services.leads import LeadInput
from crm.services.records import ContactInput
from crm.services.telephony import CallerInfo, RepContact, Telephony, caller_info, caller_sql


@pytest.fixture
async def lookup(crm: Crm) -> AsyncIterator[tuple[CallerLookup, Telephony]]:
    yield crm.callers, crm.telephony
    await crm.close()


Named = tuple[int, str] | None  # (id, name or title)


def _info(
    number: str,
    *,
    contact: Named = None,
    company: Named = None,
    lead: Named = None,
    deal: Named = None,
    rep: RepContact | None = None,
) -> CallerInfo:
    def part(named: Named) -> tuple[int | None, str | None]:
        return named if named is not None else (None, None)

    return CallerInfo(number, *part(contact), *part(company), *part(lead), *part(deal), rep)


async def test_lookup_picks_client_open_records_and_responsible(
    crm: Crm, lookup: tuple[CallerLookup, Telephony]
) -> None:
    callers, telephony = lookup
    r1, r2, r3 = [(await crm.reps.add(f"Rep {k}", extension=f"10{k}")).id for k in (1, 2, 3)]
    rep1, rep2, rep3 = (
        RepContact(r, f"Rep {k}", True, f"10{k}", None) for k, r in ((1, r1), (2, r2), (3, r3))
    )
    contact = crm.records.create_contact

    # A contact of a company: the company's open deal wins over the contact's own.
    muster = await crm.records.create_company("Muster GmbH", responsible_id=r1)
    anna = await contact(
        ContactInput(name="Anna", phones=("+4930100001",), company_id=muster.id, responsible_id=r1)
    )
    company_deal = await crm.deals.create("Company deal", company_id=muster.id, responsible_id=r2)
    await crm.deals.create("Anna's deal", contact_id=anna.id, responsible_id=r3)

    # A shared number: the contact changed last answers; its open lead gives the rep.
    await contact(ContactInput(name="Bob", phones=("+4930100002",), responsible_id=r1))
    carl = await contact(ContactInput(name="Carl", phones=("+4930100002",)))
    carl_lead = await crm.leads.create(
        LeadInput(title="Carl again", contact_id=carl.id, responsible_id=r3)
    )

    # Nobody but an open lead has the number.
    lone = await crm.leads.create(
        LeadInput(title="Lone lead", phones=("+4930100003",), responsible_id=r1)
    )

    # A junked lead with the number leads to its contact (who does not have it).
    dora = await contact(ContactInput(name="Dora", responsible_id=r2))
    junk = await crm.leads.create(
        LeadInput(title="Old", phones=("+4930100004",), contact_id=dora.id)
    )
    await crm.leads.junk(junk.id, "spam")

    # A company's own number; its open lead's rep takes the call.
    firma = await crm.records.create_company("Firma", phones=("+4930100005",), responsible_id=r1)
    firma_lead = await crm.leads.create(
        LeadInput(title="Firma lead", company_id=firma.id, responsible_id=r2)
    )

    # A client with nothing open: the client's own rep.
    eva = await contact(ContactInput(name="Eva", phones=("+4930100006",), responsible_id=r3))
    won = await crm.deals.create("Won", contact_id=eva.id, responsible_id=r1)
    await crm.deals.win(won.id)

    # Only a closed lead nobody else has: found, but nothing to show.
    closed = await crm.leads.create(LeadInput(title="Closed", phones=("+4930100007",)))
    await crm.leads.junk(closed.id, None)

    expected: dict[str, CallerInfo | None] = {
        "+4930100001": _info(
            "+4930100001",
            contact=(anna.id, "Anna"),
            company=(muster.id, "Muster GmbH"),
            deal=(company_deal.id, "Company deal"),
            rep=rep2,
        ),
        "+4930100002": _info(
            "+4930100002", contact=(carl.id, "Carl"), lead=(carl_lead.id, "Carl again"), rep=rep3
        ),
        "+4930100003": _info("+4930100003", lead=(lone.id, "Lone lead"), rep=rep1),
        "+4930100004": _info("+4930100004", contact=(dora.id, "Dora"), rep=rep2),
        "+4930100005": _info(
            "+4930100005", company=(firma.id, "Firma"), lead=(firma_lead.id, "Firma lead"), rep=rep2
        ),
        "+4930100006": _info("+4930100006", contact=(eva.id, "Eva"), rep=rep3),
        "+4930100007": _info("+4930100007"),
        "+4930100008": None,
    }
    for number, want in expected.items():
        got = await callers.caller(number)
        assert got == want, number
        # Through the service's engine (Bitrix24's searchCrmEntities, call cards): the same.
        assert await telephony.caller(number) == want, number

    # All at once, uncached: on PostgreSQL the lookups that find both connections busy are
    # answered together, by one statement over an array of their numbers. The same answers.
    callers.configure_cache(None)
    numbers = [*expected, *reversed(expected), *expected]
    assert await asyncio.gather(*(callers.caller(n) for n in numbers)) == [
        expected[n] for n in numbers
    ]
    if isinstance(callers._reader, _PostgresReader):
        assert callers._reader.batched > 0


async def test_an_inactive_responsible_is_still_named(
    crm: Crm, lookup: tuple[CallerLookup, Telephony]
) -> None:
    callers, _ = lookup
    rep = await crm.reps.add("Gone", extension="109")
    await crm.reps.deactivate(rep.id)
    await crm.records.create_contact(
        ContactInput(name="Ida", phones=("+4930100009",), responsible_id=rep.id)
    )
    info = await callers.caller("+4930100009")
    assert info is not None and info.responsible == RepContact(rep.id, "Gone", False, "109", None)


async def test_a_closed_lookup_opens_its_reader_again_at_the_next_lookup(
    crm: Crm, lookup: tuple[CallerLookup, Telephony]
) -> None:
    """`Crm.close` at a service stop ends the readers; a service started again in the same
    process (tests, an embedding program) looks up as before."""
    callers, telephony = lookup
    jo = await crm.records.create_contact(ContactInput(name="Jo", phones=("+4930100012",)))
    for _ in range(2):
        info = await callers.caller("+4930100012")
        assert info is not None and info.contact_id == jo.id
        assert await telephony.caller("+4930100012") == info
        await crm.close()


async def test_sqlite_plans_the_lookup_over_indexes(db: Database, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("INDEXED BY and EXPLAIN QUERY PLAN are SQLite's")
    assert db.url.database is not None
    conn = sqlite3.connect(db.url.database)
    try:
        plan = [
            row[3]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN " + caller_sql(sqlite=True), {"e164": "+4930100001"}
            )
        ]
    finally:
        conn.close()
    assert (
        "SEARCH communications USING INDEX ix_communications_kind_value (kind=? AND value=?)"
        in (plan)
    )
    # No table of the CRM is read whole (the CTEs are a handful of rows and may be scanned).
    for table in ("communications", "contacts", "companies", "leads", "deals"):
        assert not [step for step in plan if step.startswith(f"SCAN {table}")], (table, plan)


async def test_an_in_memory_database_is_looked_up_through_telephony() -> None:
    """A second connection would see another, empty database: the slow path answers."""
    db = Database("sqlite+aiosqlite:///:memory:")
    crm = Crm(db, CrmConfig())
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        await crm.prepare()
        anna = await crm.records.create_contact(ContactInput(name="Anna", phones=("+4930100010",)))
        info = await crm.callers.caller("+4930100010")
        assert info is not None and info.contact_id == anna.id
    finally:
        await crm.close()
        await db.dispose()


async def test_a_sqlite_lookup_over_its_budget_is_answered_from_the_reader_thread(
    crm: Crm, db: Database, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("the budget is the SQLite reader's")
    assert db.url.database is not None
    rep = await crm.reps.add("Rep", extension="101")
    await crm.records.create_contact(
        ContactInput(name="Jo", phones=("+4930100011",), responsible_id=rep.id)
    )
    quick, starved = _SqliteReader(db.url.database), _SqliteReader(db.url.database, budget=0)
    try:
        answers = [await quick.row("+4930100011") for _ in range(20)]
        answer = answers[0]
        assert answer is not None and answer[1] == "Jo" and answers == [answer] * 20
        assert quick.overran < 10  # a few cached pages: inside a millisecond, but for hiccups
        # No time at all: every lookup is stopped on the loop and run again on the thread.
        assert await starved.row("+4930100011") == answer
        assert starved.overran == 1
        # The stopped lookup's read transaction was ended: left open, it would pin the WAL.
        assert starved._inline is not None and not starved._inline.in_transaction
    finally:
        await quick.close()
        await starved.close()


async def test_a_schema_changed_under_the_sqlite_reader_is_read_again_off_the_budget(
    crm: Crm, db: Database, backend: str
) -> None:
    """Another connection changes the schema (a migration, ANALYZE) while the reader runs:
    the next statement reads it again. Where that alone takes longer than the budget, the
    lookup it stopped is answered on the thread and the inline connection warmed there; the
    lookups after it run on the loop again instead of each stopping in the schema."""
    if backend != "sqlite":
        pytest.skip("the budget is the SQLite reader's")
    assert db.url.database is not None
    await crm.records.create_contact(ContactInput(name="Jo", phones=("+4930100016",)))
    reader = _SqliteReader(db.url.database)
    try:
        answer = await reader.row("+4930100016")
        assert answer is not None and answer[1] == "Jo"
        other = sqlite3.connect(db.url.database, isolation_level=None)
        try:  # a schema far slower to read than the budget
            tables = (
                f"CREATE TABLE extra_{k} (id INTEGER PRIMARY KEY, v TEXT);" for k in range(3000)
            )
            other.executescript("".join(tables))
        finally:
            other.close()
        overran = reader.overran
        answers = [await reader.row("+4930100016") for _ in range(10)]
        assert answers == [answer] * 10
        # The schema twice (the inline connection is warmed at the second), and hiccups.
        assert 1 <= reader.overran - overran <= 4
    finally:
        await reader.close()


async def test_lookups_run_on_the_loop_while_the_thread_answers_a_stopped_one(
    crm: Crm, db: Database, backend: str
) -> None:
    """A lookup the budget stopped is answered on the thread, which may wait for the disk for
    long; the lookups arriving meanwhile run on the loop as soon as the inline connection is
    warmed again, not queued behind that answer (nor is the warming, after a second stop)."""
    if backend != "sqlite":
        pytest.skip("the budget is the SQLite reader's")
    assert db.url.database is not None
    await crm.records.create_contact(ContactInput(name="Jo", phones=("+4930100017",)))
    reader = _SqliteReader(db.url.database)
    gate = threading.Event()

    def held() -> int:  # the thread's statement waits as for a cold disk
        gate.wait(10)
        return 0

    slow = reader._open(busy_timeout=30)
    slow.set_progress_handler(held, 1)
    reader._conn = slow
    try:
        answer = await reader.row("+4930100017")
        assert answer is not None and answer[1] == "Jo"
        reader.budget = 0
        stopped = [asyncio.create_task(reader.row("+4930100017")) for _ in range(2)]
        await asyncio.sleep(0.2)  # both stopped on the loop; their answers wait on the thread
        reader.budget = 10
        async with asyncio.timeout(2):
            assert [await reader.row("+4930100017") for _ in range(3)] == [answer] * 3
        assert not any(s.done() for s in stopped) and reader.overran == 2
        gate.set()
        async with asyncio.timeout(10):
            assert await asyncio.gather(*stopped) == [answer] * 2
    finally:
        gate.set()
        await reader.close()


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread usage is Linux's")
async def test_a_lookup_stopped_for_a_read_from_the_disk_leaves_the_inline_connection_warm(
    crm: Crm, db: Database, backend: str
) -> None:
    """Stopped after a read from the disk (pages the OS dropped): the inline connection is
    not the cause and stays the loop's, unwarmed; stopped by the CPU budget twice in a row,
    it is warmed again (it may be a schema to read)."""
    if backend != "sqlite":
        pytest.skip("the budget is the SQLite reader's")
    path = db.url.database
    assert path is not None
    await crm.records.create_contact(ContactInput(name="Jo", phones=("+4930100018",)))
    reader = _SqliteReader(path)
    try:
        answer = await reader.row("+4930100018")
        assert answer is not None and answer[1] == "Jo"
        other = sqlite3.connect(path, isolation_level=None)
        try:  # a commit drops the reader's own page cache; the checkpoint puts every page
            other.execute("PRAGMA user_version=7")  # in the file
            assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        finally:
            other.close()
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # the OS drops its copy
        finally:
            os.close(fd)
        reader.budget = 0
        assert await reader.row("+4930100018") == answer
        assert (reader.overran, reader.warmed, reader._warming) == (1, 0, None)
        # The pages are cached now: stopped by the CPU budget. Once may be a collection of
        # the garbage collector in it; twice in a row may be a schema to read: warmed.
        assert [await reader.row("+4930100018") for _ in range(2)] == [answer] * 2
        assert (reader.overran, reader.warmed) == (3, 1)
    finally:
        await reader.close()


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread usage is Linux's")
def test_a_lookup_over_the_clock_only_because_the_cpu_was_elsewhere_is_let_finish(
    tmp_path: Path,
) -> None:
    """Past the deadline with the budget's CPU time unused and nothing read from the disk
    (preempted): moving it to the thread would only cost more. Read from the disk, or used
    the budget's CPU time: stopped."""
    reader = _SqliteReader(str(tmp_path / "x.db"), budget=0.05)
    try:
        assert callers_module._thread_usage is not None
        reader._started = callers_module._thread_usage()
        reader._deadline = time.perf_counter() - 1  # the clock ran out, the CPU did not
        assert reader._over_budget() is False and reader._waited
        time.sleep(0.01)  # a sleep (a GIL wait, say) is no reason
        assert reader._over_budget() is False
        _read_from_disk(tmp_path / "cold.bin")
        assert reader._over_budget() is True
        reader._started = callers_module._thread_usage()
        spin = time.thread_time() + 0.06
        while time.thread_time() < spin:  # the budget's CPU time used up
            pass
        assert reader._over_budget() is True
    finally:
        reader._thread.shutdown()


@pytest.mark.parametrize("backend", ["postgres"])
async def test_postgres_lookups_queued_behind_busy_connections(crm: Crm, db: Database) -> None:
    """Lookups that find every connection busy wait in a queue the next connection given
    back answers; one cancelled meanwhile is skipped; the statement is planned once per
    connection (a generic plan), not at every lookup."""
    jo = await crm.records.create_contact(ContactInput(name="Jo", phones=("+4930100014",)))
    al = await crm.records.create_contact(ContactInput(name="Al", phones=("+4930100015",)))
    reader = _PostgresReader(db)
    try:
        await asyncio.gather(*(reader.row("+4930100014") for _ in range(4)))
        assert len(reader._idle) == callers_module.PG_POOL_SIZE
        busy = [asyncio.create_task(reader.row("+4930100014")) for _ in range(2)]
        queued = [asyncio.create_task(reader.row(n)) for n in ("+4930100015", "+4930100099")]
        gone = asyncio.create_task(reader.row("+4930100015"))
        await asyncio.sleep(0)
        assert len(reader._queue) == 3 and not reader._idle
        gone.cancel()
        batched = reader.batched
        first, second = await asyncio.gather(*busy)
        assert first is not None and second is not None and first[0] == second[0] == jo.id
        al_row, nobody = await asyncio.gather(*queued)
        assert al_row is not None and al_row[0] == al.id
        assert nobody is not None and nobody[0] is None  # a row of nothing: nobody has it
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert reader.batched == batched + 2
        assert not reader._queue and len(reader._idle) == reader._open

        for con in reader._idle:
            plans = await con.fetch("SELECT * FROM pg_prepared_statements")
            assert plans and all(p["custom_plans"] == 0 and p["generic_plans"] > 0 for p in plans)
    finally:
        await reader.close()


@pytest.mark.parametrize("backend", ["postgres"])
async def test_postgres_lookups_queued_when_the_server_ends_the_connections(
    crm: Crm, db: Database
) -> None:
    """The server ends the lookup's connections while lookups queue for them: each lookup is
    answered or fails with a connection error; none waits for ever; the next ones go through."""
    jo = await crm.records.create_contact(ContactInput(name="Jo", phones=("+4930100016",)))
    reader = _PostgresReader(db)
    try:
        await asyncio.gather(*(reader.row("+4930100016") for _ in range(4)))
        await _end_lookup_connections(db)
        async with asyncio.timeout(10):
            rows = await asyncio.gather(
                *(reader.row("+4930100016") for _ in range(8)), return_exceptions=True
            )
        # A kept connection whose end the client has not yet seen fails as asyncpg's
        # InternalClientError ("another operation is in progress").
        failures = asyncpg.PostgresConnectionError | asyncpg.InterfaceError | InternalClientError
        for row in rows:
            if isinstance(row, BaseException):
                assert isinstance(row, failures), row
            else:
                assert row is not None and row[0] == jo.id
        async with asyncio.timeout(10):
            rows = await asyncio.gather(*(reader.row("+4930100016") for _ in range(8)))
        assert all(row is not None and row[0] == jo.id for row in rows)
        assert not reader._queue and reader._open <= callers_module.PG_POOL_SIZE
    finally:
        await reader.close()


async def _end_lookup_connections(db: Database) -> None:
    """The server ends the lookup's connections (those that set no application name)."""
    async with db.engine.connect() as conn:
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND application_name = ''"
            )
        )


def _read_from_disk(path: Path) -> None:
    """A read that goes to the disk, past the page cache (O_DIRECT)."""
    path.write_bytes(os.urandom(1 << 16))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, 1 << 16)  # page-aligned, as O_DIRECT needs
        os.readv(fd, [buf])
    finally:
        os.close(fd)


@pytest.mark.parametrize("backend", ["postgres"])
async def test_postgres_lookups_share_a_bounded_set_of_connections(crm: Crm, db: Database) -> None:
    """Many lookups at once use at most PG_POOL_SIZE connections; one cancelled midway
    leaves no connection behind in an unknown state, one the server ended is replaced."""
    jo = await crm.records.create_contact(ContactInput(name="Jo", phones=("+4930100013",)))
    reader = _PostgresReader(db)
    try:
        rows = await asyncio.gather(*(reader.row("+4930100013") for _ in range(20)))
        assert {r[0] if r else None for r in rows} == {jo.id}
        assert len(reader._idle) == reader._open == callers_module.PG_POOL_SIZE

        slow = asyncio.create_task(reader.row("+4930100013"))
        await asyncio.sleep(0)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert reader._open == callers_module.PG_POOL_SIZE - 1  # it was closed, not kept

        await _end_lookup_connections(db)
        async with asyncio.timeout(10):
            while True:
                try:
                    row = await reader.row("+4930100013")
                    break
                except asyncpg.PostgresConnectionError:  # the one lookup that found it so
                    await asyncio.sleep(0.05)
        assert row is not None and row[0] == jo.id
        assert reader._open <= callers_module.PG_POOL_SIZE
    finally:
        await reader.close()


async def test_the_first_sqlite_lookup_waits_for_a_writer_instead_of_failing(
    tmp_path: Path,
) -> None:
    """The on-loop connection is opened (schema read, statement prepared) on the reader's
    thread, where it may wait for a writer holding the file; the lookups after it never wait
    on the loop (a locked file sends them to the thread)."""
    path = tmp_path / "locked.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await db.dispose()
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # A rollback journal: there, a writer's exclusive lock keeps readers out (WAL's do not).
    assert writer.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    writer.execute("BEGIN EXCLUSIVE")
    reader = _SqliteReader(str(path))
    try:
        lookup = asyncio.create_task(reader.row("+4930100099"))
        await asyncio.sleep(0.3)
        assert not lookup.done()  # waiting for the writer, not failed
        writer.execute("COMMIT")
        async with asyncio.timeout(10):
            assert caller_info("+4930100099", await lookup) is None
        inline = reader._inline
        assert inline is not None
        assert inline.execute("PRAGMA busy_timeout").fetchone() == (0,)  # no wait on the loop
        writer.execute("BEGIN EXCLUSIVE")
        overran = reader.overran
        lookup = asyncio.create_task(reader.row("+4930100099"))
        await asyncio.sleep(0.1)
        writer.execute("COMMIT")
        async with asyncio.timeout(10):
            assert caller_info("+4930100099", await lookup) is None
        assert reader.overran == overran + 1  # locked on the loop: answered on the thread
    finally:
        writer.close()
        await reader.close()
