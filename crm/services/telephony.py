"""Telephony use cases: who holds a phone number (screen-pop, call routing, Bitrix24's
searchCrmEntities) and the state of Bitrix24-style registered calls (`ExternalCall`).

Lookups read a handful of indexed rows by column, never whole ORM graphs: a PBX asks while the
phone rings, so it has to stay fast with millions of contacts. On SQLite they use an engine of
their own: the service's engine opens every transaction with BEGIN IMMEDIATE (the write lock),
so concurrent lookups would queue behind each other and behind intake; plain reads in WAL mode
wait for nobody.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, create_engine, event, select, text

from crm.db import Database
from crm.models import Communication, Company, Contact, Deal, ExternalCall, Lead, Rep

T = TypeVar("T")

# Threads running SQLite lookups (each holds one read connection while it works).
READER_THREADS = 2
# More holders than this for one number is a switchboard or junk data, not a caller.
MAX_HOLDERS = 20


@dataclass(frozen=True, slots=True)
class RepContact:
    """A responsible rep as a phone system needs them."""

    id: int
    name: str
    active: bool
    extension: str | None
    phone: str | None


@dataclass(frozen=True, slots=True)
class NumberHolder:
    """A contact, company or lead that has the number."""

    owner_type: str  # contact | company | lead
    owner_id: int
    name: str
    responsible: RepContact | None


@dataclass(frozen=True, slots=True)
class CallerInfo:
    """Who is calling: the client, what is open with them, and who looks after them."""

    number: str  # E.164
    contact_id: int | None = None
    contact_name: str | None = None
    company_id: int | None = None
    company_name: str | None = None
    lead_id: int | None = None  # the newest open lead
    lead_title: str | None = None
    deal_id: int | None = None  # the newest open deal
    deal_title: str | None = None
    responsible: RepContact | None = None  # of the deal, else the lead, else the client


@dataclass(frozen=True, slots=True)
class Registration:
    """A call registered through `telephony.externalcall.register`."""

    call_id: str
    user_id: int | None
    created_at: datetime
    finished_at: datetime | None
    # "request" as parsed, "register" / "finish" replies once known, "crm" (what register did
    # in the CRM), "shown" (reps with the call card), "record" (an attached recording link)
    data: dict[str, Any]


def new_call_id(now: datetime) -> str:
    """Bitrix24's CALL_ID shape: externalCall.<32 hex>.<unix seconds>."""
    return f"externalCall.{secrets.token_hex(16)}.{int(now.timestamp())}"


# The lookups are plain synchronous functions on a Core connection: on SQLite they run in a
# worker thread in one go, on PostgreSQL through `AsyncConnection.run_sync`. One thread hop per
# lookup instead of one per query, and statements built once (not per call), keep them at a
# fraction of a millisecond of Python around a few indexed reads.

_IDS: Any = bindparam("ids", expanding=True)
_REP = (Rep.id, Rep.name, Rep.active, Rep.extension, Rep.phone)
_REPS_BY_ID = select(*_REP).where(Rep.id.in_(_IDS))
_ALL_REPS = select(*_REP).order_by(Rep.id)
_HOLDERS = (
    select(Communication.owner_type, Communication.owner_id)
    .where(Communication.kind == "phone", Communication.value == bindparam("e164"))
    .order_by(Communication.id.desc())
    .limit(MAX_HOLDERS)
)
_NAMES = {
    "contact": select(Contact.id, Contact.name.label("name"), Contact.responsible_id).where(
        Contact.id.in_(_IDS)
    ),
    "company": select(Company.id, Company.title.label("name"), Company.responsible_id).where(
        Company.id.in_(_IDS)
    ),
    "lead": select(Lead.id, Lead.title.label("name"), Lead.responsible_id).where(Lead.id.in_(_IDS)),
}


def _rows(conn: Connection, query: Any, ids: Sequence[int | None]) -> list[Any]:
    """Rows of an `_IDS` query for `ids` (none asked: no query at all)."""
    wanted = sorted({i for i in ids if i is not None})
    return list(conn.execute(query, {"ids": wanted}).all()) if wanted else []


def _reps(conn: Connection, ids: set[int | None]) -> dict[int, RepContact]:
    return {r.id: RepContact(*r) for r in _rows(conn, _REPS_BY_ID, list(ids))}


def _all_reps(conn: Connection) -> list[RepContact]:
    return [RepContact(*r) for r in conn.execute(_ALL_REPS)]


def _holder_ids(conn: Connection, e164: str) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {"contact": [], "company": [], "lead": []}
    for owner_type, owner_id in conn.execute(_HOLDERS, {"e164": e164}):
        ids = found.setdefault(owner_type, [])
        if owner_id not in ids:
            ids.append(owner_id)
    return found


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
    """The caller lookup (one parameter, `e164`) as one statement both backends read: a few
    index probes, so it stays well under a millisecond with millions of contacts.

    Contacts win over companies (the most recently changed first), a lead counts when no
    client has the number; the open deal is the company's newest, else the contact's; the
    open lead is the newest open lead with the number, else the company's, else the
    contact's; the responsible is the deal's, else the lead's, else the contact's, else the
    company's. SQLite's fast path reads the same answer in steps (`sqlite_caller_row`)."""
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


# --- The caller lookup on SQLite in steps ---------------------------------------------------
# `caller_sql` on SQLite opened a temporary B-tree for each CTE it materialised, its UNION and
# each `ORDER BY … LIMIT 1`: most of its cost, with only a few index probes. The same answer
# in a few statements that only probe indexes (the pick among a number's holders made here),
# all in one read transaction (one snapshot, as the single statement had).


def _sqlite_steps() -> dict[str, str]:
    comms, leads = Communication.__tablename__, Lead.__tablename__
    contacts, companies = Contact.__tablename__, Company.__tablename__
    reps = Rep.__tablename__

    def open_of(model: Any, semantic: str, owner: str, tag: int) -> str:
        # The newest by `ORDER BY modified_at DESC, id DESC` without a sorter: the greatest
        # id among those changed last. Only that row leaves SQLite.
        table = model.__tablename__
        of_owner = (
            f"FROM {table} {_indexed_by(model, owner, True)} "
            f"WHERE {owner} = :{owner} AND {semantic} = 'process'"
        )
        return (
            f"SELECT {tag}, id, modified_at, title, responsible_id FROM {table} "
            f"WHERE id = (SELECT max(id) {of_owner} "
            f"AND modified_at = (SELECT max(modified_at) {of_owner}))"
        )

    return {
        # Each holder with its row (the columns of the kind it is; a missing row: NULLs).
        "holders": f"""
SELECT h.owner_type, h.owner_id,
       ct.id, ct.modified_at, ct.name, ct.company_id, ct.responsible_id,
       co.id, co.modified_at, co.title, co.responsible_id,
       l.id, l.modified_at, l.title, l.responsible_id, l.status_semantic,
       l.contact_id, l.company_id
FROM (
    SELECT owner_type, owner_id FROM {comms} {_indexed_by(Communication, "kind", True)}
    WHERE kind = 'phone' AND value = :e164
    ORDER BY id DESC LIMIT {MAX_HOLDERS}
) AS h
LEFT JOIN {contacts} AS ct ON h.owner_type = 'contact' AND ct.id = h.owner_id
LEFT JOIN {companies} AS co ON h.owner_type = 'company' AND co.id = h.owner_id
LEFT JOIN {leads} AS l ON h.owner_type = 'lead' AND l.id = h.owner_id""",
        "contact": f"SELECT id, modified_at, name, company_id, responsible_id FROM {contacts} "
        "WHERE id = ?",
        "company": f"SELECT id, modified_at, title, responsible_id FROM {companies} WHERE id = ?",
        # The newest open deal and lead of the company and of the contact, tagged 0-3.
        "open": "\nUNION ALL ".join(
            [
                open_of(Deal, "stage_semantic", "company_id", 0),
                open_of(Deal, "stage_semantic", "contact_id", 1),
                open_of(Lead, "status_semantic", "company_id", 2),
                open_of(Lead, "status_semantic", "contact_id", 3),
            ]
        ),
        "rep": f"SELECT id, name, active, extension, phone FROM {reps} WHERE id = ?",
    }


SQLITE_STEPS = _sqlite_steps()
_NO_REP = (None, None, None, None, None)
_NO_PAIR = (None, None)
# SQLite's order of values of different types (NULL, numbers, text, blobs).
_TYPE_ORDER = {type(None): 0, int: 1, float: 1, str: 2, bytes: 3}


def _newest(rows: Iterable[Sequence[Any]]) -> Sequence[Any] | None:
    """The row (id, modified_at, …) first by `ORDER BY modified_at DESC, id DESC`."""
    return max(rows, key=lambda r: (_TYPE_ORDER[type(r[1])], r[1], r[0]), default=None)


def warm_sqlite_steps(conn: sqlite3.Connection) -> None:
    """Prepare every step's statement (first use reads the schema and compiles)."""
    for sql in SQLITE_STEPS.values():
        params: Any = {"e164": "", "company_id": None, "contact_id": None} if ":" in sql else (0,)
        conn.execute(sql, params).fetchall()


def sqlite_caller_row(conn: sqlite3.Connection, e164: str) -> tuple[Any, ...]:
    """`caller_sql`'s row, read in steps (see above) on a connection in autocommit mode. A
    step that fails (interrupted, locked) leaves the transaction to the caller to end."""
    conn.execute("BEGIN")
    row = _steps(conn, e164)
    conn.execute("COMMIT")
    return row


def _steps(conn: sqlite3.Connection, e164: str) -> tuple[Any, ...]:
    steps = SQLITE_STEPS
    contacts: dict[int, Sequence[Any]] = {}
    companies: dict[int, Sequence[Any]] = {}
    held: dict[int, Sequence[Any]] = {}
    holder_companies: list[int] = []
    wanted: list[int] = []  # contacts of held leads
    for h in conn.execute(steps["holders"], {"e164": e164}):
        if h[2] is not None:
            contacts[h[2]] = h[2:7]
        elif h[7] is not None:
            companies[h[7]] = h[7:11]
            holder_companies.append(h[7])
        elif h[11] is not None:
            held[h[11]] = h[11:18]
            if h[16] is not None:
                wanted.append(h[16])
    for ident in dict.fromkeys(wanted):
        if ident not in contacts and (r := conn.execute(steps["contact"], (ident,)).fetchone()):
            contacts[ident] = r
    contact = _newest(contacts.values())
    if contact is not None and contact[3] is not None:
        candidates = [contact[3]]
    else:
        candidates = holder_companies + [h[6] for h in held.values() if h[6] is not None]
    found = []
    for ident in dict.fromkeys(candidates):
        if ident in companies:
            found.append(companies[ident])
        elif r := conn.execute(steps["company"], (ident,)).fetchone():
            found.append(r)
    company = _newest(found)
    opened: list[list[Sequence[Any]]] = [[], [], [], []]
    if contact is not None or company is not None:
        params = {
            "company_id": None if company is None else company[0],
            "contact_id": None if contact is None else contact[0],
        }
        for r in conn.execute(steps["open"], params):
            opened[r[0]].append(r[1:])
    deal = _newest(opened[0]) or _newest(opened[1])
    lead = (
        _newest(h for h in held.values() if h[4] == "process")
        or _newest(opened[2])
        or _newest(opened[3])
    )
    responsible = next(
        (
            r
            for r in (
                deal and deal[3],
                lead and lead[3],
                contact and contact[4],
                company and company[3],
            )
            if r is not None
        ),
        None,
    )
    rep = None if responsible is None else conn.execute(steps["rep"], (responsible,)).fetchone()
    return (
        *(_NO_PAIR if contact is None else (contact[0], contact[2])),
        *(_NO_PAIR if company is None else (company[0], company[2])),
        *(_NO_PAIR if lead is None else (lead[0], lead[2])),
        *(_NO_PAIR if deal is None else (deal[0], deal[2])),
        1 if held else 0,
        *(rep or _NO_REP),
    )


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


_CALLER_SQL = {sqlite: text(caller_sql(sqlite=sqlite)) for sqlite in (True, False)}


def _caller(conn: Connection, e164: str) -> CallerInfo | None:
    query = _CALLER_SQL[conn.dialect.name == "sqlite"]
    return caller_info(
        e164, tuple(row) if (row := conn.execute(query, {"e164": e164}).first()) else None
    )


def _holders(conn: Connection, e164: str) -> list[NumberHolder]:
    found = _holder_ids(conn, e164)
    rows = [(kind, r) for kind, query in _NAMES.items() for r in _rows(conn, query, found[kind])]
    reps = _reps(conn, {r.responsible_id for _, r in rows})
    order = {"contact": 0, "company": 1, "lead": 2}
    rows.sort(key=lambda x: (order[x[0]], -x[1].id))
    return [NumberHolder(kind, r.id, r.name, reps.get(r.responsible_id)) for kind, r in rows]


def _holder(conn: Connection, kind: str, ident: int) -> NumberHolder | None:
    rows = _rows(conn, _NAMES[kind], [ident])
    if not rows:
        return None
    reps = _reps(conn, {rows[0].responsible_id})
    return NumberHolder(kind, rows[0].id, rows[0].name, reps.get(rows[0].responsible_id))


def _sqlite_reader(db: Database) -> Engine:
    """A synchronous engine on the service's SQLite file that only ever reads. Without the
    service engine's BEGIN IMMEDIATE, WAL readers wait for nobody."""
    engine = create_engine(
        db.url.set(drivername="sqlite"),
        connect_args={"timeout": 30, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA query_only=ON")
        # No mmap: measured, the page faults of a mapped 1M-contact file cost ~0.7 ms of CPU a
        # lookup against ~0.1 ms reading the few pages it needs.

    return engine


class Telephony:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._reader: Engine | None = None
        self._threads: ThreadPoolExecutor | None = None

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read-only function on a connection of its own."""
        if self.db.sqlite_file is not None:
            if self._threads is None:
                # Threads of their own: lookups never queue behind other blocking work.
                self._threads = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="lookup")
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._threads, self._read_sqlite, fn, *args)
        async with self.db.engine.connect() as conn:
            return await conn.run_sync(fn, *args)

    def _read_sqlite(self, fn: Callable[..., T], *args: Any) -> T:
        if self._reader is None:
            self._reader = _sqlite_reader(self.db)
        with self._reader.connect() as conn:
            return fn(conn, *args)

    async def close(self) -> None:
        if self._reader is not None:
            await asyncio.to_thread(self._reader.dispose)
            self._reader = None
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = None

    async def reps(self) -> list[RepContact]:
        """Every rep with what a phone system needs (extension, number to put calls through)."""
        return await self._read(_all_reps)

    async def caller(self, e164: str) -> CallerInfo | None:
        """The client behind a number, or None when nobody has it.

        Contacts win over companies (a person answers the phone), the most recently changed
        one first; a lead counts when no client has the number. The responsible is the open
        deal's, else the open lead's, else the client's.
        """
        return await self._read(_caller, e164)

    async def holders(self, e164: str) -> list[NumberHolder]:
        """Every contact, company and lead with the number (contacts first, newest first)."""
        return await self._read(_holders, e164)

    async def holder(self, kind: str, ident: int) -> NumberHolder | None:
        """One contact, company or lead by id (None: there is none)."""
        if kind not in _NAMES:
            raise ValueError(f"not a number holder kind: {kind!r}")
        return await self._read(_holder, kind, ident)

    # --- Bitrix24-style registered calls ----------------------------------------------------

    async def register(
        self,
        key: str,
        *,
        user_id: int | None,
        phone: str,
        call_type: int,
        request: dict[str, Any],
        now: datetime,
        reuse_within: timedelta = timedelta(minutes=30),
    ) -> tuple[Registration, bool]:
        """The open registration under `key` from the last `reuse_within`, or a new one;
        the flag says whether it is new. Concurrent registers of one key are serialized."""
        async with self.db.transaction() as s:
            await self.db.lock_identities(s, [f"externalcall:{key}"])
            row = await s.scalar(
                select(ExternalCall)
                .where(
                    ExternalCall.register_key == key,
                    ExternalCall.finished_at.is_(None),
                    ExternalCall.created_at > now - reuse_within,
                )
                .order_by(ExternalCall.id.desc())
                .limit(1)
            )
            if row is not None:
                return _registration(row), False
            row = ExternalCall(
                call_id=new_call_id(now),
                register_key=key,
                user_id=user_id,
                phone=phone[:60],
                call_type=call_type,
                created_at=now,
                entities={"request": request},
            )
            s.add(row)
            await s.flush()
            return _registration(row), True

    async def registration(self, call_id: str) -> Registration | None:
        async with self.db.transaction() as s:
            row = await s.scalar(select(ExternalCall).where(ExternalCall.call_id == call_id))
            return _registration(row) if row is not None else None

    async def remember(
        self,
        call_id: str,
        name: str,
        value: dict[str, Any],
        *,
        finished_at: datetime | None,
        facts: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store a reply under `name` unless one is stored already (the first one wins, so
        every repeat of a request gets the same answer); returns the stored reply. `facts`
        are kept with the first reply (what the call did in the CRM); `finished_at` also
        closes the registration."""
        async with self.db.transaction() as s:
            row = await s.scalar(select(ExternalCall).where(ExternalCall.call_id == call_id))
            if row is None:
                return value
            data = dict(row.entities or {})
            stored = data.get(name)
            if isinstance(stored, dict):
                return stored
            row.entities = {**data, **(facts or {}), name: value}
            if finished_at is not None and row.finished_at is None:
                row.finished_at = finished_at
            return value


def _registration(row: ExternalCall) -> Registration:
    return Registration(
        call_id=row.call_id,
        user_id=row.user_id,
        created_at=row.created_at,
        finished_at=row.finished_at,
        data=dict(row.entities or {}),
    )
