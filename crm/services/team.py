"""The supervisor's view of the team right now, and a rep's morning digest.

`overview` counts open work per rep (open leads and deals, leads not taken yet, overdue
call-backs) and the queue nobody holds, each as one GROUP BY; only supervisors and admins
may read it. `untaken` lists a rep's leads nobody took yet (the digest's third part).
`claim_digests` queues the day's digest once per rep: a `state` row per rep and day, written
with the outbox row in one transaction, is what makes it once across restarts and processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import Actor, LeadView
from crm.errors import Forbidden
from crm.models import Activity, Deal, KeyValue, Lead, OutboxMessage, Rep
from crm.services.listing import MAX_LIMIT
from crm.services.views import lead_views

DIGEST = "digest"  # the outbox kind; payload: {"day": "2026-12-07"}
DIGEST_KEY = "digest:"  # state keys "digest:<day>:<rep id>"
KEEP_DIGEST_KEYS = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class RepLoad:
    rep_id: int
    rep_name: str
    role: str
    open_leads: int
    open_deals: int
    untaken: int  # open leads of theirs nobody took yet
    overdue: int  # open call-backs and tasks due before the cut-off


@dataclass(frozen=True, slots=True)
class TeamView:
    reps: tuple[RepLoad, ...]
    queue_leads: int  # open leads nobody holds
    queue_deals: int
    overdue: int  # the team's, the queue's included


async def _counts(s: AsyncSession, rep_col: Any, *where: Any) -> dict[int | None, int]:
    """How many rows match, per responsible rep (None: nobody's)."""
    rows = await s.execute(select(rep_col, func.count()).where(*where).group_by(rep_col))
    return {rep: int(n) for rep, n in rows}


class Team:
    def __init__(self, db: Database, config: CrmConfig) -> None:
        self.db = db
        self.config = config

    async def overview(self, actor: Actor, overdue_before: datetime) -> TeamView:
        """Open work per active rep (and anyone inactive who still holds some)."""
        if not actor.sees_everything:
            raise Forbidden("only a supervisor or an admin sees the team")
        async with self.db.read() as s:
            open_lead = Lead.status_semantic == "process"
            leads = await _counts(s, Lead.responsible_id, open_lead)
            untaken = await _counts(s, Lead.responsible_id, open_lead, Lead.taken_at.is_(None))
            deals = await _counts(s, Deal.responsible_id, Deal.stage_semantic == "process")
            overdue = await _counts(
                s,
                Activity.responsible_id,
                Activity.done.is_(False),
                Activity.due_at.is_not(None),
                Activity.due_at <= overdue_before,
            )
            reps = list(await s.execute(select(Rep.id, Rep.name, Rep.role, Rep.active)))
        holding = set(leads) | set(deals) | set(overdue)
        lines = tuple(
            RepLoad(
                rid,
                name,
                role,
                leads.get(rid, 0),
                deals.get(rid, 0),
                untaken.get(rid, 0),
                overdue.get(rid, 0),
            )
            for rid, name, role, active in sorted(reps, key=lambda r: (r[1].lower(), r[0]))
            # Supervisors and admins are listed when they hold something themselves.
            if (active and role == "rep") or rid in holding
        )
        return TeamView(lines, leads.get(None, 0), deals.get(None, 0), sum(overdue.values()))

    async def untaken(
        self, rep_id: int, actor: Actor, limit: int = 10
    ) -> tuple[list[LeadView], int]:
        """A rep's open leads nobody took yet, newest first, and how many there are."""
        if not actor.sees_everything and actor.rep_id != rep_id:
            raise Forbidden("a rep sees only their own leads")
        limit = max(1, min(limit, MAX_LIMIT))
        where = (
            Lead.responsible_id == rep_id,
            Lead.status_semantic == "process",
            Lead.taken_at.is_(None),
        )
        async with self.db.read() as s:
            total = await s.scalar(select(func.count()).select_from(Lead).where(*where))
            rows = await s.scalars(select(Lead).where(*where).order_by(Lead.id.desc()).limit(limit))
            return await lead_views(s, self.config, list(rows)), int(total or 0)

    async def claim_digests(self, day: date, now: datetime) -> list[int]:
        """Queue `day`'s digest for every active rep with Telegram who has not had it;
        returns their ids. Safe to call from several processes at once: the state row's
        primary key lets one of them claim each rep's day. Usually one small read."""
        prefix = f"{DIGEST_KEY}{day.isoformat()}:"
        async with self.db.read() as s:
            had = set(await s.scalars(select(KeyValue.key).where(KeyValue.key.startswith(prefix))))
            reps = [
                rep_id
                for rep_id in await s.scalars(
                    select(Rep.id).where(Rep.active.is_(True), Rep.telegram_user_id.is_not(None))
                )
                if f"{prefix}{rep_id}" not in had
            ]
        if not reps:
            return []
        make = sqlite_insert if self.db.is_sqlite else pg_insert
        claimed: list[int] = []
        async with self.db.transaction() as s:
            for rep_id in reps:
                done = await s.execute(
                    make(KeyValue)
                    .values(key=f"{prefix}{rep_id}", value={"rep_id": rep_id}, updated_at=now)
                    .on_conflict_do_nothing()
                )
                if getattr(done, "rowcount", 0) != 1:  # another process had it first
                    continue
                s.add(
                    OutboxMessage(
                        rep_id=rep_id,
                        kind=DIGEST,
                        payload={"day": day.isoformat()},
                        created_at=now,
                        next_attempt_at=now,
                    )
                )
                claimed.append(rep_id)
            await s.execute(
                delete(KeyValue).where(
                    KeyValue.key.startswith(DIGEST_KEY),
                    KeyValue.updated_at < now - KEEP_DIGEST_KEYS,
                )
            )
        return claimed
