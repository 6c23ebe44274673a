"""Call rules on top of intake: one call-back task per missed number, closed when reached.

A missed incoming call opens a "call back" task for the responsible, due now. Further missed
calls from the same number while that task is open only raise its counter and last-attempt
time. A later answered incoming call, or an outgoing call to the number, closes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Activity, ActivityBinding
from crm.services.common import add_timeline, bind_activity
from matching.event import Direction, InboundEvent
from matching.model import EventIdentities


class _Out(Protocol):
    responsible_id: int | None
    task_id: int | None
    notify: list[tuple[str, dict[str, Any]]]


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
) -> None:
    phone = next((p.e164 for p in ids.phones if p.e164), None)
    if phone is None:
        return
    open_tasks = list(
        await s.scalars(
            select(Activity)
            .where(
                Activity.kind == "task",
                Activity.done.is_(False),
                Activity.counterparty == phone,
            )
            .order_by(Activity.id)
        )
    )
    open_tasks = [t for t in open_tasks if (t.meta or {}).get("callback")]
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
            await s.flush()
            created = True
        await bind_activity(s, task.id, bindings)
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
                )
