"""Telephony use cases: who holds a phone number (screen-pop, call routing, Bitrix24's
searchCrmEntities) and the state of Bitrix24-style registered calls (`ExternalCall`).

Lookups read a handful of indexed rows by column, never whole ORM graphs: a PBX asks while the
phone rings, so it has to stay fast with millions of contacts.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.db import Database
from crm.models import Communication, Company, Contact, Deal, ExternalCall, Lead, Rep

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
    data: dict[str, Any]  # "request" as parsed, "register" / "finish" replies once known


def new_call_id(now: datetime) -> str:
    """Bitrix24's CALL_ID shape: externalCall.<32 hex>.<unix seconds>."""
    return f"externalCall.{secrets.token_hex(16)}.{int(now.timestamp())}"


async def _reps(s: AsyncSession, ids: set[int | None]) -> dict[int, RepContact]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await s.execute(
        select(Rep.id, Rep.name, Rep.active, Rep.extension, Rep.phone).where(Rep.id.in_(wanted))
    )
    return {r.id: RepContact(r.id, r.name, r.active, r.extension, r.phone) for r in rows}


async def _holder_ids(s: AsyncSession, e164: str) -> dict[str, list[int]]:
    rows = await s.execute(
        select(Communication.owner_type, Communication.owner_id)
        .where(Communication.kind == "phone", Communication.value == e164)
        .order_by(Communication.id.desc())
        .limit(MAX_HOLDERS)
    )
    found: dict[str, list[int]] = {"contact": [], "company": [], "lead": []}
    for owner_type, owner_id in rows:
        ids = found.setdefault(owner_type, [])
        if owner_id not in ids:
            ids.append(owner_id)
    return found


def _newest(rows: Sequence[Any]) -> Any | None:
    return max(rows, key=lambda r: (r.modified_at, r.id), default=None)


class Telephony:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def reps(self) -> list[RepContact]:
        """Every rep with what a phone system needs (extension, number to put calls through)."""
        async with self.db.transaction() as s:
            rows = await s.execute(
                select(Rep.id, Rep.name, Rep.active, Rep.extension, Rep.phone).order_by(Rep.id)
            )
            return [RepContact(r.id, r.name, r.active, r.extension, r.phone) for r in rows]

    # --- who holds a number ---------------------------------------------------------------

    async def caller(self, e164: str) -> CallerInfo | None:
        """The client behind a number, or None when nobody has it.

        Contacts win over companies (a person answers the phone), the most recently changed
        one first; a lead counts when no client has the number.
        """
        async with self.db.transaction() as s:
            holders = await _holder_ids(s, e164)
            leads = await self._leads(s, holders["lead"])
            contact_ids = holders["contact"] + [x.contact_id for x in leads if x.contact_id]
            contact = _newest(
                (
                    await s.execute(
                        select(
                            Contact.id,
                            Contact.name,
                            Contact.company_id,
                            Contact.responsible_id,
                            Contact.modified_at,
                        ).where(Contact.id.in_(contact_ids))
                    )
                ).all()
                if contact_ids
                else []
            )
            company_ids = (
                [contact.company_id]
                if contact is not None and contact.company_id
                else holders["company"] + [x.company_id for x in leads if x.company_id]
            )
            company = _newest(
                (
                    await s.execute(
                        select(
                            Company.id, Company.title, Company.responsible_id, Company.modified_at
                        ).where(Company.id.in_(company_ids))
                    )
                ).all()
                if company_ids
                else []
            )
            if contact is None and company is None and not leads:
                return None
            deal = await self._open_deal(s, contact, company)
            lead = _newest([x for x in leads if x.status_semantic == "process"])
            if lead is None and (contact is not None or company is not None):
                lead = await self._open_client_lead(s, contact, company)
            owners = [x for x in (deal, lead, contact, company) if x is not None]
            resp_id = next((x.responsible_id for x in owners if x.responsible_id), None)
            reps = await _reps(s, {resp_id})
            return CallerInfo(
                number=e164,
                contact_id=contact.id if contact else None,
                contact_name=contact.name if contact else None,
                company_id=company.id if company else None,
                company_name=company.title if company else None,
                lead_id=lead.id if lead else None,
                lead_title=lead.title if lead else None,
                deal_id=deal.id if deal else None,
                deal_title=deal.title if deal else None,
                responsible=reps.get(resp_id) if resp_id else None,
            )

    async def holders(self, e164: str) -> list[NumberHolder]:
        """Every contact, company and lead with the number (contacts first, newest first)."""
        async with self.db.transaction() as s:
            found = await _holder_ids(s, e164)
            rows: list[tuple[str, Any]] = []
            if found["contact"]:
                query = select(Contact.id, Contact.name, Contact.responsible_id)
                for r in await s.execute(query.where(Contact.id.in_(found["contact"]))):
                    rows.append(("contact", r))
            if found["company"]:
                query = select(Company.id, Company.title.label("name"), Company.responsible_id)
                for r in await s.execute(query.where(Company.id.in_(found["company"]))):
                    rows.append(("company", r))
            if found["lead"]:
                query = select(Lead.id, Lead.title.label("name"), Lead.responsible_id)
                for r in await s.execute(query.where(Lead.id.in_(found["lead"]))):
                    rows.append(("lead", r))
            reps = await _reps(s, {r.responsible_id for _, r in rows})
            order = {"contact": 0, "company": 1, "lead": 2}
            rows.sort(key=lambda x: (order[x[0]], -x[1].id))
            return [
                NumberHolder(kind, r.id, r.name, reps.get(r.responsible_id)) for kind, r in rows
            ]

    async def _leads(self, s: AsyncSession, ids: list[int]) -> list[Any]:
        if not ids:
            return []
        query = select(
            Lead.id,
            Lead.title,
            Lead.status_semantic,
            Lead.contact_id,
            Lead.company_id,
            Lead.responsible_id,
            Lead.modified_at,
        )
        return list((await s.execute(query.where(Lead.id.in_(ids)))).all())

    async def _open_deal(self, s: AsyncSession, contact: Any, company: Any) -> Any | None:
        base = select(Deal.id, Deal.title, Deal.responsible_id, Deal.modified_at).where(
            Deal.stage_semantic == "process"
        )
        # Company first, like the matcher: its open deals win over the contact's.
        for column, owner in ((Deal.company_id, company), (Deal.contact_id, contact)):
            if owner is None:
                continue
            query = base.where(column == owner.id).order_by(Deal.modified_at.desc(), Deal.id.desc())
            row = (await s.execute(query.limit(1))).first()
            if row is not None:
                return row
        return None

    async def _open_client_lead(self, s: AsyncSession, contact: Any, company: Any) -> Any | None:
        query = select(Lead.id, Lead.title, Lead.responsible_id, Lead.modified_at).where(
            Lead.status_semantic == "process"
        )
        if contact is not None:
            query = query.where(Lead.contact_id == contact.id)
        else:
            query = query.where(Lead.company_id == company.id)
        query = query.order_by(Lead.modified_at.desc(), Lead.id.desc()).limit(1)
        return (await s.execute(query)).first()

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
        self, call_id: str, name: str, value: dict[str, Any], *, finished_at: datetime | None
    ) -> dict[str, Any]:
        """Store a reply under `name` unless one is stored already (the first one wins, so
        every repeat of a request gets the same answer); returns the stored reply.
        `finished_at` also closes the registration."""
        async with self.db.transaction() as s:
            row = await s.scalar(select(ExternalCall).where(ExternalCall.call_id == call_id))
            if row is None:
                return value
            data = dict(row.entities or {})
            stored = data.get(name)
            if isinstance(stored, dict):
                return stored
            row.entities = {**data, name: value}
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
