"""Which records a transaction's ORM flushes created, changed or deleted, kept on the session
until `Database.transaction` publishes them after the commit (`crm.changes`). Writes that go
around the ORM (intake's multi-row INSERTs) add theirs with `record`."""

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


class TrackedSession(Session):
    """The sessions of `Database.transaction`: their flushes are watched (below)."""


def record(session: Session, changes: Iterable[Change]) -> None:
    """Add changes made around the ORM; published if the transaction commits."""
    session.info.setdefault(_KEY, []).extend(changes)


def collected(session: Session) -> list[Change]:
    """The committed transaction's changes, one per record (and forgotten)."""
    return merge(session.info.pop(_KEY, []))


def _change(obj: Any, action: str, fields: tuple[str, ...] = ()) -> Change | None:
    table = getattr(obj, "__tablename__", None)
    if table == "communications":  # a phone or address added to / edited on its owner
        kind = {"contact": "contact", "company": "company", "lead": "lead"}.get(obj.owner_type)
        if kind is None or obj.owner_id is None:
            return None
        return Change(kind, obj.owner_id, "changed", acting_rep.get(), utcnow(), ("phones",))
    kind = KIND_OF_TABLE.get(table or "")
    if kind is None or obj.id is None:
        return None
    owner = getattr(obj, "responsible_id", None)
    actor = acting_rep.get()
    if actor is None and kind == "activity":
        actor = obj.author_id  # a comment or reminder names its author
    return Change(kind, obj.id, action, actor, utcnow(), fields, owner)


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
    record(session, (c for c in found if c is not None))
