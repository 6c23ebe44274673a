"""A record's full history, newest first and keyset-paged: its activities (calls, mails,
messages, forms, comments, call-backs), its timeline (status / stage changes and the like) and
the decision of every inbound event that reached it.

A contact's history holds its leads' and deals' items too, a company's also its contacts'
(those of them the actor may see); each item names the record it belongs to.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import Actor
from crm.errors import InvalidInput
from crm.models import (
    Activity,
    ActivityBinding,
    Contact,
    Deal,
    InboundEventLog,
    Lead,
    Stage,
    TimelineEntry,
)
from crm.services.access import check_access, get_or_404
from crm.services.cursor import decode_cursor, encode_cursor
from crm.services.listing import MAX_LIMIT, visible_to
from crm.services.rows import OWNER_MODELS
from crm.services.views import rep_names
from matching.channels import spec_of

# Sources of items, in the order items of one instant are listed (a stable cursor).
ACTIVITY, TIMELINE, EVENT = 0, 1, 2
# Which of an activity's records an item names: the most specific one in the history.
SPECIFIC = {"deal": 0, "lead": 1, "contact": 2, "company": 3}
# Timeline entries an activity item already tells.
TOLD_BY_ACTIVITY = frozenset({"comment", "scheduled"})


@dataclass(frozen=True, slots=True)
class Decision:
    """What intake decided about one inbound event, and why (as reps read it)."""

    channel: str
    outcome: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One line of a history. `kind`: call | email | message | webform | comment | task |
    meeting (activities), change (timeline) or event (an inbound event with no activity)."""

    kind: str
    at: datetime
    actor_name: str | None  # a rep; None: the system or the customer
    title: str
    body: str | None
    owner_type: str  # the record it belongs to
    owner_id: int
    key: str  # unique within the history ("activity:12", "change:5", "event:3")
    channel: str | None = None
    direction: str | None = None  # incoming | outgoing
    duration: int | None = None  # seconds (calls, voice messages)
    recording_url: str | None = None
    missed: bool = False
    attachments: tuple[str, ...] = ()
    due_at: datetime | None = None  # reminders / call-backs
    done: bool | None = None
    result: str | None = None
    action: str | None = None  # changes: the timeline action
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    decisions: tuple[Decision, ...] = ()  # the inbound events behind it


@dataclass(frozen=True, slots=True)
class HistoryPage:
    items: list[HistoryItem]
    next_cursor: str | None  # None: nothing older


def _older(at_col: Any, id_col: Any, source: int, cursor: tuple[datetime, int, int]) -> Any:
    """Rows of `source` after the cursor in (at desc, source asc, id desc) order."""
    at, c_source, c_id = cursor
    if source < c_source:
        return at_col <= at
    if source > c_source:
        return at_col < at
    return tuple_(at_col, id_col) < tuple_(at, c_id)


class History:
    def __init__(self, db: Database, config: CrmConfig) -> None:
        self.db = db
        self.config = config

    async def page(
        self,
        owner_type: str,
        owner_id: int,
        actor: Actor,
        *,
        after: str | None = None,
        limit: int = 30,
    ) -> HistoryPage:
        """Items of a lead, contact, company or deal, newest first, after `after` (a page's
        `next_cursor`)."""
        model = OWNER_MODELS.get(owner_type)
        if model is None:
            raise InvalidInput(f"unknown record type {owner_type!r}")
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"a history page holds between 1 and {MAX_LIMIT} items")
        cursor = None
        if after:
            at, (source, ident) = decode_cursor(after, 2, "record")
            cursor = (at, source, ident)
        async with self.db.read() as s:
            root = await get_or_404(s, model, owner_id, owner_type)
            check_access(actor, root.responsible_id, f"{owner_type} #{owner_id}")
            scope = await self._scope(s, owner_type, owner_id, actor)
            rows = await self._rows(s, scope, cursor, limit)
            rows.sort(key=lambda r: (r[0], -r[1], r[2]), reverse=True)
            more = len(rows) > limit
            rows = rows[:limit]
            items = await self._items(s, scope, rows)
            nxt = encode_cursor(*rows[-1][:3]) if more else None
            return HistoryPage(items=items, next_cursor=nxt)

    # --- what belongs to the history --------------------------------------------------------

    async def _scope(
        self, s: AsyncSession, owner_type: str, owner_id: int, actor: Actor
    ) -> dict[str, list[int]]:
        scope: dict[str, list[int]] = {"lead": [], "deal": [], "contact": [], "company": []}
        scope[owner_type].append(owner_id)
        if owner_type == "company":
            scope["contact"] = list(
                await s.scalars(
                    select(Contact.id).where(
                        Contact.company_id == owner_id, visible_to(actor, Contact.responsible_id)
                    )
                )
            )
        if owner_type in ("contact", "company"):
            for model, key in ((Lead, "lead"), (Deal, "deal")):
                client: Any = model.contact_id.in_(scope["contact"])
                if owner_type == "company":
                    client = or_(client, model.company_id == owner_id)
                scope[key] = list(
                    await s.scalars(
                        select(model.id).where(client, visible_to(actor, model.responsible_id))
                    )
                )
        return scope

    @staticmethod
    def _owned(type_col: Any, id_col: Any, scope: dict[str, list[int]]) -> Any:
        return or_(*((type_col == t) & id_col.in_(ids) for t, ids in scope.items() if ids))

    async def _newest(
        self,
        s: AsyncSession,
        model: Any,
        at_col: Any,
        source: int,
        where: list[Any],
        cursor: tuple[datetime, int, int] | None,
        limit: int,
    ) -> list[tuple[datetime, int, int, Any]]:
        """One source's rows after the cursor, newest first: (at, source, id, row)."""
        if cursor:
            where = [*where, _older(at_col, model.id, source, cursor)]
        query = select(model).where(*where).order_by(at_col.desc(), model.id.desc())
        rows = await s.scalars(query.limit(limit + 1))
        return [(getattr(r, at_col.key), source, r.id, r) for r in rows]

    async def _rows(
        self,
        s: AsyncSession,
        scope: dict[str, list[int]],
        cursor: tuple[datetime, int, int] | None,
        limit: int,
    ) -> list[tuple[datetime, int, int, Any]]:
        bound = select(ActivityBinding.activity_id).where(
            self._owned(ActivityBinding.owner_type, ActivityBinding.owner_id, scope)
        )
        changes = [
            self._owned(TimelineEntry.owner_type, TimelineEntry.owner_id, scope),
            TimelineEntry.action.not_in(TOLD_BY_ACTIVITY),
        ]
        # Events that left no activity (imports, refused ones); the others' decisions ride on
        # their activity's item.
        cols = {
            "lead": InboundEventLog.lead_id,
            "deal": InboundEventLog.deal_id,
            "contact": InboundEventLog.contact_id,
            "company": InboundEventLog.company_id,
        }
        events = [
            InboundEventLog.activity_id.is_(None),
            or_(*(cols[t].in_(ids) for t, ids in scope.items() if ids)),
        ]
        return (
            await self._newest(
                s, Activity, Activity.created_at, ACTIVITY, [Activity.id.in_(bound)], cursor, limit
            )
            + await self._newest(
                s, TimelineEntry, TimelineEntry.at, TIMELINE, changes, cursor, limit
            )
            + await self._newest(
                s, InboundEventLog, InboundEventLog.received_at, EVENT, events, cursor, limit
            )
        )

    # --- items ------------------------------------------------------------------------------

    async def _items(
        self,
        s: AsyncSession,
        scope: dict[str, list[int]],
        rows: list[tuple[datetime, int, int, Any]],
    ) -> list[HistoryItem]:
        acts = [r[3] for r in rows if r[1] == ACTIVITY]
        changes = [r[3] for r in rows if r[1] == TIMELINE]
        act_ids = [a.id for a in acts]
        in_scope = {(t, i) for t, ids in scope.items() for i in ids}
        owners: dict[int, tuple[str, int]] = {}
        decisions: dict[int, list[Decision]] = defaultdict(list)
        if act_ids:
            for act_id, t, i in await s.execute(
                select(
                    ActivityBinding.activity_id,
                    ActivityBinding.owner_type,
                    ActivityBinding.owner_id,
                ).where(ActivityBinding.activity_id.in_(act_ids))
            ):
                if (t, i) in in_scope and (
                    act_id not in owners or SPECIFIC[t] < SPECIFIC[owners[act_id][0]]
                ):
                    owners[act_id] = (t, i)
            for e in await s.scalars(
                select(InboundEventLog)
                .where(InboundEventLog.activity_id.in_(act_ids))
                .order_by(InboundEventLog.received_at, InboundEventLog.id)
            ):
                decisions[e.activity_id or 0].append(
                    Decision(e.channel, e.outcome, e.reason, e.received_at)
                )
        names = await rep_names(s, [a.author_id for a in acts] + [t.actor_id for t in changes])
        stage_codes = await self._stage_names(s, changes)
        out: list[HistoryItem] = []
        for at, source, ident, row in rows:
            if source == ACTIVITY:
                owner = owners.get(ident) or next(iter(sorted(in_scope)))
                out.append(
                    _activity_item(row, owner, names.get(row.author_id or 0), decisions[ident])
                )
            elif source == TIMELINE:
                out.append(self._change_item(row, names.get(row.actor_id or 0), stage_codes))
            else:
                owner = _event_owner(row, in_scope)
                out.append(
                    HistoryItem(
                        kind="event",
                        at=at,
                        actor_name=None,
                        title=f"{_channel_label(row.channel)}: {row.outcome.replace('_', ' ')}",
                        body=row.reason,
                        owner_type=owner[0],
                        owner_id=owner[1],
                        key=f"event:{ident}",
                        channel=row.channel,
                        direction=row.direction,
                        decisions=(Decision(row.channel, row.outcome, row.reason, at),),
                    )
                )
        return out

    async def _stage_names(self, s: AsyncSession, changes: list[TimelineEntry]) -> dict[str, str]:
        """Stage codes as names (deal changes store codes)."""
        if not any(t.owner_type == "deal" for t in changes):
            return {}
        return {c: n for c, n in await s.execute(select(Stage.code, Stage.name))}

    def _change_item(
        self, t: TimelineEntry, actor_name: str | None, stages: dict[str, str]
    ) -> HistoryItem:
        before, after = dict(t.before or {}), dict(t.after or {})

        def shown(key: str, data: dict[str, Any]) -> str:
            value = data.get(key)
            if key == "status" and isinstance(value, str):
                st = self.config.status(value)
                return st.name if st else value
            if key == "stage" and isinstance(value, str):
                return stages.get(value, value)
            return "—" if value is None else str(value)

        title = CHANGE_TITLES.get(t.action, t.action.replace("_", " ").capitalize())
        for key in ("status", "stage"):
            if key in after and key in before and before.get(key) != after.get(key):
                title = f"{title}: {shown(key, before)} → {shown(key, after)}"
                break
        body = after.get("reason") or None
        return HistoryItem(
            kind="change",
            at=t.at,
            actor_name=actor_name,
            title=title,
            body=str(body) if body else None,
            owner_type=t.owner_type,
            owner_id=t.owner_id,
            key=f"change:{t.id}",
            action=t.action,
            before=before,
            after=after,
        )


CHANGE_TITLES = {
    "created": "Created",
    "status": "Status",
    "stage": "Stage",
    "junk": "Junked",
    "reopened": "Reopened",
    "taken": "Taken",
    "assigned": "Assigned",
    "escalated": "Escalated to the next rep",
    "converted": "Converted",
    "won": "Won",
    "lost": "Lost",
    "amount": "Amount changed",
    "merged": "New details added",
    "linked": "Linked to the client",
    "updated": "Edited",
    "completed": "Task done",
    "snoozed": "Reminder snoozed",
    "message_sent": "Reply sent",
}


def _channel_label(channel: str | None) -> str:
    spec = spec_of(channel or "")
    return spec.label if spec else (channel or "Inbound")


def _event_owner(e: InboundEventLog, in_scope: set[tuple[str, int]]) -> tuple[str, int]:
    for t, i in (
        ("deal", e.deal_id),
        ("lead", e.lead_id),
        ("contact", e.contact_id),
        ("company", e.company_id),
    ):
        if i is not None and (t, i) in in_scope:
            return t, i
    return next(iter(sorted(in_scope)))


def _duration(seconds: int | None) -> str:
    if not seconds:
        return ""
    return f", {seconds // 60}:{seconds % 60:02d}"


def _activity_item(
    a: Activity, owner: tuple[str, int], author: str | None, decisions: list[Decision]
) -> HistoryItem:
    meta: dict[str, Any] = a.meta or {}
    duration = meta.get("duration")
    duration = int(duration) if isinstance(duration, int | float) else None
    missed = bool(meta.get("missed"))
    incoming = a.direction != "outgoing"
    label = _channel_label(a.channel)
    if a.kind == "call":
        what = "Missed call" if missed else ("Incoming call" if incoming else "Outgoing call")
        title = f"{what}{_duration(duration)}"
        if a.attempts > 1:
            title += f" ({a.attempts} attempts)"
    elif a.kind == "email":
        title = a.subject or "(no subject)"
    elif a.kind == "message":
        title = f"{label} message" if incoming else f"Reply by {label}"
    elif a.kind == "webform":
        form = meta.get("form")
        title = f"Web form {form}" if form else (a.subject or "Web form")
    elif a.kind == "comment":
        title = "Comment"
    else:  # task, meeting: reminders and call-backs
        title = a.subject or a.kind.capitalize()
    attachments = tuple(
        str(x.get("name") or "attachment")
        for x in meta.get("attachments") or ()
        if isinstance(x, dict)
    ) + tuple(str(f) for f in meta.get("media_urls") or ())
    scheduled = a.due_at is not None
    recording = meta.get("recording_url")
    return HistoryItem(
        kind=a.kind,
        at=a.created_at,
        actor_name=author,
        title=title,
        body=a.body,
        owner_type=owner[0],
        owner_id=owner[1],
        key=f"activity:{a.id}",
        channel=a.channel,
        direction=a.direction,
        duration=duration,
        recording_url=str(recording) if recording else None,
        missed=missed,
        attachments=attachments,
        due_at=a.due_at,
        done=a.done if scheduled else None,
        result=a.result,
        decisions=tuple(decisions),
    )
