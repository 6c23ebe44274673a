"""Who is calling, in one SQL statement: the caller lookup a PBX asks while the phone rings.

`Telephony.caller` answers the same question with a handful of queries (one per table); here
it is one statement over indexed rows, run on a read-only connection of its own, so a lookup
costs one round trip (PostgreSQL) or a few index probes on a budget (SQLite, see
`_SqliteReader`), with millions of contacts.

The answer follows `Telephony.caller` exactly: contacts win over companies (the most recently
changed first), a lead counts when no client has the number; the open deal is the company's
newest, else the contact's; the open lead is the newest open lead with the number, else the
company's, else the contact's; the responsible is the deal's, else the lead's, else the
contact's, else the company's.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg

from crm.db import Database
from crm.models import Communication, Company, Contact, Deal, Lead, Rep
from crm.services.telephony import MAX_HOLDERS, CallerInfo, RepContact, Telephony

# Connections a PostgreSQL lookup pool keeps: a lookup is one short round trip.
PG_POOL_SIZE = 2


def _index_on(model: Any, column: str) -> str:
    """The name of the model's index that leads with `column`."""
    names = sorted(str(ix.name) for ix in model.__table__.indexes if ix.columns[0].name == column)
    if not names:
        raise LookupError(f"no index on {model.__tablename__}.{column}")
    return names[0]


def _indexed_by(model: Any, column: str, sqlite: bool) -> str:
    # SQLite's planner, left alone, likes to walk the (semantic, modified_at) index in order and
    # filter by owner: tens of milliseconds when the owner has nothing open. INDEXED BY (SQLite
    # only) pins the owner's index; PostgreSQL plans these well by itself.
    return f"INDEXED BY {_index_on(model, column)}" if sqlite else ""


def _newest_open(model: Any, semantic: str, owner: str, of: str, sqlite: bool) -> str:
    table = model.__tablename__
    return (
        f"(SELECT id FROM {table} {_indexed_by(model, owner, sqlite)} "
        f"WHERE {owner} = (SELECT id FROM {of}) AND {semantic} = 'process' "
        "ORDER BY modified_at DESC, id DESC LIMIT 1)"
    )


def caller_sql(*, sqlite: bool) -> str:
    """The lookup statement (one parameter, `e164`), in SQL both backends read."""
    comms, leads = Communication.__tablename__, Lead.__tablename__
    contacts, companies = Contact.__tablename__, Company.__tablename__
    deals, reps = Deal.__tablename__, Rep.__tablename__
    return f"""
WITH holders AS (
    SELECT owner_type, owner_id FROM {comms} {_indexed_by(Communication, "kind", sqlite)}
    WHERE kind = 'phone' AND value = :e164
    ORDER BY id DESC LIMIT {MAX_HOLDERS}
), held_leads AS (
    SELECT id, status_semantic, contact_id, company_id, modified_at FROM {leads}
    WHERE id IN (SELECT owner_id FROM holders WHERE owner_type = 'lead')
), the_contact AS (
    SELECT id, name, company_id, responsible_id FROM {contacts}
    WHERE id IN (
        SELECT owner_id FROM holders WHERE owner_type = 'contact'
        UNION SELECT contact_id FROM held_leads WHERE contact_id IS NOT NULL
    )
    ORDER BY modified_at DESC, id DESC LIMIT 1
), the_company AS (
    SELECT id, title, responsible_id FROM {companies}
    WHERE id IN (
        SELECT company_id FROM the_contact WHERE company_id IS NOT NULL
        UNION ALL SELECT owner_id FROM holders
        WHERE owner_type = 'company'
          AND NOT EXISTS (SELECT 1 FROM the_contact WHERE company_id IS NOT NULL)
        UNION ALL SELECT company_id FROM held_leads
        WHERE company_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM the_contact WHERE company_id IS NOT NULL)
    )
    ORDER BY modified_at DESC, id DESC LIMIT 1
), picked AS (
    SELECT
        COALESCE(
            {_newest_open(Deal, "stage_semantic", "company_id", "the_company", sqlite)},
            {_newest_open(Deal, "stage_semantic", "contact_id", "the_contact", sqlite)}
        ) AS deal_id,
        COALESCE(
            (SELECT id FROM held_leads WHERE status_semantic = 'process'
             ORDER BY modified_at DESC, id DESC LIMIT 1),
            {_newest_open(Lead, "status_semantic", "company_id", "the_company", sqlite)},
            {_newest_open(Lead, "status_semantic", "contact_id", "the_contact", sqlite)}
        ) AS lead_id,
        EXISTS (SELECT 1 FROM held_leads) AS any_lead
)
SELECT c.id, c.name, co.id, co.title, l.id, l.title, d.id, d.title, p.any_lead,
       r.id, r.name, r.active, r.extension, r.phone
FROM picked AS p
LEFT JOIN the_contact AS c ON 1 = 1
LEFT JOIN the_company AS co ON 1 = 1
LEFT JOIN {deals} AS d ON d.id = p.deal_id
LEFT JOIN {leads} AS l ON l.id = p.lead_id
LEFT JOIN {reps} AS r
    ON r.id = COALESCE(d.responsible_id, l.responsible_id, c.responsible_id, co.responsible_id)
"""


def caller_info(e164: str, row: tuple[Any, ...] | None) -> CallerInfo | None:
    """The `CallerInfo` of a lookup row; None when nobody has the number."""
    if row is None:
        return None
    contact_id, contact_name, company_id, company_name = row[0:4]
    lead_id, lead_title, deal_id, deal_title, any_lead = row[4:9]
    if contact_id is None and company_id is None and not any_lead:
        return None
    rep_id, rep_name, rep_active, rep_extension, rep_phone = row[9:14]
    return CallerInfo(
        number=e164,
        contact_id=contact_id,
        contact_name=contact_name,
        company_id=company_id,
        company_name=company_name,
        lead_id=lead_id,
        lead_title=lead_title,
        deal_id=deal_id,
        deal_title=deal_title,
        responsible=None
        if rep_id is None
        else RepContact(rep_id, rep_name, bool(rep_active), rep_extension, rep_phone),
    )


# How long a lookup may hold the event loop before it is stopped and run on the reader's
# thread instead. A lookup over cached pages takes about 0.1 ms.
INLINE_BUDGET = 0.001
# SQLite virtual machine steps between looks at the clock (a lookup takes a few thousand).
_BUDGET_STEPS = 100


class _SqliteReader:
    """Read-only connections of its own on the service's SQLite file. A lookup is a few index
    probes, nearly all of it in SQLite's C code: about 0.1 ms over pages the OS has cached,
    less than the two thread hand-overs of running it elsewhere cost on a loaded machine
    (about 0.25 ms each, measured). So it runs on the event loop, on a budget: a progress
    handler stops one that takes longer than `budget` (cold pages, a busy file), and that one
    runs again on the reader's own thread, which may take as long as it needs. The loop is
    never held up for more than about the budget. In WAL mode neither waits for writers.

    No mmap: on large files it costs hundreds of page faults per lookup here (measured 0.7 ms
    against 0.07 ms of CPU per lookup with 1 million contacts).
    """

    def __init__(self, path: str, budget: float = INLINE_BUDGET) -> None:
        self.path = path
        self.budget = budget
        self.overran = 0  # lookups that went to the thread: a cold cache shows here
        self._sql = caller_sql(sqlite=True)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="caller-lookup")
        self._conn: sqlite3.Connection | None = None  # used by that thread only
        self._inline: sqlite3.Connection | None = None  # used on the event loop only
        self._deadline = 0.0

    def _open(self, *, busy_timeout: float) -> sqlite3.Connection:
        # The inline connection is opened on the thread (opening touches the file) and used
        # on the loop: never by two threads at once.
        conn = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA query_only=ON")
        return conn

    def _row(self, e164: str) -> tuple[Any, ...] | None:
        if self._conn is None:
            self._conn = self._open(busy_timeout=30)
        row: tuple[Any, ...] | None = self._conn.execute(self._sql, {"e164": e164}).fetchone()
        return row

    def _open_inline(self) -> sqlite3.Connection:
        # No busy wait on the loop: a locked file is a reason to go to the thread.
        conn = self._open(busy_timeout=0)
        # Reading the schema and preparing the statement are first-use costs: paid here, on
        # the thread, so they never count against the budget.
        conn.execute(self._sql, {"e164": ""}).fetchone()
        conn.set_progress_handler(self._over_budget, _BUDGET_STEPS)
        return conn

    def _over_budget(self) -> bool:
        return time.perf_counter() > self._deadline

    async def row(self, e164: str) -> tuple[Any, ...] | None:
        loop = asyncio.get_running_loop()
        if self._inline is None:
            conn = await loop.run_in_executor(self._thread, self._open_inline)
            if self._inline is None:
                self._inline = conn
            else:  # another lookup opened one meanwhile
                conn.close()
        self._deadline = time.perf_counter() + self.budget
        try:
            row: tuple[Any, ...] | None = self._inline.execute(self._sql, {"e164": e164}).fetchone()
            return row
        except sqlite3.OperationalError:  # interrupted (over budget), or the file is locked
            self.overran += 1
        return await loop.run_in_executor(self._thread, self._row, e164)

    def _close(self) -> None:
        for conn in (self._conn, self._inline):
            if conn is not None:
                conn.close()
        self._conn = self._inline = None

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=False)


class _PostgresReader:
    """A small asyncpg pool of its own: one round trip per lookup with a prepared statement,
    and lookups never wait for a connection intake holds."""

    def __init__(self, db: Database) -> None:
        _, kwargs = db.engine.dialect.create_connect_args(db.url)
        # Options of SQLAlchemy's asyncpg dialect, not of asyncpg.connect.
        for key in ("prepared_statement_cache_size", "prepared_statement_name_func"):
            kwargs.pop(key, None)
        self._connect = kwargs
        self._sql = caller_sql(sqlite=False).replace(":e164", "$1")
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    min_size=1, max_size=PG_POOL_SIZE, reset=_keep_session, **self._connect
                )
        return self._pool

    async def row(self, e164: str) -> tuple[Any, ...] | None:
        pool = self._pool or await self._get_pool()
        row = await pool.fetchrow(self._sql, e164)
        return tuple(row) if row is not None else None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _keep_session(_: asyncpg.Connection) -> None:
    """Lookups only read and set nothing: no session reset (a round trip) between them."""


class CallerLookup:
    """`caller(e164)` as `Telephony.caller` answers it, in one statement (see the module).

    An in-memory SQLite database cannot be opened a second time: there the lookup goes
    through `Telephony`.
    """

    def __init__(self, db: Database, telephony: Telephony) -> None:
        self.telephony = telephony
        self._reader: _SqliteReader | _PostgresReader | None = None
        if db.is_sqlite:
            if db.url.database not in (None, "", ":memory:"):
                self._reader = _SqliteReader(db.url.database)
        elif db.url.get_driver_name() == "asyncpg":
            self._reader = _PostgresReader(db)

    async def caller(self, e164: str) -> CallerInfo | None:
        if self._reader is None:
            return await self.telephony.caller(e164)
        return caller_info(e164, await self._reader.row(e164))

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
