"""Which records a transaction's ORM flushes created, changed or deleted, kept on the session
until `Database.transaction` publishes them after the commit (`crm.changes`). Writes that go
around the ORM (intake's multi-row INSERTs) add theirs with `record`.

Beside each change, what `crm.affected` needs to tell which caller answers it may alter: a
phone's numbers before and after (on the change itself), and the clients (contact, company)
a lead or deal had before and after the change (`clients`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, UOWTransaction

from crm.changes import Change, acting_rep, merge
from crm.models import utcnow

KIND_OF_TABLE = {
    "leads": "lead",
    "deals": "deal",
    "contacts": "contact",
    "companies": "company",
    "activities": "activity",
}
_KEY = "changes"
_CLIENTS = "clients"
# What a lead's or deal's answers depend on besides its own phones.
_CLIENT_COLUMNS = (("contact_id", "contact"), ("company_id", "company"))

Key = tuple[str, int]  # (kind, id) of a record


class TrackedSession(Session):
    """The sessions of `Database.transaction`: their flushes are watched (below)."""


def record(session: Session, changes: Iterable[Change]) -> None:
    """Add changes made around the ORM; published if the transaction commits."""
    session.info.setdefault(_KEY, []).extend(changes)


def clients_of(contact_id: int | None, company_id: int | None) -> list[Key]:
    """A lead's or deal's clients (its contact and company, those it has)."""
    return [(k, i) for k, i in (("contact", contact_id), ("company", company_id)) if i]


def record_clients(session: Session, record: Key, clients: Iterable[Key]) -> None:
    """Say which contact and company a lead or deal (`record`) had, before or after."""
    found: dict[Key, set[Key]] = session.info.setdefault(_CLIENTS, {})
    found.setdefault(record, set()).update(clients)


def pending(session: Session) -> tuple[list[Change], dict[Key, set[Key]]]:
    """The changes recorded so far (the list itself, to fill in) and the clients of leads
    and deals, for `crm.affected` before the commit."""
    return session.info.setdefault(_KEY, []), session.info.get(_CLIENTS, {})


def collected(session: Session) -> list[Change]:
    """The committed transaction's changes, one per record (and forgotten)."""
    session.info.pop(_CLIENTS, None)
    return merge(session.info.pop(_KEY, []))


def _change(obj: Any, action: str, fields: tuple[str, ...] = ()) -> Change | None:
    table = getattr(obj, "__tablename__", None)
    if table == "communications":  # a phone or address added to / edited on its owner
        kind = {"contact": "contact", "company": "company", "lead": "lead"}.get(obj.owner_type)
        if kind is None or obj.owner_id is None:
            return None
        return Change(
            kind,
            obj.owner_id,
            "changed",
            acting_rep.get(),
            utcnow(),
            ("phones",),
            numbers=_phone_numbers(obj),
        )
    kind = KIND_OF_TABLE.get(table or "")
    if kind is None or obj.id is None:
        return None
    owner = getattr(obj, "responsible_id", None)
    actor = acting_rep.get()
    if actor is None and kind == "activity":
        actor = obj.author_id  # a comment or reminder names its author
    return Change(kind, obj.id, action, actor, utcnow(), fields, owner)


def _values(obj: Any, column: str) -> list[Any]:
    """The column's value now and, for a changed object, before (not yet committed)."""
    history = inspect(obj).attrs[column].history
    return [*history.added, *history.unchanged, *history.deleted]


def _phone_numbers(comm: Any) -> tuple[str, ...]:
    """The numbers a phone row had and has: a moved, edited or removed phone alters the
    answers of both (an email or messenger id alters none)."""
    if "phone" not in _values(comm, "kind"):
        return ()
    return tuple(dict.fromkeys(v for v in _values(comm, "value") if v))


def _clients(session: Session, obj: Any) -> None:
    table = getattr(obj, "__tablename__", None)
    if table in ("leads", "deals") and obj.id is not None:
        record_clients(
            session,
            (KIND_OF_TABLE[table], obj.id),
            ((kind, v) for column, kind in _CLIENT_COLUMNS for v in _values(obj, column) if v),
        )


@event.listens_for(TrackedSession, "after_flush")
def _after_flush(session: Session, _ctx: UOWTransaction) -> None:
    found: list[Change | None] = [_change(o, "created") for o in session.new]
    found += [_change(o, "deleted") for o in session.deleted]
    for obj in session.dirty:
        state = inspect(obj)
        fields = tuple(
            a.key for a in state.mapper.column_attrs if state.attrs[a.key].history.has_changes()
        )
        if fields:
            found.append(_change(obj, "changed", fields))
            _clients(session, obj)
    for obj in (*session.new, *session.deleted):
        _clients(session, obj)
    record(session, (c for c in found if c is not None))
