"""The inbound event log: what came in, what it became, and why."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from crm.db import Database, pairs_in
from crm.dto import EventView
from crm.models import InboundEventLog
from crm.services.listing import page_of

# Keys per query: two IN lists stay well under SQLite's and asyncpg's parameter limits.
_CHUNK = 500


def _view(r: InboundEventLog) -> EventView:
    return EventView(
        id=r.id,
        channel=r.channel,
        external_id=r.external_id,
        received_at=r.received_at,
        occurred_at=r.occurred_at,
        direction=r.direction,
        outcome=r.outcome,
        reason=r.reason,
        lead_id=r.lead_id,
        deal_id=r.deal_id,
        contact_id=r.contact_id,
        company_id=r.company_id,
        activity_id=r.activity_id,
    )


class Events:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def page(
        self,
        *,
        channel: str | None = None,
        outcome: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[EventView], int]:
        query = select(InboundEventLog)
        if channel:
            query = query.where(InboundEventLog.channel == channel)
        if outcome:
            query = query.where(InboundEventLog.outcome == outcome)
        async with self.db.read() as s:
            rows, total = await page_of(s, query, InboundEventLog.id, offset, limit)
            return [_view(r) for r in rows], total

    async def get(self, channel: str, external_id: str) -> EventView | None:
        async with self.db.read() as s:
            row = await s.scalar(
                select(InboundEventLog).where(
                    InboundEventLog.channel == channel, InboundEventLog.external_id == external_id
                )
            )
            return _view(row) if row else None

    async def outcomes(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The logged outcome of each (channel, external id) of `keys` that has a log row."""
        wanted = sorted(set(keys))
        found: dict[tuple[str, str], str] = {}
        async with self.db.read() as s:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                rows = await s.execute(
                    select(
                        InboundEventLog.channel,
                        InboundEventLog.external_id,
                        InboundEventLog.outcome,
                    ).where(pairs_in(InboundEventLog.channel, InboundEventLog.external_id, chunk))
                )
                asked = set(chunk)  # pairs_in lets cross pairs through
                found.update(((c, e), o) for c, e, o in rows if (c, e) in asked)
        return found
