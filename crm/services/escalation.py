"""Time-driven follow-ups the rep bot needs: call-back reminders and lead escalation.

Both write their notifications into the outbox in the same transaction that claims the work, so
a crash in between never loses a reminder or an escalation notice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, select

from crm.db import Database
from crm.models import Activity, ActivityBinding, Lead, OutboxMessage, Rep, TimelineEntry
from crm.services.rows import add_timeline


@dataclass(frozen=True, slots=True)
class Escalated:
    lead_id: int
    from_rep_id: int | None
    to_rep_id: int | None  # None: nobody else to offer it to; only the supervisors are told


class Followups:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def remind(self, now: datetime, limit: int = 100) -> list[int]:
        """Claim due, open, not yet reminded activities and queue a reminder for each.

        Call-back tasks opened by a missed call are claimed silently: their missed-call card is
        the notification. Returns the ids of the activities a reminder was queued for."""
        async with self.db.transaction() as s:
            rows = list(
                await s.scalars(
                    select(Activity)
                    .where(
                        Activity.done.is_(False),
                        Activity.due_at.is_not(None),
                        Activity.due_at <= now,
                        Activity.reminded_at.is_(None),
                    )
                    .order_by(Activity.due_at, Activity.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            reminded = []
            for act in rows:
                act.reminded_at = now
                if (act.meta or {}).get("callback"):
                    continue
                bindings = await s.scalars(
                    select(ActivityBinding).where(ActivityBinding.activity_id == act.id)
                )
                payload: dict[str, object] = {"activity_id": act.id}
                for b in bindings:
                    payload[f"{b.owner_type}_id"] = b.owner_id
                s.add(_outbox("reminder", payload, act.responsible_id, now))
                reminded.append(act.id)
            return reminded

    async def escalate(
        self, now: datetime, after: timedelta, max_times: int, limit: int = 50
    ) -> list[Escalated]:
        """Offer open leads nobody acted on within `after` to the next rep; tell supervisors.

        A lead counts as acted on once a rep took it or left anything in its timeline (a
        status, a comment, a scheduled call). A lead is escalated at most `max_times`."""
        if after <= timedelta(0) or max_times <= 0:
            return []
        cutoff = now - after
        acted = exists().where(
            TimelineEntry.owner_type == "lead",
            TimelineEntry.owner_id == Lead.id,
            TimelineEntry.actor_id.is_not(None),
        )
        async with self.db.transaction() as s:
            leads = list(
                await s.scalars(
                    select(Lead)
                    .where(
                        Lead.status_semantic == "process",
                        Lead.taken_at.is_(None),
                        Lead.escalation_count < max_times,
                        ~acted,
                    )
                    .where(
                        (Lead.escalated_at.is_(None) & (Lead.created_at <= cutoff))
                        | (Lead.escalated_at <= cutoff)
                    )
                    .order_by(Lead.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if not leads:
                return []
            reps = list(
                await s.execute(
                    select(Rep.id, Rep.role).where(
                        Rep.active.is_(True), Rep.telegram_user_id.is_not(None)
                    )
                )
            )
            pool = sorted(i for i, role in reps if role == "rep") or sorted(i for i, _ in reps)
            out = []
            for lead in leads:
                current = lead.responsible_id
                target = _next_after(pool, current)
                lead.escalated_at = now
                lead.escalation_count += 1
                if target is not None:
                    lead.responsible_id = target
                    lead.modified_at = now
                    s.add(
                        _outbox(
                            "escalated", _esc_payload(lead, current, target, after), target, now
                        )
                    )
                add_timeline(
                    s,
                    "lead",
                    lead.id,
                    "escalated",
                    None,
                    {"responsible_id": current},
                    {"responsible_id": lead.responsible_id, "count": lead.escalation_count},
                )
                # rep_id None reaches the supervisors and admins.
                s.add(
                    _outbox(
                        "escalation_notice", _esc_payload(lead, current, target, after), None, now
                    )
                )
                out.append(Escalated(lead.id, current, target))
            return out


def _next_after(pool: list[int], current: int | None) -> int | None:
    """The next rep after `current` in id order (wrapping), never `current` itself."""
    others = [r for r in pool if r != current]
    if not others:
        return None
    return next((r for r in others if current is not None and r > current), others[0])


def _esc_payload(
    lead: Lead, current: int | None, target: int | None, after: timedelta
) -> dict[str, object]:
    return {
        "lead_id": lead.id,
        "from_rep_id": current,
        "to_rep_id": target,
        "minutes": int(after.total_seconds() // 60),
        "count": lead.escalation_count,
    }


def _outbox(
    kind: str, payload: dict[str, object], rep_id: int | None, now: datetime
) -> OutboxMessage:
    return OutboxMessage(
        rep_id=rep_id, kind=kind, payload=payload, created_at=now, next_attempt_at=now
    )
