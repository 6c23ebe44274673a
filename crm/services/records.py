"""Contacts and companies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.changes import Change
from crm.db import Database
from crm.dto import SYSTEM, Actor, CompanyView, ContactView
from crm.errors import Forbidden, InvalidInput, NotFound
from crm.identity import identities_from_values
from crm.models import Communication, Company, Contact, utcnow
from crm.services.access import act_as, active_rep, check_access, get_or_404
from crm.services.builders import company_row, contact_row
from crm.services.duplicates import refuse_duplicates
from crm.services.listing import page_of, visible_to
from crm.services.rows import OWNER_MODELS, add_comms, add_timeline
from crm.services.views import company_views, contact_views
from crm.tracking import record


@dataclass(frozen=True, slots=True)
class ContactInput:
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company_id: int | None = None
    responsible_id: int | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    comments: str | None = None


def display_name(first: str | None, last: str | None, name: str | None) -> str | None:
    joined = " ".join(p for p in (first, last) if p)
    return (name or joined or None) if name or joined else None


class Records:
    def __init__(self, db: Database, default_region: str) -> None:
        self.db = db
        self.region = default_region

    async def create_contact(self, data: ContactInput, actor: Actor = SYSTEM) -> ContactView:
        name = display_name(data.first_name, data.last_name, data.name)
        if not name and not data.phones and not data.emails:
            raise InvalidInput("a contact needs a name, a phone or an email")
        async with self.db.transaction() as s:
            if data.company_id is not None:
                await get_or_404(s, Company, data.company_id, "company")
            contact = Contact(
                **contact_row(
                    name=name or (data.emails or data.phones)[0],
                    first_name=data.first_name,
                    last_name=data.last_name,
                    company_id=data.company_id,
                    responsible_id=data.responsible_id,
                    comments=data.comments,
                    now=utcnow(),
                )
            )
            act_as(actor)
            s.add(contact)
            await s.flush()
            ids = identities_from_values(data.phones, data.emails, self.region)
            await add_comms(s, "contact", contact.id, ids)
            add_timeline(s, "contact", contact.id, "created", actor, after={"name": contact.name})
            return (await contact_views(s, [contact]))[0]

    async def update_contact(
        self,
        contact_id: int,
        data: ContactInput,
        actor: Actor = SYSTEM,
        *,
        check_duplicates: bool = False,
    ) -> ContactView:
        """Fill in the given fields; phones and emails are added, never replaced. With
        `check_duplicates`, a phone or email another record holds refuses the edit
        (`DuplicateWarning`, as a hand-made record's save)."""
        ids = identities_from_values(data.phones, data.emails, self.region)
        async with self.db.transaction() as s:
            contact: Contact = await get_or_404(s, Contact, contact_id, "contact")
            check_access(actor, contact.responsible_id, "this contact")
            if check_duplicates:
                await refuse_duplicates(self.db, s, ids, ("contact", contact_id))
            if data.company_id is not None:  # before any change: a lookup flushes them
                company = await get_or_404(s, Company, data.company_id, "company")
                check_access(actor, company.responsible_id, f"company #{company.id}")
            before = {"name": contact.name, "company_id": contact.company_id}
            for attr in ("first_name", "last_name", "comments", "responsible_id", "company_id"):
                value = getattr(data, attr)
                if value is not None:
                    setattr(contact, attr, value)
            contact.name = display_name(data.first_name, data.last_name, data.name) or contact.name
            contact.modified_at = utcnow()
            added = await add_comms(s, "contact", contact.id, ids)
            after = {"name": contact.name, "company_id": contact.company_id, "added": added}
            add_timeline(s, "contact", contact.id, "updated", actor, before=before, after=after)
            return (await contact_views(s, [contact]))[0]

    async def create_company(
        self,
        title: str,
        *,
        phones: tuple[str, ...] = (),
        emails: tuple[str, ...] = (),
        responsible_id: int | None = None,
        actor: Actor = SYSTEM,
    ) -> CompanyView:
        if not title.strip():
            raise InvalidInput("a company needs a title")
        async with self.db.transaction() as s:
            company = Company(
                **company_row(title=title.strip(), responsible_id=responsible_id, now=utcnow())
            )
            act_as(actor)
            s.add(company)
            await s.flush()
            await add_comms(
                s, "company", company.id, identities_from_values(phones, emails, self.region)
            )
            add_timeline(s, "company", company.id, "created", actor, after={"title": title})
            return (await company_views(s, [company]))[0]

    async def update_company(
        self,
        company_id: int,
        *,
        title: str | None = None,
        phones: tuple[str, ...] = (),
        emails: tuple[str, ...] = (),
        responsible_id: int | None = None,
        actor: Actor = SYSTEM,
        check_duplicates: bool = False,
    ) -> CompanyView:
        """As `update_contact`: phones and emails are added, duplicates refused if asked."""
        ids = identities_from_values(phones, emails, self.region)
        async with self.db.transaction() as s:
            company: Company = await get_or_404(s, Company, company_id, "company")
            check_access(actor, company.responsible_id, "this company")
            if check_duplicates:
                await refuse_duplicates(self.db, s, ids, ("company", company_id))
            before = {"title": company.title}
            if title:
                company.title = title.strip()
            if responsible_id is not None:
                company.responsible_id = responsible_id
            company.modified_at = utcnow()
            added = await add_comms(s, "company", company.id, ids)
            add_timeline(
                s,
                "company",
                company.id,
                "updated",
                actor,
                before=before,
                after={"title": company.title, "added": added},
            )
            return (await company_views(s, [company]))[0]

    async def assign_contact(
        self, contact_id: int, rep_id: int, actor: Actor = SYSTEM
    ) -> ContactView:
        """Give a contact to a rep: supervisors, admins and the system, as for leads."""
        async with self.db.transaction() as s:
            contact: Contact = await self._assign(s, Contact, contact_id, rep_id, actor)
            return (await contact_views(s, [contact]))[0]

    async def assign_company(
        self, company_id: int, rep_id: int, actor: Actor = SYSTEM
    ) -> CompanyView:
        async with self.db.transaction() as s:
            company: Company = await self._assign(s, Company, company_id, rep_id, actor)
            return (await company_views(s, [company]))[0]

    @staticmethod
    async def _assign(s: AsyncSession, model: Any, ident: int, rep_id: int, actor: Actor) -> Any:
        what = "contact" if model is Contact else "company"
        if not actor.sees_everything:
            raise Forbidden(f"only a supervisor can reassign a {what}")
        await active_rep(s, rep_id)
        act_as(actor)
        row = await get_or_404(s, model, ident, what)
        before = {"responsible_id": row.responsible_id}
        row.responsible_id, row.modified_at = rep_id, utcnow()
        add_timeline(s, what, ident, "assigned", actor, before, {"responsible_id": rep_id})
        await s.flush()
        return row

    async def get_contact(self, contact_id: int, actor: Actor = SYSTEM) -> ContactView:
        async with self.db.read() as s:
            contact: Contact = await get_or_404(s, Contact, contact_id, "contact")
            check_access(actor, contact.responsible_id, "this contact")
            return (await contact_views(s, [contact]))[0]

    async def get_company(self, company_id: int, actor: Actor = SYSTEM) -> CompanyView:
        async with self.db.read() as s:
            company: Company = await get_or_404(s, Company, company_id, "company")
            check_access(actor, company.responsible_id, "this company")
            return (await company_views(s, [company]))[0]

    async def list_contacts(
        self, *, offset: int = 0, limit: int = 50, actor: Actor = SYSTEM
    ) -> tuple[list[ContactView], int]:
        async with self.db.read() as s:
            query = select(Contact).where(visible_to(actor, Contact.responsible_id))
            rows, total = await page_of(s, query, Contact.id, offset, limit)
            return await contact_views(s, rows), total

    async def list_companies(
        self, *, offset: int = 0, limit: int = 50, actor: Actor = SYSTEM
    ) -> tuple[list[CompanyView], int]:
        async with self.db.read() as s:
            query = select(Company).where(visible_to(actor, Company.responsible_id))
            rows, total = await page_of(s, query, Company.id, offset, limit)
            return await company_views(s, rows), total

    async def remove_comm(
        self, owner_type: str, owner_id: int, kind: str, value: str, actor: Actor = SYSTEM
    ) -> None:
        """Take a phone, email or messenger id off a lead, contact or company (`value`: its
        match key, or the raw text of one that did not normalize); it no longer matches them."""
        if owner_type not in ("lead", "contact", "company"):
            raise InvalidInput(f"a {owner_type} has no phones or emails of its own")
        async with self.db.transaction() as s:
            owner = await get_or_404(s, OWNER_MODELS[owner_type], owner_id, owner_type)
            check_access(actor, owner.responsible_id, f"{owner_type} #{owner_id}")
            gone = await s.execute(
                delete(Communication).where(
                    Communication.owner_type == owner_type,
                    Communication.owner_id == owner_id,
                    Communication.kind == kind,
                    or_(
                        Communication.value == value,
                        Communication.value.is_(None) & (Communication.raw_value == value),
                    ),
                )
            )
            if not getattr(gone, "rowcount", 0):
                raise NotFound(f"{owner_type} #{owner_id} has no {kind} {value}")
            # Deleted around the ORM: the number whose caller answer it alters is said here.
            numbers = (value,) if kind == "phone" else ()
            change = Change(owner_type, owner_id, "changed", actor.rep_id, utcnow(), ("phones",))
            record(s.sync_session, [change.with_numbers(numbers)])
            owner.modified_at = utcnow()
            add_timeline(
                s, owner_type, owner_id, "updated", actor, after={"removed": f"{kind} {value}"}
            )
