"""Records typed in by hand (console, write API) with duplicate control before saving.

Phones and emails are normalized as intake normalizes them (the CRM's region), so a hit
here is exactly what intake would match later. A hit refuses the save with a
`DuplicateWarning` listing each holder, unless the caller confirms (`force=True`) or puts the
new data onto the hit instead (`attach_to=("lead", 12)`). Deals are never duplicate-checked
(Bitrix24 R5.7). The check, the lock on the identities and the insert share one transaction,
so intake and a second hand-made record for the same phone cannot slip in between."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import SYSTEM, Actor, CompanyView, ContactView, DealView, LeadView
from crm.errors import Forbidden, InvalidInput
from crm.identity import Comms, identities
from crm.models import Company, Contact, Deal, Lead, utcnow
from crm.services.access import act_as, active_rep, check_access, get_or_404
from crm.services.builders import company_row, contact_row, deal_row, lead_row
from crm.services.duplicates import (
    ATTACHABLE,
    DuplicateHit,
    DuplicateWarning,
    Target,
    hits_of,
    refuse_duplicates,
)
from crm.services.flags import recompute_client_flags
from crm.services.pipelines import pipeline_by_code, stage_by_code
from crm.services.records import display_name
from crm.services.rows import OWNER_MODELS, add_comms, add_timeline
from crm.services.views import company_views, contact_views, deal_views, lead_views
from matching.model import EventIdentities, Identity, PhoneNumber

__all__ = ["ATTACHABLE", "DuplicateHit", "DuplicateWarning", "Target"]


@dataclass(frozen=True, slots=True)
class ContactDraft:
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    comms: Comms = field(default_factory=Comms)
    company_id: int | None = None
    owner_id: int | None = None
    comments: str | None = None


@dataclass(frozen=True, slots=True)
class CompanyDraft:
    title: str
    comms: Comms = field(default_factory=Comms)
    contacts: tuple[ContactDraft, ...] = ()  # new contacts of the company
    contact_ids: tuple[int, ...] = ()  # existing contacts that join it
    owner_id: int | None = None


@dataclass(frozen=True, slots=True)
class DealDraft:
    title: str
    contact_id: int | None = None
    company_id: int | None = None
    pipeline: str | None = None
    stage: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    owner_id: int | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class LeadDraft:
    title: str
    name: str | None = None
    company_title: str | None = None
    comms: Comms = field(default_factory=Comms)
    source: str = "OTHER"
    owner_id: int | None = None
    comments: str | None = None


@dataclass(frozen=True, slots=True)
class Saved:
    """What a save did: created a record, or (attached=True) added the data to `attach_to`."""

    record_type: str
    id: int
    attached: bool
    record: LeadView | ContactView | CompanyView | DealView
    contact_ids: tuple[int, ...] = ()  # a company's new and joined contacts


class Handmade:
    def __init__(self, db: Database, config: CrmConfig) -> None:
        self.db = db
        self.config = config

    async def check(
        self, comms: Comms, actor: Actor = SYSTEM, *, ignore: Target | None = None
    ) -> list[DuplicateHit]:
        """The hits a save of these comms by `actor` would warn about, without saving
        (`ignore`: the record being edited)."""
        ids = identities(comms, self.config.default_region)
        async with self.db.read() as s:
            return await hits_of(s, ids, ignore, actor)

    async def create_contact(
        self,
        draft: ContactDraft,
        actor: Actor = SYSTEM,
        *,
        force: bool = False,
        attach_to: Target | None = None,
    ) -> Saved:
        name = display_name(draft.first_name, draft.last_name, draft.name)
        ids = identities(draft.comms, self.config.default_region)
        if not name and not ids.matchable() and not ids.phones:
            raise InvalidInput("a contact needs a name, a phone, an email or a messenger handle")
        async with self.db.transaction() as s:
            act_as(actor)  # names the rep in the changes published
            owner = await self._owner(s, actor, draft.owner_id)
            if attach_to is not None:
                return await self._attach(s, attach_to, ids, actor, name=name)
            await self._guard(s, ids, actor, force)
            if draft.company_id is not None:
                company = await get_or_404(s, Company, draft.company_id, "company")
                check_access(actor, company.responsible_id, f"company #{company.id}")
            contact = await self._new_contact(s, draft, ids, owner, actor, draft.company_id)
            view = (await contact_views(s, [contact]))[0]
            return Saved("contact", contact.id, False, view)

    async def create_company(
        self,
        draft: CompanyDraft,
        actor: Actor = SYSTEM,
        *,
        force: bool = False,
        attach_to: Target | None = None,
    ) -> Saved:
        """A company with its new contacts and existing ones that join it. `attach_to` a
        company puts the company's comms and contacts onto that one instead."""
        if not draft.title.strip() and attach_to is None:
            raise InvalidInput("a company needs a title")
        region = self.config.default_region
        ids = identities(draft.comms, region)
        contact_ids = [identities(c.comms, region) for c in draft.contacts]
        async with self.db.transaction() as s:
            act_as(actor)  # names the rep in the changes published
            owner = await self._owner(s, actor, draft.owner_id)
            joining = [await self._own_contact(s, cid, actor) for cid in draft.contact_ids]
            if attach_to is not None:
                if attach_to[0] != "company":
                    raise InvalidInput("a company can only be attached to a company")
                saved = await self._attach(s, attach_to, ids, actor, name=None)
                company_id = saved.id
            else:
                await self._guard(s, _merged([ids, *contact_ids]), actor, force)
                title = draft.title.strip()
                company = Company(**company_row(title=title, responsible_id=owner, now=utcnow()))
                s.add(company)
                await s.flush()
                await add_comms(s, "company", company.id, ids, fresh=True)
                add_timeline(s, "company", company.id, "created", actor, after={"title": title})
                company_id = company.id
            members: list[int] = []
            for contact_draft, c_ids in zip(draft.contacts, contact_ids, strict=True):
                if attach_to is not None:
                    await self._guard(s, c_ids, actor, force)
                contact_owner = await self._owner(s, actor, contact_draft.owner_id or owner)
                contact = await self._new_contact(
                    s, contact_draft, c_ids, contact_owner, actor, company_id
                )
                members.append(contact.id)
            for contact in joining:
                before = {"company_id": contact.company_id}
                contact.company_id, contact.modified_at = company_id, utcnow()
                add_timeline(
                    s, "contact", contact.id, "updated", actor, before, {"company_id": company_id}
                )
                members.append(contact.id)
            await s.flush()
            row: Company = await get_or_404(s, Company, company_id, "company")
            view = (await company_views(s, [row]))[0]
            return Saved("company", company_id, attach_to is not None, view, tuple(members))

    async def create_deal(self, draft: DealDraft, actor: Actor = SYSTEM) -> Saved:
        """A deal on a client: a contact, a company, or both (a contact's company is its
        client too, so it is linked when not given)."""
        if not draft.title.strip():
            raise InvalidInput("a deal needs a title")
        if draft.contact_id is None and draft.company_id is None:
            raise InvalidInput("a deal needs a client: a contact_id, a company_id or both")
        if draft.amount is not None and (draft.amount < 0 or not draft.amount.is_finite()):
            raise InvalidInput("amount must be a number not below 0")
        async with self.db.transaction() as s:
            act_as(actor)  # names the rep in the changes published
            owner = await self._owner(s, actor, draft.owner_id)
            company_id = draft.company_id
            if draft.contact_id is not None:
                contact = await get_or_404(s, Contact, draft.contact_id, "contact")
                check_access(actor, contact.responsible_id, f"contact #{contact.id}")
                if company_id is None:
                    company_id = contact.company_id
            if draft.company_id is not None:
                company = await get_or_404(s, Company, draft.company_id, "company")
                check_access(actor, company.responsible_id, f"company #{company.id}")
            pipe = await pipeline_by_code(s, draft.pipeline)
            stage = await stage_by_code(s, pipe, draft.stage)
            deal = Deal(
                **deal_row(
                    title=draft.title.strip(),
                    stage=stage,
                    amount=draft.amount,
                    currency=draft.currency or self.config.currency,
                    contact_id=draft.contact_id,
                    company_id=company_id,
                    responsible_id=owner,
                    source=draft.source,
                    now=utcnow(),
                )
            )
            s.add(deal)
            await s.flush()
            add_timeline(s, "deal", deal.id, "created", actor, after={"stage": stage.code})
            await recompute_client_flags(s, deal.contact_id, deal.company_id)
            return Saved("deal", deal.id, False, (await deal_views(s, [deal]))[0])

    async def create_lead(
        self,
        draft: LeadDraft,
        actor: Actor = SYSTEM,
        *,
        force: bool = False,
        attach_to: Target | None = None,
    ) -> Saved:
        if not draft.title.strip() and attach_to is None:
            raise InvalidInput("a lead needs a title")
        ids = identities(draft.comms, self.config.default_region)
        async with self.db.transaction() as s:
            act_as(actor)  # names the rep in the changes published
            owner = await self._owner(s, actor, draft.owner_id)
            if attach_to is not None:
                return await self._attach(s, attach_to, ids, actor, name=draft.name)
            await self._guard(s, ids, actor, force)
            lead = Lead(
                **lead_row(
                    self.config,
                    title=draft.title.strip(),
                    source=draft.source,
                    is_return_customer=False,
                    name=draft.name,
                    company_title=draft.company_title,
                    contact_id=None,
                    company_id=None,
                    responsible_id=owner,
                    comments=draft.comments,
                    now=utcnow(),
                )
            )
            s.add(lead)
            await s.flush()
            await add_comms(s, "lead", lead.id, ids, fresh=True)
            add_timeline(s, "lead", lead.id, "created", actor, after={"title": lead.title})
            return Saved("lead", lead.id, False, (await lead_views(s, self.config, [lead]))[0])

    async def _guard(
        self, s: AsyncSession, ids: EventIdentities, actor: Actor, force: bool
    ) -> None:
        # Serialize with intake and other saves of the same identities, then look.
        if force:
            await self.db.lock_identities(s, [i.key for i in ids.matchable()])
        else:
            await refuse_duplicates(self.db, s, ids, actor)

    async def _owner(self, s: AsyncSession, actor: Actor, owner_id: int | None) -> int | None:
        """A rep's records are their own; supervisors and admins may give them to anyone."""
        if not actor.sees_everything:
            if owner_id not in (None, actor.rep_id):
                raise Forbidden("a rep can only create records of their own")
            return actor.rep_id
        if owner_id is None:
            return actor.rep_id
        await active_rep(s, owner_id)
        return owner_id

    async def _own_contact(self, s: AsyncSession, contact_id: int, actor: Actor) -> Contact:
        contact: Contact = await get_or_404(s, Contact, contact_id, "contact")
        check_access(actor, contact.responsible_id, f"contact #{contact_id}")
        return contact

    async def _new_contact(
        self,
        s: AsyncSession,
        draft: ContactDraft,
        ids: EventIdentities,
        owner: int | None,
        actor: Actor,
        company_id: int | None,
    ) -> Contact:
        name = display_name(draft.first_name, draft.last_name, draft.name)
        fallback = [p.raw for p in ids.phones] + list(ids.emails) + [h.value for h in ids.handles]
        if not name and not fallback:
            raise InvalidInput("a contact needs a name, a phone, an email or a messenger handle")
        contact = Contact(
            **contact_row(
                name=(name or fallback[0])[:200],
                first_name=draft.first_name,
                last_name=draft.last_name,
                company_id=company_id,
                responsible_id=owner,
                comments=draft.comments,
                now=utcnow(),
            )
        )
        s.add(contact)
        await s.flush()
        await add_comms(s, "contact", contact.id, ids, fresh=True)
        add_timeline(s, "contact", contact.id, "created", actor, after={"name": contact.name})
        return contact

    async def _attach(
        self,
        s: AsyncSession,
        target: Target,
        ids: EventIdentities,
        actor: Actor,
        *,
        name: str | None,
    ) -> Saved:
        """Add what is new of the identities (and a name where the record has none) to an
        existing lead, contact or company, as intake merges into a matched record."""
        owner_type, owner_id = target
        if owner_type not in ATTACHABLE:
            raise InvalidInput(f"attach_to must name a {', '.join(ATTACHABLE)}, not {owner_type!r}")
        await self.db.lock_identities(s, [i.key for i in ids.matchable()])
        row = await get_or_404(s, OWNER_MODELS[owner_type], owner_id, owner_type)
        check_access(actor, row.responsible_id, f"{owner_type} #{owner_id}")
        if owner_type == "lead" and name and not row.name:
            row.name = name
        row.modified_at = utcnow()
        added = await add_comms(s, owner_type, owner_id, ids)
        add_timeline(s, owner_type, owner_id, "updated", actor, after={"added": ", ".join(added)})
        await s.flush()
        view: LeadView | ContactView | CompanyView
        if owner_type == "lead":
            view = (await lead_views(s, self.config, [row]))[0]
        elif owner_type == "contact":
            view = (await contact_views(s, [row]))[0]
        else:
            view = (await company_views(s, [row]))[0]
        return Saved(owner_type, owner_id, True, view)


def _merged(parts: Iterable[EventIdentities]) -> EventIdentities:
    phones: list[PhoneNumber] = []
    emails: list[str] = []
    handles: list[Identity] = []
    for p in parts:
        phones += p.phones
        emails += p.emails
        handles += p.handles
    return EventIdentities(phones=tuple(phones), emails=tuple(emails), handles=tuple(handles))
