"""Contacts and companies."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, or_, select

from crm.changes import Change
from crm.db import Database
from crm.dto import SYSTEM, Actor, CompanyView, ContactView
from crm.errors import InvalidInput, NotFound
from crm.identity import Comms, identities, identities_from_values
from crm.models import Communication, Company, Contact, utcnow
from crm.services.access import act_as, check_access, get_or_404
from crm.services.builders import company_row, contact_row
from crm.services.editing import assign, edit
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
    telegram: tuple[str, ...] = ()  # Telegram user ids or @usernames
    whatsapp: tuple[str, ...] = ()  # WhatsApp numbers
    comments: str | None = None


def _comms(data: ContactInput) -> Comms:
    return Comms(data.phones, data.emails, data.telegram, data.whatsapp)


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
            await add_comms(s, "contact", contact.id, identities(_comms(data), self.region))
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
        """Fill in the given fields; phones, emails and handles are added, never replaced. With
        `check_duplicates`, a value another record holds refuses the edit
        (`DuplicateWarning`, as a hand-made record's save)."""
        fields = ("first_name", "last_name", "comments", "responsible_id", "company_id")
        values = {
            "name": display_name(data.first_name, data.last_name, data.name),
            **{attr: getattr(data, attr) for attr in fields},
        }
        return await edit(
            self.db,
            Contact,
            contact_views,
            contact_id,
            values,
            actor,
            ids=identities(_comms(data), self.region),
            check_duplicates=check_duplicates,
        )

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
        telegram: tuple[str, ...] = (),
        whatsapp: tuple[str, ...] = (),
        responsible_id: int | None = None,
        actor: Actor = SYSTEM,
        check_duplicates: bool = False,
    ) -> CompanyView:
        """As `update_contact`: phones, emails and handles are added, duplicates refused if
        asked."""
        if title is not None and not title.strip():
            raise InvalidInput("a company needs a title")
        values = {"title": title.strip() if title else None, "responsible_id": responsible_id}
        ids = identities(Comms(phones, emails, telegram, whatsapp), self.region)
        return await edit(
            self.db,
            Company,
            company_views,
            company_id,
            values,
            actor,
            ids=ids,
            check_duplicates=check_duplicates,
        )

    async def assign_contact(
        self, contact_id: int, rep_id: int, actor: Actor = SYSTEM
    ) -> ContactView:
        """Give a contact to a rep: supervisors, admins and the system, as for leads."""
        return await assign(self.db, Contact, contact_views, contact_id, rep_id, actor)

    async def assign_company(
        self, company_id: int, rep_id: int, actor: Actor = SYSTEM
    ) -> CompanyView:
        return await assign(self.db, Company, company_views, company_id, rep_id, actor)

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
