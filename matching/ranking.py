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
    by_hit = sorted(cands, key=lambda c: (c.hit_order, c.kind.value, c.id))
    with_deal = [c for c in by_hit if c.open_deals]
    with_lead = [c for c in by_hit if not c.open_deals and c.open_repeat_leads]
    rest = [c for c in by_hit if not c.open_deals and not c.open_repeat_leads]
    # sort(reverse=True) is stable, so equal recency keeps the hit order.
    with_deal.sort(key=lambda c: recency(max(c.open_deals, key=recency)), reverse=True)
    with_lead.sort(key=lambda c: recency(max(c.open_repeat_leads, key=recency)), reverse=True)
    return [*with_deal, *with_lead, *rest]
