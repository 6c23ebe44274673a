"""Finding people and records by phone, email or name; duplicate lookups."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import SYSTEM, Actor, ContactView, DealView, DuplicateHits, LeadView
from crm.identity import identities_from_values
from crm.models import Communication, Company, Contact, Deal, Lead
from crm.services.access import may_read
from crm.services.duplicates import holders_of
from crm.services.listing import visible_to
from crm.services.views import contact_views, deal_views, lead_views


def contains_pattern(text: str) -> str:
    """A LIKE pattern (escape character backslash) for "contains `text`": its own %, _ and
    backslashes match themselves, so "/find %%" finds names with a percent sign, not all."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True, slots=True)
class SearchResult:
    contacts: list[ContactView]
    companies: list[tuple[int, str]]
    leads: list[LeadView]
    deals: list[DealView]

    @property
    def empty(self) -> bool:
        return not (self.contacts or self.companies or self.leads or self.deals)


class Search:
    def __init__(self, db: Database, config: CrmConfig) -> None:
        self.db = db
        self.config = config

    async def duplicates(
        self, phones: list[str], emails: list[str], actor: Actor, region: str | None = None
    ) -> DuplicateHits:
        """The holders of these phones / emails that `actor` may read (`may_read`, the right
        that opening the record takes); the others are only counted (`hidden`), so a rep
        learns that another rep's client has the number and nothing of that record. National
        numbers are read in `region` (ISO 3166, checked by the caller), else the CRM's."""
        ids = identities_from_values(phones, emails, region or self.config.default_region)
        values = [p.e164 for p in ids.phones if p.e164] + list(ids.emails)
        hits: dict[str, list[int]] = {"lead": [], "contact": [], "company": []}
        hidden = 0
        if values:
            async with self.db.read() as s:
                rows = await s.execute(
                    select(Communication.owner_type, Communication.owner_id).where(
                        Communication.kind.in_(("phone", "email")),
                        Communication.value.in_(values),
                    )
                )
                holders = await holders_of(s, [(t, i) for t, i in rows])
            for (owner_type, owner_id), (_, responsible) in sorted(holders.items()):
                if may_read(actor, responsible):
                    hits[owner_type].append(owner_id)
                else:
                    hidden += 1
        return DuplicateHits(
            leads=hits["lead"], contacts=hits["contact"], companies=hits["company"], hidden=hidden
        )

    async def find(self, query: str, actor: Actor = SYSTEM, limit: int = 10) -> SearchResult:
        """A phone or email finds exact holders; anything else searches names and titles."""
        query = query.strip()
        ids = identities_from_values(
            [query] if "@" not in query else [],
            [query] if "@" in query else [],
            self.config.default_region,
        )
        values = [p.e164 for p in ids.phones if p.e164] + list(ids.emails)
        async with self.db.read() as s:
            owners: dict[str, set[int]] = {"lead": set(), "contact": set(), "company": set()}
            if values:
                rows = await s.execute(
                    select(Communication.owner_type, Communication.owner_id).where(
                        Communication.value.in_(values)
                    )
                )
                for t, i in rows:
                    owners.setdefault(t, set()).add(i)
            elif len(query) >= 2:
                pattern = contains_pattern(query.lower())
                owners["contact"] |= set(
                    await s.scalars(
                        select(Contact.id)
                        .where(func.lower(Contact.name).like(pattern, escape="\\"))
                        .limit(limit)
                    )
                )
                owners["company"] |= set(
                    await s.scalars(
                        select(Company.id)
                        .where(func.lower(Company.title).like(pattern, escape="\\"))
                        .limit(limit)
                    )
                )
                owners["lead"] |= set(
                    await s.scalars(
                        select(Lead.id)
                        .where(
                            func.lower(Lead.title).like(pattern, escape="\\")
                            | func.lower(func.coalesce(Lead.name, "")).like(pattern, escape="\\")
                        )
                        .limit(limit)
                    )
                )
            contacts = list(
                await s.scalars(
                    select(Contact).where(Contact.id.in_(owners["contact"])).limit(limit)
                )
            )
            # Companies follow the rights every record follows (own and unassigned).
            companies = list(
                await s.execute(
                    select(Company.id, Company.title)
                    .where(
                        Company.id.in_(owners["company"]),
                        visible_to(actor, Company.responsible_id),
                    )
                    .limit(limit)
                )
            )
            lead_q = select(Lead).where(
                Lead.id.in_(owners["lead"]), visible_to(actor, Lead.responsible_id)
            )
            deal_q = select(Deal).where(
                Deal.contact_id.in_(owners["contact"] | {c.id for c in contacts})
                | Deal.company_id.in_(owners["company"]),
                visible_to(actor, Deal.responsible_id),
            )
            if not actor.sees_everything:
                contacts = [c for c in contacts if c.responsible_id in (None, actor.rep_id)]
            leads = list(await s.scalars(lead_q.order_by(Lead.id.desc()).limit(limit)))
            deals = list(await s.scalars(deal_q.order_by(Deal.id.desc()).limit(limit)))
            return SearchResult(
                contacts=await contact_views(s, contacts),
                companies=[(i, t) for i, t in companies.__iter__()] if companies else [],
                leads=await lead_views(s, self.config, leads),
                deals=await deal_views(s, deals),
            )
