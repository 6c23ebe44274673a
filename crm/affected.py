"""Which caller answers a transaction's changes may alter: the E.164 numbers a `Change`
carries, so that a cache of answers (`crm.services.callers`) drops only those.

The answer for a number (`crm.services.telephony.caller_sql`) reads the records holding it,
the contact of a lead holding it, the company of that contact (or of a holder), and the
newest open deal and lead of that company or contact. So a change of
- a phone alters the answers of its numbers before and after (`crm.tracking` puts them on
  the change itself);
- a contact: those of its phones and of the phones of leads linked to it;
- a company: those of its phones, its contacts' and its leads' (and those contacts' leads');
- a lead: those of its own phones, and of its contact's and company's, before and after;
- a deal: those of its contact's and company's, before and after.
They are read in one statement just before the commit (the transaction sees its own
writes); the clients of leads and deals written around the ORM (intake's multi-row INSERTs)
in one more. More than `CAP` numbers (a company with many contacts) leave the transaction's
changes unknown: every answer is dropped, as before.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from typing import Any

from sqlalchemy import any_, func, literal_column, select
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

# crm.db runs `resolve` at each commit: imported as a module, read when called.
from crm import db
from crm.bulk import fetch
from crm.models import Communication, Contact, Deal, Lead
from crm.tracking import Key, clients_of, pending

_PG = PGDialect_asyncpg()  # type: ignore[no-untyped-call]

# More numbers than this for one transaction: cheaper to drop every answer than to send them.
CAP = 500

_OWNED = ("contact", "company", "lead")  # records whose own phones count


def _tag(kind: str) -> Any:
    return literal_column(f"'{kind}'")  # a constant of ours, not a bound parameter


def _union(parts: list[Any]) -> Any:
    first, *rest = parts
    return first.union_all(*rest) if rest else first


def _phones(owner_type: str) -> Any:
    comm = Communication
    return (comm.kind == "phone", comm.owner_type == owner_type, comm.value.is_not(None))


@cache
def _numbers_query(contacts: bool, companies: bool, leads: bool, pg: bool, cap: int) -> Any:
    """(kind, id, number) rows: the numbers whose answers depend on each client or lead, the
    ids given as the parameters `contacts`, `companies`, `leads` (those flagged here). Built
    once per shape: a transaction's commit runs it with its own ids.

    Each part picks its phones by their holders' ids found first and reads the client a
    number answers for by a correlated look-up: written as joins, SQLite's planner started
    from every phone of the owner type (a scan of all of them at a million contacts). On
    PostgreSQL the holders' ids are an array built before the phones are read
    (`= ANY(ARRAY(subquery))`, an InitPlan) rather than `IN (subquery)`, which it may turn
    into a join in either order: on tables not analyzed yet (a new deployment after a bulk
    load, before autovacuum's ANALYZE) it guesses each owner type and `kind = 'phone'` rare,
    and started from all of a type's phones to probe the holder of each, seconds per commit
    at a million contacts (analyzed, it walked all leads by contact for a hundred companies).
    """
    comm, lead, contact = Communication, Lead, Contact
    parts: list[Any] = []

    def of(column: Any, name: str) -> Any:
        return db.among(column, name, pg=pg)

    def within(column: Any, holders: Any) -> Any:
        if pg:
            return column == any_(func.array(holders.scalar_subquery()))
        return column.in_(holders)

    def held_by(holders: Any) -> Any:
        return within(comm.owner_id, holders)

    def phones(kind: str, key: Any, owner_type: str, which: Any) -> None:
        parts.append(select(_tag(kind), key, comm.value).where(*_phones(owner_type), which))

    if leads:
        phones("lead", comm.owner_id, "lead", of(comm.owner_id, "leads"))
    if contacts:
        phones("contact", comm.owner_id, "contact", of(comm.owner_id, "contacts"))
        phones(
            "contact",
            select(lead.contact_id).where(lead.id == comm.owner_id).scalar_subquery(),
            "lead",
            held_by(select(lead.id).where(of(lead.contact_id, "contacts"))),
        )
    if companies:
        of_companies = select(contact.id).where(of(contact.company_id, "companies"))
        phones("company", comm.owner_id, "company", of(comm.owner_id, "companies"))
        phones(
            "company",
            select(contact.company_id).where(contact.id == comm.owner_id).scalar_subquery(),
            "contact",
            held_by(of_companies),
        )
        phones(
            "company",
            select(lead.company_id).where(lead.id == comm.owner_id).scalar_subquery(),
            "lead",
            held_by(select(lead.id).where(of(lead.company_id, "companies"))),
        )
        phones(
            "company",
            select(contact.company_id)
            .select_from(lead)
            .join(contact, contact.id == lead.contact_id)
            .where(lead.id == comm.owner_id)
            .scalar_subquery(),
            "lead",
            held_by(select(lead.id).where(within(lead.contact_id, of_companies))),
        )
    return _union(parts).limit(cap + 1)


@cache
def _clients_query(leads: bool, deals: bool, pg: bool) -> Any:
    """(kind, id, contact id, company id) of the leads and deals in the parameters `leads`,
    `deals` (those flagged here); built once per shape, as `_numbers_query`."""
    parts = [
        select(_tag(kind), model.id, model.contact_id, model.company_id).where(
            db.among(model.id, f"{kind}s", pg=pg)
        )
        for kind, model, wanted in (("lead", Lead, leads), ("deal", Deal, deals))
        if wanted
    ]
    return _union(parts)


@cache
def _pg_text(query: Any) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """A statement's text for asyncpg, the names of its parameters in order and the values
    of those it binds itself: compiled once, then sent straight through asyncpg, with none
    of SQLAlchemy's execution and result processing at each commit."""
    compiled = query.compile(dialect=_PG)
    return compiled.string, tuple(compiled.positiontup or ()), dict(compiled.params)


async def _rows(session: AsyncSession, query: Any, params: dict[str, Any], pg: bool) -> list[Any]:
    if not pg:
        return list(await session.execute(query, params))
    sql, names, own = _pg_text(query)
    return await fetch(session, sql, *[params[n] if n in params else own[n] for n in names])


async def resolve(session: AsyncSession) -> None:
    """Fill in the numbers of the transaction's changes that do not say them yet (before
    its commit, after its last flush)."""
    changes, clients = pending(session.sync_session)
    depends: dict[Key, set[Key]] = {}
    unread: list[Key] = []  # leads and deals written around the ORM: clients read here
    for change in changes:
        key = (change.kind, change.id)
        if change.numbers is not None or key in depends:
            continue
        if change.kind in ("lead", "deal"):
            depends[key] = set(clients.get(key, ()))
            if key not in clients:
                unread.append(key)
        elif change.kind not in _OWNED:
            continue  # an activity alters no answer; the cache knows that by its kind
        else:
            depends[key] = set()
        if change.kind in _OWNED:
            depends[key].add(key)
    if not depends:
        return
    pg = db.is_pg(session)
    if unread:
        of = {f"{kind}s": sorted({i for k, i in unread if k == kind}) for kind in ("lead", "deal")}
        query = _clients_query(bool(of["leads"]), bool(of["deals"]), pg)
        clients_now = await _rows(session, query, {k: v for k, v in of.items() if v}, pg)
        for kind, ident, contact_id, company_id in clients_now:
            deps = depends[(kind, ident)]
            deps.update(clients_of(contact_id, company_id))
    wanted: dict[str, set[int]] = defaultdict(set)
    for deps in depends.values():
        for kind, ident in deps:
            wanted[kind].add(ident)
    rows = []
    if wanted:
        ids = {
            "contacts": sorted(wanted["contact"]),
            "companies": sorted(wanted["company"]),
            "leads": sorted(wanted["lead"]),
        }
        shape = (bool(ids["contacts"]), bool(ids["companies"]), bool(ids["leads"]))
        query = _numbers_query(*shape, pg, CAP)
        rows = await _rows(session, query, {k: v for k, v in ids.items() if v}, pg)
    if len(rows) > CAP:
        return  # all stay unknown
    numbers: dict[Key, set[str]] = defaultdict(set)
    for kind, ident, number in rows:
        numbers[(kind, ident)].add(number)
    for i, change in enumerate(changes):
        on = depends.get((change.kind, change.id))
        if on is not None and change.numbers is None:
            found = sorted({n for dep in on for n in numbers.get(dep, ())})
            changes[i] = change.with_numbers(tuple(found))
