"""The create-vs-attach decision for one inbound event (Bitrix24 decision table, §3).

`decide` is pure: the caller has already looked up candidates (`matching.finder`) and the
exception list, so the whole table can be tested without a database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from matching.event import Channel, Direction, InboundEvent, RegisterMode
from matching.model import (
    Candidates,
    ClientCandidate,
    ClientKind,
    CrmMode,
    DealRef,
    Decision,
    EventIdentities,
    Identity,
    LeadRef,
    MatchSettings,
    Outcome,
)
from matching.normalize import is_withheld
from matching.precedence import Proof, own_identity_name, proofs
from matching.ranking import newest_deal, newest_lead, rank_groups

_Item = TypeVar("_Item", DealRef, LeadRef)

# A conflict note lists this many candidates at most; the rest are counted.
_CONFLICT_LISTED = 4


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see matching.model
class _Client:
    """The client an event belongs to: a company and / or one of its contacts (R2.7)."""

    company: ClientCandidate | None
    contact: ClientCandidate | None
    # Set when identities of weaker standing pointed elsewhere and were outranked.
    outranked_by: str | None = None

    @property
    def members(self) -> tuple[ClientCandidate, ...]:
        """Company first: its open items win over the contact's (R2.7)."""
        return tuple(c for c in (self.company, self.contact) if c is not None)

    @property
    def label(self) -> str:
        if self.company is not None and self.contact is not None:
            return f"{_client_label(self.contact)} of {_client_label(self.company)}"
        return " / ".join(_client_label(c) for c in self.members)

    def whose(self, member: ClientCandidate) -> str:
        """Whose open item it is, when the client is two records ("company Acme #5's ")."""
        return f"{_client_label(member)}'s " if len(self.members) > 1 else ""

    def responsible(self) -> int | None:
        """The first active responsible, company before contact; None lets the queue pick."""
        for member in self.members:
            if member.responsible_active and member.responsible_id is not None:
                return member.responsible_id
        return None


def _client_label(client: ClientCandidate) -> str:
    name = f" {client.name}" if client.name.strip() else ""
    return f"{client.kind}{name} #{client.id}"


def _identity_labels(identities: Iterable[Identity]) -> str:
    return ", ".join(f"{i.kind.value} {i.value}" for i in identities)


def _group_key(c: ClientCandidate) -> tuple[str, int]:
    """A company and its contacts are one client; a contact without a company is its own."""
    if c.kind is ClientKind.CONTACT and c.company_id is not None:
        return (ClientKind.COMPANY.value, c.company_id)
    return (str(c.kind), c.id)  # (str(): the value, without `.value`'s property)


def _groups(cands: Candidates) -> list[list[ClientCandidate]]:
    """The candidates by client, each in ranked order (companies, then contacts)."""
    groups: dict[tuple[str, int], list[ClientCandidate]] = {}
    for c in (*cands.companies, *cands.contacts):
        groups.setdefault(_group_key(c), []).append(c)
    return list(groups.values())


def _pick_client(event: InboundEvent, ids: EventIdentities, cands: Candidates) -> _Client | None:
    """The client among the candidates: the groups the strongest identities found, of those
    the best ranked (R2.5), of that the company and its best-found contact."""
    groups = _groups(cands)
    if not groups:
        return None
    contacts = [c for c in groups[0] if c.kind is ClientKind.CONTACT]
    if len(groups) == 1 and len(contacts) < 2:
        # The usual case: one client, at most one of its contacts found. It is the client
        # whatever the standings, which need not be worked out.
        company = next((c for c in groups[0] if c.kind is ClientKind.COMPANY), None)
        return _Client(company, contacts[0] if contacts else None)
    proof = proofs(event, ids)

    def standing(c: ClientCandidate) -> Proof | None:
        # An identity the event does not list (a sloppy port) counts as merely given.
        return min((proof.get(i, Proof.GIVEN) for i in c.matched_by), default=None)

    def group_standing(group: Sequence[ClientCandidate]) -> Proof:
        found = [p for c in group if (p := standing(c)) is not None]
        return min(found, default=Proof.GIVEN)

    def contact_standing(c: ClientCandidate) -> Proof:
        found = standing(c)
        return Proof.GIVEN if found is None else found

    best = min(map(group_standing, groups))
    eligible = [g for g in groups if group_standing(g) == best]
    top = rank_groups(eligible)[0]
    company = next((c for c in top if c.kind is ClientKind.COMPANY), None)
    contacts = [c for c in top if c.kind is ClientKind.CONTACT]
    # min() keeps the first of equals, so the ranked order breaks ties.
    contact = min(contacts, key=contact_standing, default=None)
    outranked_by = None
    if len(eligible) < len(groups):
        own = own_identity_name(event.channel)
        outranked_by = own if best is Proof.OWN and own else "the sender's own details"
    return _Client(company, contact, outranked_by)


def _conflict(cands: Candidates) -> str | None:
    """Who each identity points at, when the candidates are not all one client."""
    groups = _groups(cands)
    if len(groups) < 2:
        return None
    # A company found only through its contact is named with that contact, not on its own.
    everyone = [c for g in groups for c in g if c.matched_by or len(g) == 1]
    parts = [
        f"{_identity_labels(c.matched_by)} is {_client_label(c)}"
        if c.matched_by
        else f"{_client_label(c)} also matches"
        for c in everyone[:_CONFLICT_LISTED]
    ]
    if len(everyone) > _CONFLICT_LISTED:
        parts.append(f"{len(everyone) - _CONFLICT_LISTED} more")
    return ", ".join(parts)


def _find_lead(cands: Candidates, lead_id: int) -> LeadRef | None:
    pools = [cands.leads, *(c.open_repeat_leads for c in (*cands.companies, *cands.contacts))]
    return next((lead for pool in pools for lead in pool if lead.id == lead_id), None)


def _thread_words(channel: Channel) -> str:
    """How an event that continues an earlier one is described, per channel."""
    if channel is Channel.EMAIL:
        return "reply in the thread of"
    if channel is Channel.CALL:
        return "same call as"
    return "same conversation as"


def _thread_decision(event: InboundEvent, cands: Candidates, client: _Client | None) -> Decision:
    """A mail reply (or a call's later report) goes where its thread already lives, whatever
    the identities say."""
    words = _thread_words(event.channel)
    contact_id = client.contact.id if client and client.contact else None
    company_id = client.company.id if client and client.company else None
    if cands.thread_deal_id is not None:
        deals = (d for c in (*cands.companies, *cands.contacts) for d in c.open_deals)
        deal = next((d for d in deals if d.id == cands.thread_deal_id), None)
        return Decision(
            Outcome.ATTACHED_DEAL,
            f"{words} deal #{cands.thread_deal_id} → attached",
            contact_id=contact_id,
            company_id=company_id,
            deal_id=cands.thread_deal_id,
            responsible_id=deal.responsible_id if deal else None,
        )
    assert cands.thread_lead_id is not None
    lead = _find_lead(cands, cands.thread_lead_id)
    return Decision(
        Outcome.ATTACHED_LEAD,
        f"{words} lead #{cands.thread_lead_id} → attached",
        contact_id=contact_id,
        company_id=company_id,
        lead_id=cands.thread_lead_id,
        responsible_id=lead.responsible_id if lead else None,
    )


def _shares_identity(lead: LeadRef, matchable: frozenset[Identity]) -> bool:
    # The port only returns leads holding one of the identities; matched_by, when filled in,
    # says which.
    return not lead.matched_by or not matchable.isdisjoint(lead.matched_by)


def _unlinked_open_lead(ids: EventIdentities, cands: Candidates) -> LeadRef | None:
    matchable = frozenset(ids.matchable())
    return newest_lead(
        [
            lead
            for lead in cands.leads
            if lead.is_open
            and lead.contact_id is None
            and lead.company_id is None
            and _shares_identity(lead, matchable)
        ]
    )


def _lead_label(lead: LeadRef) -> str:
    via = f" ({_identity_labels(lead.matched_by)})" if lead.matched_by else ""
    return f"lead #{lead.id}{via}"


def _first_open(
    client: _Client, newest: Callable[[ClientCandidate], _Item | None]
) -> tuple[_Item | None, ClientCandidate | None]:
    """The first member's newest open item, company first, and whose it is."""
    for member in client.members:
        item = newest(member)
        if item is not None:
            return item, member
    return None, None


def _known_client(
    event: InboundEvent,
    ids: EventIdentities,
    cands: Candidates,
    settings: MatchSettings,
    client: _Client,
) -> Decision:
    conflict = _conflict(cands)

    def decision(
        outcome: Outcome,
        found: str,
        action: str,
        *,
        responsible_id: int | None,
        deal_id: int | None = None,
        lead_id: int | None = None,
        blind_spot: bool = False,
    ) -> Decision:
        reason = f"known {client.label}, {found} → {action}"
        note = None
        if conflict is not None:
            by = client.outranked_by
            note = f"{conflict}; chose {client.label}{f' by {by}' if by else ''} ({found})"
            reason = f"{reason} (conflict: {conflict}{f'; {by} wins' if by else ''})"
        return Decision(
            outcome,
            reason,
            contact_id=client.contact.id if client.contact else None,
            company_id=client.company.id if client.company else None,
            lead_id=lead_id,
            deal_id=deal_id,
            responsible_id=responsible_id,
            merge_into_lead=blind_spot,
            link_lead_to_client=blind_spot,
            conflict=note,
        )

    always_add = event.register_mode is RegisterMode.ALWAYS_ADD
    if not always_add:
        # Company first: its open items win over the contact's (R2.7).
        deal, owner = _first_open(client, lambda m: newest_deal(m.open_deals))
        if deal is not None and owner is not None:
            return decision(
                Outcome.ATTACHED_DEAL,
                f"{client.whose(owner)}open deal #{deal.id}",
                "attached",
                deal_id=deal.id,
                responsible_id=deal.responsible_id,
            )
        repeat, owner = _first_open(client, lambda m: newest_lead(m.open_repeat_leads))
        if repeat is not None and owner is not None:
            return decision(
                Outcome.ATTACHED_LEAD,
                f"{client.whose(owner)}open repeat lead #{repeat.id}",
                "attached",
                lead_id=repeat.id,
                responsible_id=repeat.responsible_id,
            )
        # Bitrix24 would open a repeat lead next to this lead (R3.12); we link it instead.
        lead = _unlinked_open_lead(ids, cands)
        if lead is not None:
            return decision(
                Outcome.ATTACHED_LEAD,
                f"open unlinked {_lead_label(lead)}",
                "attached, linked to the client, data merged",
                lead_id=lead.id,
                responsible_id=lead.responsible_id,
                blind_spot=True,
            )

    found = "always-add mode" if always_add else "nothing open"
    outcome, action = Outcome.ATTACHED_CLIENT, "activity on the client only"
    if event.direction is Direction.OUTGOING:
        action = f"outgoing, {action}"
    elif event.register_mode is RegisterMode.ONLY_UPDATE:
        action = f"update-only, {action}"
    elif settings.crm_mode is CrmMode.SIMPLE:
        outcome, action = Outcome.NEW_REPEAT_DEAL, "new repeat deal"
    elif settings.repeat_sales or always_add:
        outcome, action = Outcome.NEW_REPEAT_LEAD, "new repeat lead"
    else:
        found = f"{found}, repeat sales off"
    return decision(outcome, found, action, responsible_id=client.responsible())


def _unknown_sender(
    event: InboundEvent, ids: EventIdentities, cands: Candidates, settings: MatchSettings
) -> Decision:
    always_add = event.register_mode is RegisterMode.ALWAYS_ADD
    if not always_add:
        lead = newest_lead([lead for lead in cands.leads if lead.is_open])
        if lead is not None:
            return Decision(
                Outcome.ATTACHED_LEAD,
                f"open {_lead_label(lead)} → attached, data merged",
                lead_id=lead.id,
                responsible_id=lead.responsible_id,
                merge_into_lead=True,
            )
        if not settings.repeat_sales and settings.traditional_mode:
            lead = newest_lead(cands.leads)
            if lead is not None:
                return Decision(
                    Outcome.ATTACHED_LEAD,
                    f"closed {_lead_label(lead)}, traditional mode → attached, data merged",
                    lead_id=lead.id,
                    responsible_id=lead.responsible_id,
                    merge_into_lead=True,
                )
    if event.direction is Direction.OUTGOING:
        return Decision(Outcome.IGNORED, "outgoing, nobody known → ignored")
    if event.register_mode is RegisterMode.ONLY_UPDATE:
        return Decision(Outcome.IGNORED, "update-only, nobody known → ignored")
    # Hint phones (found in free text) never create: only the sender's own details count.
    reachable = any(p.valid for p in ids.phones) or ids.emails or ids.handles
    unusable = [p.raw for p in ids.phones if not p.valid and not is_withheld(p.raw)]
    if not reachable and not unusable:
        return Decision(Outcome.IGNORED, "nobody known, no phone, email or messenger id → ignored")
    new, what = (
        (Outcome.NEW_DEAL, "new deal")
        if settings.crm_mode is CrmMode.SIMPLE
        else (Outcome.NEW_LEAD, "new lead")
    )
    if always_add:
        return Decision(new, f"always-add mode → {what}")
    found = "no match"
    closed = cands.closed_lead
    if closed is not None:  # its client-less closed lead does not make the sender known (R2.6)
        found = f"lead #{closed.id} was junked" if closed.junked else f"lead #{closed.id} is closed"
    if unusable:
        raws = ", ".join(repr(raw) for raw in unusable)
        found = f"{found}, phone {raws} not matched (not a valid number)"
    return Decision(new, f"{found} → {what}")


def decide(
    event: InboundEvent,
    ids: EventIdentities,
    cands: Candidates,
    settings: MatchSettings,
    exception_hits: Sequence[Identity],
    now: datetime,
) -> Decision:
    """What to do with `event`, given what the CRM already holds.

    `exception_hits` are those of `ids.exception_checked()` found on the exception list.
    `now` is unused so far; it is part of the signature for time windows (re-open periods).
    """
    filtered = event.meta.get("filtered")
    if filtered:  # the channel's own filter (bounces, auto-replies …): logged, never a record
        return Decision(Outcome.IGNORED, f"{filtered} → ignored")
    if exception_hits:
        hits = tuple(exception_hits)
        return Decision(
            Outcome.IGNORED, f"excepted {_identity_labels(hits)} → ignored", exception_hits=hits
        )
    client = _pick_client(event, ids, cands)
    if cands.thread_deal_id is not None or cands.thread_lead_id is not None:
        return _thread_decision(event, cands, client)
    if client is not None:
        return _known_client(event, ids, cands, settings, client)
    return _unknown_sender(event, ids, cands, settings)
