"""Which matched contact / company is "the client" (Bitrix24 R2.5), and its newest open items."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from matching.model import ClientCandidate, DealRef, LeadRef


def recency(item: DealRef | LeadRef) -> tuple[datetime, datetime, int]:
    """Sort key "most recently active": last modification, then creation, then id."""
    return (item.modified_at, item.created_at, item.id)


def newest_deal(deals: Sequence[DealRef]) -> DealRef | None:
    return max(deals, key=recency, default=None)


def newest_lead(leads: Sequence[LeadRef]) -> LeadRef | None:
    return max(leads, key=recency, default=None)


def rank_clients(cands: Sequence[ClientCandidate]) -> list[ClientCandidate]:
    """Best client first: open deal (most recent deal first), then open repeat lead (newest
    first), then the order the lookup found them in. Deterministic for equal inputs."""
    return [group[0] for group in rank_groups([(c,) for c in cands])]


Group = Sequence[ClientCandidate]


def rank_groups(groups: Sequence[Group]) -> list[Group]:
    """`rank_clients` for clients made of several records (a company and its contacts): a
    group ranks by the newest open item of any member, then by its earliest hit."""
    if len(groups) < 2:  # the usual case (one client found, or none): nothing to rank
        return list(groups)

    def deals(g: Group) -> list[DealRef]:
        return [d for c in g for d in c.open_deals]

    def leads(g: Group) -> list[LeadRef]:
        return [lead for c in g for lead in c.open_repeat_leads]

    by_hit = sorted(groups, key=lambda g: min((c.hit_order, str(c.kind), c.id) for c in g))
    with_deal = [g for g in by_hit if deals(g)]
    with_lead = [g for g in by_hit if not deals(g) and leads(g)]
    rest = [g for g in by_hit if not deals(g) and not leads(g)]
    # sort(reverse=True) is stable, so equal recency keeps the hit order.
    with_deal.sort(key=lambda g: recency(max(deals(g), key=recency)), reverse=True)
    with_lead.sort(key=lambda g: recency(max(leads(g), key=recency)), reverse=True)
    return [*with_deal, *with_lead, *rest]
