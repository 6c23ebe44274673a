"""The records linked to a lead, contact, company or deal (what a record page lists beside its
history): the lead's client and the deals it became, a contact's company, leads and deals, a
company's contacts, leads and deals, a deal's client and the lead it came from.

Only what the actor may open is named; a linked record of another rep's shows as its type and
number, without its title (the page then knows it exists, no more)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import Actor
from crm.errors import InvalidInput
from crm.models import Company, Contact, Deal, Lead
from crm.services.access import check_access, get_or_404
from crm.services.rows import OWNER_MODELS
from crm.services.views import deal_views, lead_views

# How many linked records of one type a page lists (newest first).
LINK_LIMIT = 20


@dataclass(frozen=True, slots=True)
class Linked:
    """One linked record. `title` and `state` are None when the actor may not open it."""

    kind: str  # lead | deal | contact | company
    id: int
    title: str | None
    state: str | None = None  # a lead's status or a deal's stage, by name
    is_open: bool | None = None
    role: str = ""  # how it is linked: "client", "came from", "converted into", …


class Related:
    def __init__(self, db: Database, config: CrmConfig) -> None:
        self.db = db
        self.config = config

    async def of(self, owner_type: str, owner_id: int, actor: Actor) -> list[Linked]:
        """The records linked to one the actor may open, in a fixed order: client first
        (company, contact), then leads, then deals, each newest first."""
        model = OWNER_MODELS.get(owner_type)
        if model is None:
            raise InvalidInput(f"unknown record type {owner_type!r}")
        async with self.db.read() as s:
            root = await get_or_404(s, model, owner_id, owner_type)
            check_access(actor, root.responsible_id, f"{owner_type} #{owner_id}")
            if owner_type == "lead":
                return [
                    *await self._client(s, root.company_id, root.contact_id, actor),
                    *await self._deals(s, Deal.lead_id == owner_id, actor, "converted into"),
                    *await self._earlier(s, root, actor),
                ]
            if owner_type == "deal":
                client = await self._client(s, root.company_id, root.contact_id, actor)
                if root.lead_id is None:
                    return client
                return client + await self._leads(s, Lead.id == root.lead_id, actor, "came from")
            column = Lead.contact_id if owner_type == "contact" else Lead.company_id
            deal_column = Deal.contact_id if owner_type == "contact" else Deal.company_id
            out = []
            if owner_type == "contact":
                out += await self._client(s, root.company_id, None, actor)
            else:
                out += await self._contacts(s, owner_id, actor)
            out += await self._leads(s, column == owner_id, actor, "lead")
            out += await self._deals(s, deal_column == owner_id, actor, "deal")
            return out

    async def _client(
        self, s: AsyncSession, company_id: int | None, contact_id: int | None, actor: Actor
    ) -> list[Linked]:
        out = []
        company = await s.get(Company, company_id) if company_id is not None else None
        if company is not None:
            title = company.title if _sees(actor, company) else None
            out.append(Linked("company", company.id, title, role="client"))
        contact = await s.get(Contact, contact_id) if contact_id is not None else None
        if contact is not None:
            name = contact.name if _sees(actor, contact) else None
            out.append(Linked("contact", contact.id, name, role="client"))
        return out

    async def _contacts(self, s: AsyncSession, company_id: int, actor: Actor) -> list[Linked]:
        rows = await s.scalars(
            select(Contact)
            .where(Contact.company_id == company_id)
            .order_by(Contact.id.desc())
            .limit(LINK_LIMIT)
        )
        return [
            Linked("contact", c.id, c.name if _sees(actor, c) else None, role="contact")
            for c in rows
        ]

    async def _leads(self, s: AsyncSession, where: Any, actor: Actor, role: str) -> list[Linked]:
        rows = await self._newest(s, Lead, where)
        views = await lead_views(s, self.config, rows)
        return [
            _linked("lead", v.id, v.title, v.status_name, v.is_open, role, _sees(actor, row))
            for row, v in zip(rows, views, strict=True)
        ]

    async def _deals(self, s: AsyncSession, where: Any, actor: Actor, role: str) -> list[Linked]:
        rows = await self._newest(s, Deal, where)
        views = await deal_views(s, rows)
        return [
            _linked("deal", v.id, v.title, v.stage_name, v.is_open, role, _sees(actor, row))
            for row, v in zip(rows, views, strict=True)
        ]

    @staticmethod
    async def _newest(s: AsyncSession, model: Any, where: Any) -> list[Any]:
        query = select(model).where(where).order_by(model.id.desc()).limit(LINK_LIMIT)
        return list(await s.scalars(query))

    async def _earlier(self, s: AsyncSession, lead: Lead, actor: Actor) -> list[Linked]:
        """A repeat lead's client's other leads and deals (what makes it a repeat)."""
        if lead.company_id is None and lead.contact_id is None:
            return []
        lead_client = (
            Lead.company_id == lead.company_id
            if lead.company_id
            else Lead.contact_id == lead.contact_id
        )
        deal_client = (
            Deal.company_id == lead.company_id
            if lead.company_id
            else Deal.contact_id == lead.contact_id
        )
        return [
            *await self._leads(s, lead_client & (Lead.id != lead.id), actor, "client's lead"),
            *await self._deals(
                s,
                deal_client & ((Deal.lead_id != lead.id) | Deal.lead_id.is_(None)),
                actor,
                "client's deal",
            ),
        ]


def _sees(actor: Actor, row: Any) -> bool:
    return actor.sees_everything or row.responsible_id in (None, actor.rep_id)


def _linked(
    kind: str, ident: int, title: str, state: str, is_open: bool, role: str, sees: bool
) -> Linked:
    if not sees:
        return Linked(kind, ident, None, role=role)
    return Linked(kind, ident, title, state, is_open, role)
