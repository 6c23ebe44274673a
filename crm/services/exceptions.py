"""The exception list: phones and emails whose contacts never enter the CRM.

Unlike Bitrix24, adding a record's sender to the list never deletes the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bulk import fetch
from crm.bulk_sqlite import fetch as sqlite_fetch
from crm.db import Database, is_pg
from crm.dto import SYSTEM, Actor, ExceptionView
from crm.errors import Conflict, Forbidden, InvalidInput, NotFound
from crm.models import Communication, ExceptionEntry, Lead, utcnow
from crm.services.access import get_or_404
from matching.model import Identity
from matching.normalize import normalize_email, normalize_phone


def normalize_exception(value: str, region: str) -> tuple[str, str]:
    """(kind, normalized value) of a typed phone or email, or InvalidInput."""
    value = value.strip()
    if "@" in value:
        email = normalize_email(value)
        if email is None:
            raise InvalidInput(f"{value!r} is not an email address")
        return "email", email
    phone = normalize_phone(value, region)
    if phone.e164 is None:
        raise InvalidInput(f"{value!r} is neither an email address nor a phone number")
    return "phone", phone.e164


def _view(e: ExceptionEntry) -> ExceptionView:
    return ExceptionView(
        id=e.id,
        kind=e.kind,
        value=e.value,
        comment=e.comment,
        added_by=e.added_by,
        created_at=e.created_at,
    )


class Exceptions:
    def __init__(self, db: Database, region: str) -> None:
        self.db = db
        self.region = region

    async def add(
        self, value: str, comment: str | None = None, actor: Actor = SYSTEM
    ) -> ExceptionView:
        self._require(actor)
        kind, norm = normalize_exception(value, self.region)
        try:
            async with self.db.transaction() as s:
                entry = ExceptionEntry(
                    kind=kind,
                    value=norm,
                    comment=comment,
                    added_by=actor.rep_id,
                    created_at=utcnow(),
                )
                s.add(entry)
                await s.flush()
                return _view(entry)
        except IntegrityError:
            raise Conflict(f"{norm} is on the exception list already") from None

    async def add_from_lead(
        self, lead_id: int, comment: str | None = None, actor: Actor = SYSTEM
    ) -> list[ExceptionView]:
        """Put a lead's phones and emails (or its client's) on the list; records stay."""
        self._require(actor)
        async with self.db.transaction() as s:
            lead: Lead = await get_or_404(s, Lead, lead_id, "lead")
            owners = [("lead", lead.id)]
            if lead.contact_id:
                owners.append(("contact", lead.contact_id))
            if lead.company_id:
                owners.append(("company", lead.company_id))
            values: set[tuple[str, str]] = set()
            for owner_type, owner_id in owners:
                rows = await s.execute(
                    select(Communication.kind, Communication.value).where(
                        Communication.owner_type == owner_type,
                        Communication.owner_id == owner_id,
                        Communication.kind.in_(("phone", "email")),
                        Communication.value.is_not(None),
                    )
                )
                values |= {(k, v) for k, v in rows if v}
            if not values:
                raise InvalidInput(f"lead #{lead_id} has no phone or email to except")
            added = []
            for kind, value in sorted(values):
                exists = await s.scalar(
                    select(ExceptionEntry).where(
                        ExceptionEntry.kind == kind, ExceptionEntry.value == value
                    )
                )
                if exists is None:
                    entry = ExceptionEntry(
                        kind=kind,
                        value=value,
                        comment=comment or f"from lead #{lead_id}",
                        added_by=actor.rep_id,
                        created_at=utcnow(),
                    )
                    s.add(entry)
                    await s.flush()
                    added.append(_view(entry))
            return added

    async def remove(self, value: str, actor: Actor = SYSTEM) -> None:
        self._require(actor)
        kind, norm = normalize_exception(value, self.region)
        async with self.db.transaction() as s:
            entry = await s.scalar(
                select(ExceptionEntry).where(
                    ExceptionEntry.kind == kind, ExceptionEntry.value == norm
                )
            )
            if entry is None:
                raise NotFound(f"{norm} is not on the exception list")
            await s.delete(entry)

    async def all(self) -> list[ExceptionView]:
        async with self.db.read() as s:
            rows = await s.scalars(select(ExceptionEntry).order_by(ExceptionEntry.id))
            return [_view(e) for e in rows]

    @staticmethod
    def _require(actor: Actor) -> None:
        if not actor.sees_everything:
            raise Forbidden("only a supervisor or an admin can change the exception list")


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


async def exception_hits(s: AsyncSession, identities: Sequence[Identity]) -> list[Identity]:
    """Which of these identities are on the exception list."""
    # str() of a StrEnum member is its value, without `.value`'s Python-level property.
    wanted = [i for i in identities if str(i.kind) in ("phone", "email")]
    if not wanted:
        return []
    pairs = [(str(i.kind), i.value) for i in wanted]
    rows: Sequence[Any]
    if is_pg(s):  # read by every intake round; the same statement for any number of pairs
        # The pairs as a relation joined to the list: a hash join, where `value = ANY($2)` of
        # a generic plan compared every listed value with every asked one.
        kinds, values = zip(*sorted(set(pairs)), strict=True)
        rows = await fetch(
            s,
            "SELECT e.kind, e.value FROM exceptions e"
            " JOIN unnest($1::varchar[], $2::varchar[]) AS w(kind, value)"
            " ON e.kind = w.kind AND e.value = w.value",
            list(kinds),
            list(values),
        )
    else:  # each column IN its own list, as `pairs_in` (cross pairs are dropped below)
        asked_kinds = sorted({k for k, _ in pairs})
        asked_values = sorted({v for _, v in pairs})
        rows = await sqlite_fetch(
            s,
            f"SELECT kind, value FROM exceptions WHERE kind IN ({_marks(asked_kinds)})"
            f" AND value IN ({_marks(asked_values)})",
            *asked_kinds,
            *asked_values,
        )
    listed = {(k, v) for k, v in rows}
    return [i for i in wanted if (str(i.kind), i.value) in listed]
