"""Rows the services write besides the record itself: timeline entries, communications,
activity bindings, `RowSink`, which gathers inserts for one multi-row INSERT per table, and
`forget_state`, which drops old rows of the `state` table."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bulk import Together, driver, insert_rows
from crm.bulk_sqlite import Writes
from crm.dto import (
    Actor,
)
from crm.models import (
    ActivityBinding,
    Base,
    Communication,
    Company,
    Contact,
    Deal,
    KeyValue,
    Lead,
    TimelineEntry,
    utcnow,
)
from matching.model import CommKind, EventIdentities, PhoneNumber

OWNER_MODELS: dict[str, Any] = {"lead": Lead, "deal": Deal, "contact": Contact, "company": Company}


@cache
def _table_order() -> dict[Any, int]:
    """The tables' foreign-key order (`sorted_tables` sorts them anew on every read)."""
    return {t: n for n, t in enumerate(Base.metadata.sorted_tables)}


class RowSink:
    """Rows nobody reads back in the transaction (timeline, bindings, comms of a batch),
    written later in one multi-row INSERT per table instead of an ORM object each."""

    def __init__(self) -> None:
        # (model, the values its rows share) → the rows' own values
        self._rows: dict[tuple[Any, tuple[tuple[str, Any], ...]], list[dict[str, Any]]] = (
            defaultdict(list)
        )

    def add(self, model: Any, shared: Mapping[str, Any] | None = None, /, **values: Any) -> None:
        """`shared`: values the caller gives every row of its kind alike (the round's time
        stamps): sent once per statement on PostgreSQL, where each value of a row costs its
        encoding."""
        self._rows[(model, tuple(shared.items()) if shared else ())].append(values)

    async def flush(
        self,
        session: AsyncSession,
        together: Together | None = None,
        writes: Writes | None = None,
    ) -> None:
        """Parents before children (the tables' foreign-key order); one statement per table,
        set of columns given and shared values. On PostgreSQL with `together`: added to it,
        to go with other writes in one statement. On SQLite (around SQLAlchemy, every
        statement in one trip to the connection's thread): added to `writes` when given, for
        the caller to run with its own."""
        order = _table_order()
        conn = await driver(session) if session.get_bind().dialect.name == "postgresql" else None
        lite = Writes() if writes is None else writes
        for model, shared in sorted(self._rows, key=lambda k: order[k[0].__table__]):
            same = dict(shared)
            shapes: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
            for row in self._rows[(model, shared)]:
                shapes[tuple(row)].append(row)
            for rows in shapes.values():
                if conn is not None and together is not None:
                    await together.insert(conn, model.__table__, rows, same=same)
                elif conn is not None:
                    await insert_rows(conn, model.__table__, rows, same=same)
                else:
                    lite.insert(model.__table__, rows, same=same)
        self._rows.clear()
        if writes is None:
            await lite.run(session)


def _put(session: AsyncSession, sink: RowSink | None, model: Any, **values: Any) -> None:
    if sink is not None:
        sink.add(model, **values)
    else:
        session.add(model(**values))


def add_timeline(
    session: AsyncSession,
    owner_type: str,
    owner_id: int,
    action: str,
    actor: Actor | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    *,
    sink: RowSink | None = None,
) -> None:
    _put(
        session,
        sink,
        TimelineEntry,
        owner_type=owner_type,
        owner_id=owner_id,
        actor_id=actor.rep_id if actor else None,
        action=action,
        before=_jsonable(before),
        after=_jsonable(after),
        at=utcnow(),
    )


def _jsonable(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if data is None:
        return None
    return {
        k: (v if isinstance(v, str | int | float | bool | None) else str(v))
        for k, v in data.items()
    }


async def add_comms(
    session: AsyncSession,
    owner_type: str,
    owner_id: int,
    ids: EventIdentities,
    *,
    include_invalid: bool = True,
    handle_labels: dict[str, str | None] | None = None,
    fresh: bool = False,
    held: set[tuple[str, str]] | None = None,
    sink: RowSink | None = None,
) -> list[str]:
    """Attach the event's phones / emails / handles the owner does not have yet.

    Returns the normalized values added (for the timeline). Invalid phones are kept raw with
    value None so a rep can still read them, but they never match anyone. `held`: what the
    owner is already known to hold of these (valid) values, from a lookup the caller made.
    """
    have: set[tuple[str, str]] = set(held or ())
    if not fresh and held is None:  # a record created in this transaction has nothing yet
        existing = await session.execute(
            select(Communication.kind, Communication.value, Communication.raw_value).where(
                Communication.owner_type == owner_type, Communication.owner_id == owner_id
            )
        )
        have = {(k, v if v is not None else f"raw:{r}") for k, v, r in existing}
    added: list[str] = []

    def _add(
        kind: str, raw: str, value: str | None, label: str | None = None, ext: str | None = None
    ) -> bool:
        key = (kind, value if value is not None else f"raw:{raw}")
        if key in have:
            return False
        have.add(key)
        _put(
            session,
            sink,
            Communication,
            kind=kind,
            raw_value=raw[:320],
            value=value,
            owner_type=owner_type,
            owner_id=owner_id,
            label=label,
            extension=ext[:20] if ext else None,
        )
        added.append(value or raw)
        return True

    for phone in ids.phones:
        if phone.valid or include_invalid:
            label = None if phone.valid else "invalid"
            kept = _add(CommKind.PHONE.value, phone.raw, phone.e164, label, phone.extension)
            if not kept and not fresh and phone.e164 and phone.extension:
                # Known number, now with an extension: the rep should see where to dial.
                await _fill_extension(session, owner_type, owner_id, phone)
    for email in ids.emails:
        _add(CommKind.EMAIL.value, email, email)
    for handle in ids.handles:
        label = (handle_labels or {}).get(handle.value)
        _add(handle.kind.value, label or handle.value, handle.value, label)
    return added


async def _fill_extension(
    session: AsyncSession, owner_type: str, owner_id: int, phone: PhoneNumber
) -> None:
    """Give the owner's entry of this number the extension it lacks (a known one is kept)."""
    await session.execute(
        update(Communication)
        .where(
            Communication.owner_type == owner_type,
            Communication.owner_id == owner_id,
            Communication.kind == CommKind.PHONE.value,
            Communication.value == phone.e164,
            Communication.extension.is_(None),
        )
        .values(extension=(phone.extension or "")[:20])
        .execution_options(synchronize_session=False)
    )


async def bind_activity(
    session: AsyncSession,
    activity_id: int,
    owners: Iterable[tuple[str, int | None]],
    fresh: bool = False,
    sink: RowSink | None = None,
) -> None:
    have: set[tuple[str, int]] = set()
    if not fresh:
        existing = await session.execute(
            select(ActivityBinding.owner_type, ActivityBinding.owner_id).where(
                ActivityBinding.activity_id == activity_id
            )
        )
        have = {(t, i) for t, i in existing}
    for owner_type, owner_id in owners:
        if owner_id is not None and (owner_type, owner_id) not in have:
            have.add((owner_type, owner_id))
            _put(
                session,
                sink,
                ActivityBinding,
                activity_id=activity_id,
                owner_type=owner_type,
                owner_id=owner_id,
            )


async def forget_state(s: AsyncSession, prefixes: Iterable[str], before: datetime) -> int:
    """Delete `state` rows under any of `prefixes` last written before `before`; how many."""
    under = or_(*(KeyValue.key.startswith(p) for p in prefixes))
    gone = await s.execute(delete(KeyValue).where(under, KeyValue.updated_at < before))
    return int(getattr(gone, "rowcount", 0) or 0)
