"""The matcher's repository port, implemented on the CRM tables in a few indexed queries.

`preload` fetches everything about a set of identities at once (intake loads a whole round of
events in one go); the port calls then answer from memory. The loaded rows are ORM objects in
the caller's session, so intake's later `session.get` of the same lead / deal / client needs
no query either.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.db import among, is_pg
from crm.models import Communication, Company, Contact, Deal, Lead, Rep
from matching.model import (
    ClientCandidate,
    ClientKind,
    DealRef,
    Identity,
    LeadRef,
)

Owner = tuple[str, int]
Row = TypeVar("Row", Lead, Deal, Contact, Company)


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
        junked=lead.status_semantic == "failure",
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


@dataclass(frozen=True)
class _Statements:
    """The preload's reads, built once per backend with their ids as parameters: no
    construction, compilation nor cache key per batch."""

    holders: Any  # (kinds, values): communications holding them, with their leads
    contacts: Any  # (contacts): the contacts with their companies
    companies: Any  # (companies)
    deals: Any  # (contacts, companies): their open deals
    leads: Any  # (contacts, companies): their leads


@cache
def _statements(pg: bool) -> _Statements:
    def of(column: Any, name: str) -> Any:
        return among(column, name, pg=pg)

    comm = Communication
    holders = (
        select(comm.owner_type, comm.owner_id, comm.kind, comm.value, comm.id, Lead)
        .outerjoin(Lead, and_(comm.owner_type == "lead", Lead.id == comm.owner_id))
        .where(of(comm.kind, "kinds"), of(comm.value, "values"))
    )
    contacts = (
        select(Contact, Company)
        .outerjoin(Company, Company.id == Contact.company_id)
        .where(of(Contact.id, "contacts"))
    )
    deals = select(Deal).where(
        Deal.stage_semantic == "process",
        of(Deal.contact_id, "contacts") | of(Deal.company_id, "companies"),
    )
    # Filtered on the client columns only, so the planner walks the contact / company
    # indexes; with the status in the query SQLite scans every open lead instead.
    leads = select(Lead).where(of(Lead.contact_id, "contacts") | of(Lead.company_id, "companies"))
    companies = select(Company).where(of(Company.id, "companies"))
    return _Statements(holders, contacts, companies, deals, leads)


class SqlCandidateRepository:
    """Reads within the caller's session (the intake transaction); a snapshot, so a new one is
    needed after writes that change what it would find."""

    def __init__(self, session: AsyncSession, active_reps: set[int] | None = None) -> None:
        """`active_reps`: every active rep's id, when the caller has them already (else the
        responsibles of the clients found are looked up)."""
        self.s = session
        self._q = _statements(is_pg(session))
        self._loaded: set[Identity] = set()
        # identity → (owner type, owner id, communication id) of every holder
        self._holders: dict[Identity, list[tuple[str, int, int]]] = defaultdict(list)
        self._lead_links: dict[int, tuple[int | None, int | None]] = {}  # lead → its client
        self._held: dict[Owner, set[tuple[str, str]]] = defaultdict(set)  # owner → identities
        self._leads: dict[int, Lead] = {}
        self._deals: dict[int, Deal] = {}
        self._contacts: dict[int, Contact] = {}
        self._companies: dict[int, Company] = {}
        self._clients_done: set[Owner] = set()  # clients whose deals / leads are loaded
        self._deals_by: dict[Owner, list[DealRef]] = defaultdict(list)
        self._leads_by: dict[Owner, list[LeadRef]] = defaultdict(list)
        self._active: set[int] = set(active_reps or ())
        self._reps_known = active_reps is not None
        self._reps_checked: set[int] = set()

    # --- loading --------------------------------------------------------------------------

    async def preload(self, identities: Iterable[Identity]) -> None:
        """Fetch, in a fixed handful of queries, everything the port calls need about these."""
        wanted = [i for i in dict.fromkeys(identities) if i not in self._loaded]
        if not wanted:
            return
        self._loaded.update(wanted)
        # The leads holding them come with their communications (one query, not two in turn).
        pairs = {"kinds": sorted({str(i.kind) for i in wanted})}  # (str(): the value)
        pairs["values"] = sorted({i.value for i in wanted})
        rows = await self.s.execute(self._q.holders, pairs)
        # The asked identities by their plain (kind, value): a row's is looked up, not built.
        asked = {(str(i.kind), i.value): i for i in wanted}
        for owner_type, owner_id, kind, value, cid, lead in rows:
            ident = asked.get((kind, value or ""))
            if ident is None:
                continue  # a cross pair of the two IN lists
            self._holders[ident].append((owner_type, owner_id, cid))
            self._held[(owner_type, owner_id)].add((kind, value or ""))
            if lead is not None and lead.id not in self._leads:
                self._leads[lead.id] = lead
                self._lead_links[lead.id] = (lead.contact_id, lead.company_id)
        clients: set[Owner] = set()
        for ident in wanted:
            for owner_type, owner_id, _cid in self._holders.get(ident, ()):
                if owner_type in ("contact", "company"):
                    clients.add((owner_type, owner_id))
                elif owner_type == "lead":
                    contact_id, company_id = self._lead_links.get(owner_id, (None, None))
                    if contact_id:
                        clients.add(("contact", contact_id))
                    if company_id:
                        clients.add(("company", company_id))
        await self._load_clients(clients - self._clients_done)

    async def _load_clients(self, clients: set[Owner]) -> None:
        """The clients, the companies of their contacts (a contact's company is a candidate
        too, R2.7) and all their open deals / leads: a few queries however many clients."""
        if not clients:
            return
        contact_ids = [i for t, i in clients if t == "contact"]
        if contact_ids:
            # Their companies come with them (one query, not a second one after them).
            for c, k in await self.s.execute(self._q.contacts, {"contacts": sorted(contact_ids)}):
                self._contacts[c.id] = c
                if k is not None:
                    self._companies[k.id] = k
        clients = clients | {
            ("company", company_id)
            for i in contact_ids
            if i in self._contacts and (company_id := self._contacts[i].company_id) is not None
        }
        clients -= self._clients_done
        self._clients_done.update(clients)
        company_ids = [i for t, i in clients if t == "company"]
        missing = [i for i in company_ids if i not in self._companies]
        if missing:  # companies that hold an identity themselves
            for k in await self.s.scalars(self._q.companies, {"companies": sorted(missing)}):
                self._companies[k.id] = k
        clients_of = {"contacts": sorted(contact_ids), "companies": sorted(company_ids)}
        deals = await self.s.scalars(self._q.deals, clients_of)
        for d in deals:
            self._deals[d.id] = d  # held, so the session's identity map keeps it
            dref = _deal_ref(d)
            if ("contact", d.contact_id) in clients:
                self._deals_by[("contact", d.contact_id or 0)].append(dref)
            if ("company", d.company_id) in clients:
                self._deals_by[("company", d.company_id or 0)].append(dref)
        client_leads = await self.s.scalars(self._q.leads, clients_of)
        for lead in client_leads:
            self._leads.setdefault(lead.id, lead)
            if not (lead.status_semantic == "process" and lead.is_return_customer):
                continue
            lref = _lead_ref(lead)
            if ("contact", lead.contact_id) in clients:
                self._leads_by[("contact", lead.contact_id or 0)].append(lref)
            if ("company", lead.company_id) in clients:
                self._leads_by[("company", lead.company_id or 0)].append(lref)
        if self._reps_known:
            return
        owners: list[int | None] = [c.responsible_id for c in self._contacts.values()]
        owners += [k.responsible_id for k in self._companies.values()]
        resp_ids = {r for r in owners if r and r not in self._reps_checked}
        if resp_ids:
            self._reps_checked.update(resp_ids)
            self._active.update(
                await self.s.scalars(
                    select(Rep.id).where(Rep.id.in_(resp_ids), Rep.active.is_(True))
                )
            )

    def loaded(self, model: type[Row], row_id: int | None) -> Row | None:
        """The record as the preload loaded it (the session's own object, what `session.get`
        would give), or None when it did not: then `session.get` is the way to it."""
        held: dict[type[Any], dict[int, Any]] = {
            Lead: self._leads,
            Deal: self._deals,
            Contact: self._contacts,
            Company: self._companies,
        }
        return held[model].get(row_id) if row_id is not None else None

    # --- the port -------------------------------------------------------------------------

    def holds(self, owner_type: str, owner_id: int) -> set[tuple[str, str]]:
        """(kind, value) of the loaded identities this record already holds."""
        return set(self._held.get((owner_type, owner_id), ()))

    async def clients_by_identities(
        self, identities: Sequence[Identity]
    ) -> Sequence[ClientCandidate]:
        await self.preload(identities)
        matched: dict[Owner, list[Identity]] = defaultdict(list)
        first_hit: dict[Owner, int] = {}

        def _hit(key: Owner, ident: Identity, order: int) -> None:
            if ident not in matched[key]:
                matched[key].append(ident)
            first_hit[key] = min(first_hit.get(key, order), order)

        for ident in identities:
            for owner_type, owner_id, cid in self._holders.get(ident, ()):
                if owner_type in ("contact", "company"):
                    _hit((owner_type, owner_id), ident, cid)
                elif owner_type == "lead":
                    # A lead linked to a client makes that client known (a junk lead
                    # converted earlier).
                    contact_id, company_id = self._lead_links.get(owner_id, (None, None))
                    if contact_id:
                        _hit(("contact", contact_id), ident, cid)
                    if company_id:
                        _hit(("company", company_id), ident, cid)

        # A matched contact's company is a candidate even when it holds none of the
        # identities (its open deals win over the contact's, R2.7): found with its contact.
        for kind, oid in list(first_hit):
            contact = self._contacts.get(oid) if kind == "contact" else None
            if contact is not None and contact.company_id is not None:
                key = ("company", contact.company_id)
                matched.setdefault(key, [])
                first_hit[key] = min(
                    first_hit.get(key, first_hit[(kind, oid)]), first_hit[(kind, oid)]
                )

        def _candidate(
            kind: ClientKind, ident: int, name: str, resp: int | None, company: int | None
        ) -> ClientCandidate:
            key = (str(kind), ident)
            return ClientCandidate(
                kind=kind,
                id=ident,
                name=name,
                responsible_id=resp,
                responsible_active=resp in self._active,
                company_id=company,
                open_deals=tuple(sorted(self._deals_by[key], key=_recency, reverse=True)),
                open_repeat_leads=tuple(sorted(self._leads_by[key], key=_recency, reverse=True)),
                matched_by=tuple(matched[key]),
                hit_order=first_hit[key],
            )

        out: list[ClientCandidate] = []
        for kind, oid in sorted(matched):
            if kind == "contact" and oid in self._contacts:
                c = self._contacts[oid]
                out.append(
                    _candidate(ClientKind.CONTACT, c.id, c.name, c.responsible_id, c.company_id)
                )
            elif kind == "company" and oid in self._companies:
                k = self._companies[oid]
                out.append(_candidate(ClientKind.COMPANY, k.id, k.title, k.responsible_id, None))
        return out

    async def leads_by_identities(
        self, identities: Sequence[Identity], include_closed: bool
    ) -> Sequence[LeadRef]:
        await self.preload(identities)
        matched: dict[int, list[Identity]] = defaultdict(list)
        for ident in identities:
            for owner_type, owner_id, _cid in self._holders.get(ident, ()):
                if owner_type == "lead" and ident not in matched[owner_id]:
                    matched[owner_id].append(ident)
        leads = [
            self._leads[i]
            for i in matched
            if i in self._leads and (include_closed or self._leads[i].status_semantic == "process")
        ]
        leads.sort(key=lambda lead: (lead.modified_at, lead.id), reverse=True)
        return [_lead_ref(lead, matched[lead.id]) for lead in leads]
