"""The matcher's repository port, implemented on the CRM tables in a few indexed queries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Communication, Company, Contact, Deal, Lead, Rep
from matching.model import (
    ClientCandidate,
    ClientKind,
    CommKind,
    DealRef,
    Identity,
    LeadRef,
)


def _lead_ref(lead: Lead, matched: Sequence[Identity] = ()) -> LeadRef:
    return LeadRef(
        id=lead.id,
        title=lead.title,
        is_open=lead.status_semantic == "process",
        is_return_customer=lead.is_return_customer,
        modified_at=lead.modified_at,
        created_at=lead.created_at,
        responsible_id=lead.responsible_id,
        contact_id=lead.contact_id,
        company_id=lead.company_id,
        matched_by=tuple(matched),
    )


def _deal_ref(deal: Deal) -> DealRef:
    return DealRef(
        id=deal.id,
        title=deal.title,
        modified_at=deal.modified_at,
        created_at=deal.created_at,
        responsible_id=deal.responsible_id,
        contact_id=deal.contact_id,
        company_id=deal.company_id,
    )


def _recency(x: DealRef | LeadRef) -> tuple[object, ...]:
    return (x.modified_at, x.created_at, x.id)


class SqlCandidateRepository:
    """Reads within the caller's session (the intake transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session
        self._memo: dict[tuple[Identity, ...], list[tuple[str, int, Identity, int]]] = {}

    async def _holders(
        self, identities: Sequence[Identity]
    ) -> list[tuple[str, int, Identity, int]]:
        """(owner_type, owner_id, identity, communication id) for every holder.

        Both port calls ask about the same identities; one query serves them."""
        key = tuple(identities)
        if key not in self._memo:
            self._memo[key] = await self._query_holders(identities)
        return self._memo[key]

    async def _query_holders(
        self, identities: Sequence[Identity]
    ) -> list[tuple[str, int, Identity, int]]:
        if not identities:
            return []
        pairs = [(i.kind.value, i.value) for i in identities]
        rows = await self.s.execute(
            select(
                Communication.owner_type,
                Communication.owner_id,
                Communication.kind,
                Communication.value,
                Communication.id,
            ).where(tuple_(Communication.kind, Communication.value).in_(pairs))
        )
        return [(t, oid, Identity(CommKind(k), v or ""), cid) for t, oid, k, v, cid in rows]

    async def clients_by_identities(
        self, identities: Sequence[Identity]
    ) -> Sequence[ClientCandidate]:
        holders = await self._holders(identities)
        matched: dict[tuple[str, int], list[Identity]] = defaultdict(list)
        first_hit: dict[tuple[str, int], int] = {}

        def _hit(key: tuple[str, int], ident: Identity, order: int) -> None:
            if ident not in matched[key]:
                matched[key].append(ident)
            first_hit[key] = min(first_hit.get(key, order), order)

        lead_hits: dict[int, list[tuple[Identity, int]]] = defaultdict(list)
        for owner_type, owner_id, ident, cid in holders:
            if owner_type in ("contact", "company"):
                _hit((owner_type, owner_id), ident, cid)
            elif owner_type == "lead":
                lead_hits[owner_id].append((ident, cid))
        # A lead linked to a client makes that client known (a junk lead converted earlier).
        if lead_hits:
            rows = await self.s.execute(
                select(Lead.id, Lead.contact_id, Lead.company_id).where(
                    Lead.id.in_(lead_hits),
                    (Lead.contact_id.is_not(None)) | (Lead.company_id.is_not(None)),
                )
            )
            for lead_id, contact_id, company_id in rows:
                for ident, cid in lead_hits[lead_id]:
                    if contact_id:
                        _hit(("contact", contact_id), ident, cid)
                    if company_id:
                        _hit(("company", company_id), ident, cid)
        contact_ids = [i for t, i in matched if t == "contact"]
        company_ids = [i for t, i in matched if t == "company"]
        contacts = (
            list(await self.s.scalars(select(Contact).where(Contact.id.in_(contact_ids))))
            if contact_ids
            else []
        )
        companies = (
            list(await self.s.scalars(select(Company).where(Company.id.in_(company_ids))))
            if company_ids
            else []
        )
        deals_by: dict[tuple[str, int], list[DealRef]] = defaultdict(list)
        leads_by: dict[tuple[str, int], list[LeadRef]] = defaultdict(list)
        if contact_ids or company_ids:
            deals = await self.s.scalars(
                select(Deal).where(
                    Deal.stage_semantic == "process",
                    Deal.contact_id.in_(contact_ids) | Deal.company_id.in_(company_ids),
                )
            )
            for d in deals:
                dref = _deal_ref(d)
                if d.contact_id in contact_ids:
                    deals_by[("contact", d.contact_id)].append(dref)
                if d.company_id in company_ids:
                    deals_by[("company", d.company_id)].append(dref)
            # Filtered on the client columns only, so the planner walks the contact / company
            # indexes; with the status in the query SQLite scans every open lead instead.
            client_leads = await self.s.scalars(
                select(Lead).where(
                    Lead.contact_id.in_(contact_ids) | Lead.company_id.in_(company_ids)
                )
            )
            rleads = [
                lead
                for lead in client_leads
                if lead.status_semantic == "process" and lead.is_return_customer
            ]
            for lead in rleads:
                lref = _lead_ref(lead)
                if lead.contact_id in contact_ids:
                    leads_by[("contact", lead.contact_id)].append(lref)
                if lead.company_id in company_ids:
                    leads_by[("company", lead.company_id)].append(lref)
        resp_ids = {c.responsible_id for c in contacts if c.responsible_id} | {
            c.responsible_id for c in companies if c.responsible_id
        }
        active: set[int] = set()
        if resp_ids:
            active = set(
                await self.s.scalars(
                    select(Rep.id).where(Rep.id.in_(resp_ids), Rep.active.is_(True))
                )
            )

        def _candidate(
            kind: ClientKind, ident: int, name: str, resp: int | None, company: int | None
        ) -> ClientCandidate:
            key = (kind.value, ident)
            return ClientCandidate(
                kind=kind,
                id=ident,
                name=name,
                responsible_id=resp,
                responsible_active=resp in active,
                company_id=company,
                open_deals=tuple(sorted(deals_by[key], key=_recency, reverse=True)),
                open_repeat_leads=tuple(sorted(leads_by[key], key=_recency, reverse=True)),
                matched_by=tuple(matched[key]),
                hit_order=first_hit[key],
            )

        return [
            _candidate(ClientKind.CONTACT, c.id, c.name, c.responsible_id, c.company_id)
            for c in contacts
        ] + [
            _candidate(ClientKind.COMPANY, c.id, c.title, c.responsible_id, None) for c in companies
        ]

    async def leads_by_identities(
        self, identities: Sequence[Identity], include_closed: bool
    ) -> Sequence[LeadRef]:
        holders = [h for h in await self._holders(identities) if h[0] == "lead"]
        if not holders:
            return []
        matched: dict[int, list[Identity]] = defaultdict(list)
        for _, owner_id, ident, _cid in holders:
            matched[owner_id].append(ident)
        query = select(Lead).where(Lead.id.in_(matched))
        if not include_closed:
            query = query.where(Lead.status_semantic == "process")
        leads = await self.s.scalars(query.order_by(Lead.modified_at.desc(), Lead.id.desc()))
        return [_lead_ref(lead, matched[lead.id]) for lead in leads]
