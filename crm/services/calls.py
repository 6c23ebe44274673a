"""Call rules on top of intake: one call-back task per missed number, closed when reached.

A missed incoming call opens a "call back" task for the responsible, due now. Further missed
calls from the same number while that task is open only raise its counter and last-attempt
time. A later answered incoming call, or an outgoing call to the number, closes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import cache
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.db import among, is_pg
from crm.models import Activity, ActivityBinding
from crm.services.rows import RowSink, add_timeline, bind_activity
from matching.event import Direction, InboundEvent
from matching.model import EventIdentities


class _Out(Protocol):
    responsible_id: int | None
    task_id: int | None
    notify: list[tuple[str, dict[str, Any]]]


def call_number(ids: EventIdentities) -> str | None:
    """The number a call's rules are about: its first valid phone."""
    return next((p.e164 for p in ids.phones if p.e164), None)


@cache
def _open_tasks(pg: bool) -> Any:
    """The open tasks of the numbers (parameter "phones"), built once: no construction nor
    cache key per call."""
    return (
        select(Activity)
        .where(
            Activity.kind == "task",
            Activity.done.is_(False),
            among(Activity.counterparty, "phones", pg=pg),
        )
        .order_by(Activity.id)
    )


async def open_callbacks(s: AsyncSession, phones: Sequence[str]) -> dict[str, list[Activity]]:
    """Open call-back tasks by number, oldest first."""
    out: dict[str, list[Activity]] = {p: [] for p in phones}
    if not phones:
        return out
    rows = await s.scalars(_open_tasks(is_pg(s)), {"phones": sorted(set(phones))})
    for task in rows:
        if (task.meta or {}).get("callback") and task.counterparty in out:
            out[task.counterparty].append(task)
    return out


def _reached(event: InboundEvent) -> bool:
    """The customer was on the line: an answered call either way. An outgoing call that is
    still ringing, or ended unanswered, has not called anybody back yet."""
    meta = event.meta
    if meta.get("missed"):
        return False
    if meta.get("stage") == "answered" or meta.get("disposition") == "answered":
        return True
    return event.direction is Direction.OUTGOING and bool(meta.get("duration"))


async def apply_call_rules(
    s: AsyncSession,
    event: InboundEvent,
    ids: EventIdentities,
    bindings: list[tuple[str, int | None]],
    now: datetime,
    out: _Out,
    *,
    open_tasks: Sequence[Activity] | None = None,
    new_id: Callable[[], Awaitable[int]] | None = None,
    sink: RowSink | None = None,
) -> None:
    """`open_tasks`: the open call-back tasks of the event's number when the caller fetched
    them already (`open_callbacks`); `new_id`: where a new task's id comes from."""
    phone = call_number(ids)
    if phone is None:
        return
    if open_tasks is None:
        open_tasks = (await open_callbacks(s, [phone])).get(phone, [])
    if event.direction is Direction.INCOMING and event.meta.get("missed"):
        call_id = str(event.meta.get("call_id") or event.external_id)
        if open_tasks:
            task = open_tasks[0]
            seen = list((task.meta or {}).get("calls", []))
            if call_id in seen:
                return  # another event of a call already counted
            task.attempts += 1
            task.last_attempt_at = event.occurred_at
            task.meta = {**(task.meta or {}), "calls": [*seen, call_id][-50:]}
            task.reminded_at = None  # remind again: the customer tried once more
            created = False
        else:
            task = Activity(
                id=await new_id() if new_id else None,
                kind="task",
                direction=None,
                subject=f"Call back {phone}",
                due_at=now,
                done=False,
                responsible_id=out.responsible_id,
                channel=None,
                counterparty=phone,
                attempts=1,
                last_attempt_at=event.occurred_at,
                meta={"callback": True, "calls": [call_id]},
                created_at=now,
            )
            s.add(task)
            if task.id is None:
                await s.flush()
            created = True
        await bind_activity(s, task.id, bindings, fresh=created, sink=sink)
        out.task_id = task.id
        out.notify.append(
            (
                "missed_call",
                {"task_id": task.id, "attempts": task.attempts, "task_created": created},
            )
        )
        return
    if _reached(event):
        for task in open_tasks:
            task.done, task.done_at, task.result = True, now, "called back"
            rows = await s.scalars(
                select(ActivityBinding).where(ActivityBinding.activity_id == task.id)
            )
            for b in rows:
                add_timeline(
                    s,
                    b.owner_type,
                    b.owner_id,
                    "completed",
                    None,
                    after={"activity_id": task.id, "result": "called back"},
                    sink=sink,
                )
