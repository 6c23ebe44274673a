"""Leads: create, status, take, assign, convert, junk, list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import SYSTEM, Actor, DealView, LeadView
from crm.errors import Conflict, InvalidInput, NotFound
from crm.identity import identities_from_values
from crm.models import (
    ActivityBinding,
    Communication,
    Company,
    Contact,
    Deal,
    Lead,
    utcnow,
)
from crm.services.access import act_as, check_access, get_or_404
from crm.services.builders import company_row, contact_row, deal_row, lead_row
from crm.services.editing import assign
from crm.services.flags import recompute_client_flags
from crm.services.listing import ListFilter, apply_common, page_of, visible_to
from crm.services.pipelines import pipeline_by_code, stage_by_code
from crm.services.rows import add_comms, add_timeline, bind_activity
from crm.services.views import deal_views, lead_views


@dataclass(frozen=True, slots=True)
class LeadInput:
    title: str
    source: str = "OTHER"
    name: str | None = None
    company_title: str | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    responsible_id: int | None = None
    contact_id: int | None = None
    company_id: int | None = None
    comments: str | None = None


@dataclass(frozen=True, slots=True)
class ConversionResult:
    lead: LeadView
    contact_id: int | None
    company_id: int | None
    deal: DealView | None


class Leads:
    def __init__(self, db: Database, config: CrmConfig) -> None:
        self.db = db
        self.config = config

    async def create(self, data: LeadInput, actor: Actor = SYSTEM) -> LeadView:
        if not data.title.strip():
            raise InvalidInput("a lead needs a title")
        async with self.db.transaction() as s:
            for model, ident, what in (
                (Contact, data.contact_id, "contact"),
                (Company, data.company_id, "company"),
            ):
                if ident is not None:
                    await get_or_404(s, model, ident, what)
            lead = Lead(
                **lead_row(
                    self.config,
                    title=data.title.strip(),
                    source=data.source,
                    # Bitrix24 R4.2: a lead saved with a client is a repeat lead.
                    is_return_customer=data.contact_id is not None or data.company_id is not None,
                    name=data.name,
                    company_title=data.company_title,
                    contact_id=data.contact_id,
                    company_id=data.company_id,
                    responsible_id=data.responsible_id,
                    comments=data.comments,
                    now=utcnow(),
                )
            )
            act_as(actor)
            s.add(lead)
            await s.flush()
            ids = identities_from_values(data.phones, data.emails, self.config.default_region)
            await add_comms(s, "lead", lead.id, ids)
            add_timeline(s, "lead", lead.id, "created", actor, after={"title": lead.title})
            return (await lead_views(s, self.config, [lead]))[0]

    async def get(self, lead_id: int, actor: Actor = SYSTEM) -> LeadView:
        async with self.db.read() as s:
            lead: Lead = await get_or_404(s, Lead, lead_id, "lead")
            check_access(actor, lead.responsible_id, f"lead #{lead_id}")
            return (await lead_views(s, self.config, [lead]))[0]

    async def change_status(self, lead_id: int, status: str, actor: Actor = SYSTEM) -> LeadView:
        target = self.config.status(status)
        if target is None:
            known = ", ".join(s.code for s in self.config.lead_statuses)
            raise InvalidInput(f"unknown lead status {status!r} (known: {known})")
        if target.semantic == "success":
            raise InvalidInput("convert the lead to close it as successful")
        if target.semantic == "failure":
            return await self.junk(lead_id, None, actor, status=target.code)
        async with self.db.transaction() as s:
            lead = await self._lead_for_update(s, lead_id, actor)
            before = {"status": lead.status}
            lead.status, lead.status_semantic = target.code, target.semantic
            self._touch(lead, actor)
            add_timeline(s, "lead", lead.id, "status", actor, before, {"status": lead.status})
            return (await lead_views(s, self.config, [lead]))[0]

    async def reopen(self, lead_id: int, actor: Actor = SYSTEM) -> LeadView:
        async with self.db.transaction() as s:
            lead = await self._lead_for_update(s, lead_id, actor, must_be_open=False)
            if lead.status_semantic == "success":
                raise Conflict(f"lead #{lead_id} was converted; work its deal instead")
            status = self.config.first_status("process")
            before = {"status": lead.status}
            lead.status, lead.status_semantic, lead.junk_reason = status.code, "process", None
            self._touch(lead, actor)
            add_timeline(s, "lead", lead.id, "reopened", actor, before, {"status": lead.status})
            return (await lead_views(s, self.config, [lead]))[0]

    async def junk(
        self, lead_id: int, reason: str | None, actor: Actor = SYSTEM, status: str | None = None
    ) -> LeadView:
        target = self.config.status(status) if status else self.config.first_status("failure")
        if target is None or target.semantic != "failure":
            raise InvalidInput(f"{status!r} is not a failure status")
        async with self.db.transaction() as s:
            lead = await self._lead_for_update(s, lead_id, actor)
            before = {"status": lead.status}
            lead.status, lead.status_semantic = target.code, target.semantic
            lead.junk_reason = (reason or "").strip() or None
            self._touch(lead, actor)
            add_timeline(
                s,
                "lead",
                lead.id,
                "junk",
                actor,
                before,
                {"status": lead.status, "reason": lead.junk_reason},
            )
            return (await lead_views(s, self.config, [lead]))[0]

    async def take(self, lead_id: int, actor: Actor) -> LeadView:
        """A rep takes an unassigned (or own) lead; stops escalation."""
        if actor.rep_id is None:
            raise InvalidInput("only a rep can take a lead")
        async with self.db.transaction() as s:
            lead = await self._lead_for_update(s, lead_id, actor, must_be_open=False)
            before = {"responsible_id": lead.responsible_id}
            lead.responsible_id = actor.rep_id
            status = self.config.lead_statuses[0]
            if lead.status == status.code:
                nxt = [x for x in self.config.lead_statuses if x.semantic == "process"]
                if len(nxt) > 1:
                    lead.status = nxt[1].code
            self._touch(lead, actor)
            lead.taken_at = lead.taken_at or utcnow()
            add_timeline(
                s,
                "lead",
                lead.id,
                "taken",
                actor,
                before,
                {"responsible_id": actor.rep_id, "status": lead.status},
            )
            return (await lead_views(s, self.config, [lead]))[0]

    async def assign(self, lead_id: int, rep_id: int, actor: Actor = SYSTEM) -> LeadView:
        """Give a lead to an active rep: the one assignment of every record (`editing`)."""
        return await assign(self.db, Lead, self._views, lead_id, rep_id, actor)

    async def _views(self, s: AsyncSession, leads: Sequence[Lead]) -> list[LeadView]:
        return await lead_views(s, self.config, leads)

    async def convert(
        self,
        lead_id: int,
        actor: Actor = SYSTEM,
        *,
        into: tuple[str, ...] | None = None,
        existing_deal_id: int | None = None,
        amount: Decimal | None = None,
    ) -> ConversionResult:
        """Convert an open lead. An ordinary lead becomes what `into` (or the configuration)
        says; a repeat lead only becomes a deal and carries its client links over. With
        `existing_deal_id` the lead is closed onto a deal that already exists (no new deal)."""
        async with self.db.transaction() as s:
            lead = await self._lead_for_update(s, lead_id, actor)
            targets = tuple(into or self.config.lead_converts_to)
            bad = set(targets) - {"contact", "company", "deal"}
            if bad or not targets:
                raise InvalidInput(f"cannot convert into {', '.join(sorted(bad)) or 'nothing'}")
            if lead.is_return_customer or lead.contact_id or lead.company_id:
                targets = ("deal",)
            responsible = lead.responsible_id or actor.rep_id
            contact_id, company_id = lead.contact_id, lead.company_id
            comms = list(
                await s.scalars(
                    select(Communication).where(
                        Communication.owner_type == "lead", Communication.owner_id == lead.id
                    )
                )
            )
            now = utcnow()
            if "company" in targets and company_id is None:
                company = Company(
                    **company_row(
                        title=lead.company_title or lead.name or lead.title,
                        responsible_id=responsible,
                        now=now,
                    )
                )
                s.add(company)
                await s.flush()
                company_id = company.id
                add_timeline(
                    s, "company", company.id, "created", actor, after={"from_lead": lead.id}
                )
            if ("contact" in targets and contact_id is None) or (
                "deal" in targets and contact_id is None and company_id is None
            ):
                contact = Contact(
                    **contact_row(
                        name=lead.name or lead.title,
                        company_id=company_id,
                        responsible_id=responsible,
                        now=now,
                    )
                )
                s.add(contact)
                await s.flush()
                contact_id = contact.id
                for c in comms:
                    s.add(
                        Communication(
                            kind=c.kind,
                            raw_value=c.raw_value,
                            value=c.value,
                            owner_type="contact",
                            owner_id=contact.id,
                            label=c.label,
                            extension=c.extension,
                        )
                    )
                add_timeline(
                    s, "contact", contact.id, "created", actor, after={"from_lead": lead.id}
                )
            deal: Deal | None = None
            if existing_deal_id is not None:
                deal = await get_or_404(s, Deal, existing_deal_id, "deal")
                if deal.stage_semantic != "process":
                    raise Conflict(f"deal #{deal.id} is closed")
                deal.lead_id = deal.lead_id or lead.id
                deal.modified_at = now
            elif "deal" in targets:
                pipeline = await pipeline_by_code(s, None)
                stage = await stage_by_code(s, pipeline, None)
                deal = Deal(
                    **deal_row(
                        title=lead.title,
                        stage=stage,
                        amount=amount,
                        currency=self.config.currency,
                        contact_id=contact_id,
                        company_id=company_id,
                        lead_id=lead.id,
                        responsible_id=responsible,
                        source=lead.source,
                        now=now,
                    )
                )
                s.add(deal)
                await s.flush()
                add_timeline(s, "deal", deal.id, "created", actor, after={"from_lead": lead.id})
            # The lead's history follows it to what it became (activities stay on the lead too).
            act_ids = list(
                await s.scalars(
                    select(ActivityBinding.activity_id).where(
                        ActivityBinding.owner_type == "lead", ActivityBinding.owner_id == lead.id
                    )
                )
            )
            for act_id in act_ids:
                await bind_activity(
                    s,
                    act_id,
                    [
                        ("deal", deal.id if deal else None),
                        ("contact", contact_id),
                        ("company", company_id),
                    ],
                )
            success = self.config.first_status("success")
            before = {"status": lead.status}
            lead.status, lead.status_semantic = success.code, success.semantic
            lead.contact_id, lead.company_id = contact_id, company_id
            self._touch(lead, actor)
            add_timeline(
                s,
                "lead",
                lead.id,
                "converted",
                actor,
                before,
                {
                    "status": lead.status,
                    "deal_id": deal.id if deal else None,
                    "contact_id": contact_id,
                    "company_id": company_id,
                },
            )
            if deal is not None:
                await recompute_client_flags(s, deal.contact_id, deal.company_id)
            lead_view = (await lead_views(s, self.config, [lead]))[0]
            deal_view = (await deal_views(s, [deal]))[0] if deal else None
            return ConversionResult(lead_view, contact_id, company_id, deal_view)

    async def page(self, flt: ListFilter, actor: Actor = SYSTEM) -> tuple[list[LeadView], int]:
        flt = flt.checked()
        query = select(Lead)
        if flt.status:
            query = query.where(Lead.status == flt.status)
        query = apply_common(query, Lead, Lead.status_semantic, flt)
        query = query.where(visible_to(actor, Lead.responsible_id))
        async with self.db.read() as s:
            rows, total = await page_of(s, query, Lead.id, flt.offset, flt.limit)
            return await lead_views(s, self.config, rows), total

    async def history(self, lead_id: int, actor: Actor = SYSTEM) -> list[tuple[str, int, str, str]]:
        """Earlier leads and deals of this lead's client: (type, id, title, outcome)."""
        async with self.db.read() as s:
            lead: Lead = await get_or_404(s, Lead, lead_id, "lead")
            check_access(actor, lead.responsible_id, f"lead #{lead_id}")
            if lead.contact_id is None and lead.company_id is None:
                return []
            out: list[tuple[str, int, str, str]] = []
            lead_where = (
                Lead.company_id == lead.company_id
                if lead.company_id
                else Lead.contact_id == lead.contact_id
            )
            for other in await s.scalars(
                select(Lead).where(lead_where, Lead.id != lead.id).order_by(Lead.id.desc()).limit(5)
            ):
                out.append(("lead", other.id, other.title, other.status))
            deal_where = (
                Deal.company_id == lead.company_id
                if lead.company_id
                else Deal.contact_id == lead.contact_id
            )
            for deal in await s.scalars(
                select(Deal).where(deal_where).order_by(Deal.id.desc()).limit(5)
            ):
                out.append(("deal", deal.id, deal.title, deal.stage_semantic))
            return out

    async def _lead_for_update(
        self, s: AsyncSession, lead_id: int, actor: Actor, must_be_open: bool = True
    ) -> Lead:
        lead = await s.get(Lead, lead_id)
        if lead is None:
            raise NotFound(f"lead #{lead_id} does not exist")
        check_access(actor, lead.responsible_id, f"lead #{lead_id}")
        if must_be_open and lead.status_semantic != "process":
            raise Conflict(f"lead #{lead_id} is already closed ({lead.status})")
        return lead

    @staticmethod
    def _touch(lead: Lead, actor: Actor) -> None:
        lead.modified_at = utcnow()
        if actor.rep_id is not None and lead.taken_at is None:
            lead.taken_at = lead.modified_at
