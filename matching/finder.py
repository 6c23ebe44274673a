"""Fetch and rank everything the repository knows about an event's identities."""

from __future__ import annotations

from matching.model import Candidates, ClientKind, EventIdentities, MatchSettings
from matching.port import CandidateRepository
from matching.ranking import newest_lead, rank_clients, recency


async def find_candidates(
    repo: CandidateRepository, identities: EventIdentities, settings: MatchSettings
) -> Candidates:
    """Ranked contacts / companies and the leads holding the event's identities.

    Closed leads are candidates only when they can be reused ("traditional mode", which only
    applies with repeat sales off); otherwise the newest one is kept to be named in the reason.
    The two calls run one after the other: a repository usually sits on a single database
    session, which must not be used concurrently.
    """
    matchable = identities.matchable()
    if not matchable:
        return Candidates()
    clients = await repo.clients_by_identities(matchable)
    include_closed = not settings.repeat_sales and settings.traditional_mode
    leads = await repo.leads_by_identities(matchable, include_closed=True)
    closed = newest_lead([lead for lead in leads if not lead.is_open])
    if not include_closed:
        leads = [lead for lead in leads if lead.is_open]
    return Candidates(
        contacts=tuple(rank_clients([c for c in clients if c.kind is ClientKind.CONTACT])),
        companies=tuple(rank_clients([c for c in clients if c.kind is ClientKind.COMPANY])),
        leads=tuple(sorted(leads, key=recency, reverse=True)),
        closed_lead=None if include_closed else closed,
    )
