"""Activities: comments, scheduled tasks and call-backs, the record's history, due lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.db import Database
from crm.dto import SYSTEM, ActivityView, Actor, TimelineView
from crm.errors import Conflict, InvalidInput, NotFound
from crm.models import Activity, ActivityBinding, Rep, TimelineEntry, utcnow
from crm.services.access import check_access, get_or_404
from crm.services.rows import OWNER_MODELS, add_timeline, bind_activity
from crm.services.views import activity_views

KINDS = ("call", "email", "message", "webform", "meeting", "task", "comment")


class Activities:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def comment(
        self, owner_type: str, owner_id: int, text: str, actor: Actor = SYSTEM
    ) -> ActivityView:
        text = text.strip()
        if not text:
            raise InvalidInput("a comment needs some text")
        async with self.db.transaction() as s:
            await self._owner(s, owner_type, owner_id, actor)
            act = Activity(
                kind="comment",
                body=text[:20_000],
                done=True,
                done_at=utcnow(),
                author_id=actor.rep_id,
                responsible_id=actor.rep_id,
                created_at=utcnow(),
            )
            s.add(act)
            await s.flush()
            await bind_activity(s, act.id, [(owner_type, owner_id)])
            add_timeline(s, owner_type, owner_id, "comment", actor, after={"activity_id": act.id})
            return (await activity_views(s, [act]))[0]

    async def schedule(
        self,
        owner_type: str,
        owner_id: int,
        *,
        due_at: datetime,
        subject: str,
        kind: str = "task",
        responsible_id: int | None = None,
        actor: Actor = SYSTEM,
    ) -> ActivityView:
        if kind not in KINDS or kind == "comment":
            raise InvalidInput(f"cannot schedule a {kind!r}")
        if due_at.tzinfo is None:
            raise InvalidInput("due time needs a timezone")
        async with self.db.transaction() as s:
            owner = await self._owner(s, owner_type, owner_id, actor)
            if responsible_id is not None:
                await get_or_404(s, Rep, responsible_id, "rep")
            act = Activity(
                kind=kind,
                subject=subject[:500],
                due_at=due_at,
                done=False,
                responsible_id=responsible_id or actor.rep_id or owner.responsible_id,
                author_id=actor.rep_id,
                created_at=utcnow(),
            )
            s.add(act)
            await s.flush()
            await bind_activity(s, act.id, [(owner_type, owner_id)])
            add_timeline(
                s,
                owner_type,
                owner_id,
                "scheduled",
                actor,
                after={"activity_id": act.id, "due_at": due_at.isoformat()},
            )
            return (await activity_views(s, [act]))[0]

    async def complete(
        self, activity_id: int, actor: Actor = SYSTEM, result: str | None = None
    ) -> ActivityView:
        async with self.db.transaction() as s:
            act: Activity = await get_or_404(s, Activity, activity_id, "activity")
            check_access(actor, act.responsible_id, "this task")
            if act.done:
                raise Conflict("this task is already done")
            act.done, act.done_at, act.result = True, utcnow(), result
            for b in await s.scalars(
                select(ActivityBinding).where(ActivityBinding.activity_id == act.id)
            ):
                add_timeline(
                    s,
                    b.owner_type,
                    b.owner_id,
                    "completed",
                    actor,
                    after={"activity_id": act.id, "result": result},
                )
            return (await activity_views(s, [act]))[0]

    async def snooze(
        self, activity_id: int, due_at: datetime, actor: Actor = SYSTEM
    ) -> ActivityView:
        """Move an open scheduled task to `due_at`; it is reminded again then."""
        if due_at.tzinfo is None:
            raise InvalidInput("due time needs a timezone")
        async with self.db.transaction() as s:
            act: Activity = await get_or_404(s, Activity, activity_id, "activity")
            check_access(actor, act.responsible_id, "this task")
            if act.done:
                raise Conflict("this task is already done")
            if act.due_at is None or (act.meta or {}).get("callback"):
                raise Conflict("only a scheduled call can be snoozed")
            before = {"activity_id": act.id, "due_at": act.due_at.isoformat()}
            act.due_at, act.reminded_at = due_at, None
            for b in await s.scalars(
                select(ActivityBinding).where(ActivityBinding.activity_id == act.id)
            ):
                after = {"activity_id": act.id, "due_at": due_at.isoformat()}
                add_timeline(s, b.owner_type, b.owner_id, "snoozed", actor, before, after)
            return (await activity_views(s, [act]))[0]

    async def get(self, activity_id: int, actor: Actor = SYSTEM) -> ActivityView:
        async with self.db.read() as s:
            act: Activity = await get_or_404(s, Activity, activity_id, "activity")
            check_access(actor, act.responsible_id, "this activity")
            return (await activity_views(s, [act]))[0]

    async def of_record(
        self,
        owner_type: str,
        owner_id: int,
        actor: Actor = SYSTEM,
        limit: int = 100,
        *,
        offset: int = 0,
        newest: bool = False,
        open_only: bool = False,
    ) -> list[ActivityView]:
        """A record's activities, oldest first: from the oldest on (skipping `offset`), or with
        `newest` the latest `limit` of them (what a card shows of a long history); with
        `open_only` the ones not done yet."""
        async with self.db.read() as s:
            await self._owner(s, owner_type, owner_id, actor)
            query = self._of_record(owner_type, owner_id)
            if open_only:
                query = query.where(Activity.done.is_(False))
            if newest:
                query = query.order_by(Activity.id.desc()).offset(offset).limit(limit)
                return await activity_views(s, list(reversed(list(await s.scalars(query)))))
            query = query.order_by(Activity.id).offset(offset).limit(limit)
            return await activity_views(s, list(await s.scalars(query)))

    async def page_of_record(
        self, owner_type: str, owner_id: int, actor: Actor, offset: int, limit: int
    ) -> tuple[list[ActivityView], int]:
        """One page of a record's activities, oldest first, and how many there are."""
        async with self.db.read() as s:
            await self._owner(s, owner_type, owner_id, actor)
            query = self._of_record(owner_type, owner_id)
            total = await s.scalar(select(func.count()).select_from(query.subquery()))
            rows = await s.scalars(query.order_by(Activity.id).offset(offset).limit(limit))
            return await activity_views(s, list(rows)), int(total or 0)

    @staticmethod
    def _of_record(owner_type: str, owner_id: int) -> Select[Activity]:
        return (
            select(Activity)
            .join(ActivityBinding, ActivityBinding.activity_id == Activity.id)
            .where(ActivityBinding.owner_type == owner_type, ActivityBinding.owner_id == owner_id)
        )

    async def timeline(
        self, owner_type: str, owner_id: int, actor: Actor = SYSTEM
    ) -> list[TimelineView]:
        return (await self.timeline_page(owner_type, owner_id, actor, 0, None))[0]

    async def timeline_page(
        self, owner_type: str, owner_id: int, actor: Actor, offset: int, limit: int | None
    ) -> tuple[list[TimelineView], int]:
        """A record's change history, oldest first (one page of it), and how long it is."""
        async with self.db.read() as s:
            await self._owner(s, owner_type, owner_id, actor)
            where = (TimelineEntry.owner_type == owner_type, TimelineEntry.owner_id == owner_id)
            total = await s.scalar(select(func.count()).select_from(TimelineEntry).where(*where))
            rows = await s.scalars(
                select(TimelineEntry)
                .where(*where)
                .order_by(TimelineEntry.id)
                .offset(offset)
                .limit(limit)
            )
            views = [
                TimelineView(
                    id=t.id,
                    owner_type=t.owner_type,
                    owner_id=t.owner_id,
                    actor_id=t.actor_id,
                    action=t.action,
                    before=t.before,
                    after=t.after,
                    at=t.at,
                )
                for t in rows
            ]
            return views, int(total or 0)

    async def due(
        self, now: datetime, *, rep_id: int | None = None, until: datetime | None = None
    ) -> list[ActivityView]:
        """Open scheduled activities due before `until` (default: now), oldest first."""
        async with self.db.read() as s:
            query = select(Activity).where(
                Activity.done.is_(False),
                Activity.due_at.is_not(None),
                Activity.due_at <= (until or now),
            )
            if rep_id is not None:
                query = query.where(Activity.responsible_id == rep_id)
            rows = await s.scalars(query.order_by(Activity.due_at, Activity.id).limit(200))
            return await activity_views(s, list(rows))

    async def _owner(self, s: AsyncSession, owner_type: str, owner_id: int, actor: Actor) -> Any:
        model = OWNER_MODELS.get(owner_type)
        if model is None:
            raise InvalidInput(f"unknown record type {owner_type!r}")
        owner = await s.get(model, owner_id)
        if owner is None:
            raise NotFound(f"{owner_type} #{owner_id} does not exist")
        check_access(actor, owner.responsible_id, f"{owner_type} #{owner_id}")
        return owner
