"""What Bitrix24-style registered calls (`ExternalCall`) change in the CRM beyond intake: the call
bound to the record the phone system named, records handed to the rep who finished the call, a
recording link attached afterwards, and the call card shown to / hidden from reps in Telegram.

Intake still records each call event (event log, matching, call activity, call-back task); these
steps run after it, each in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.db import Database
from crm.dto import IntakeResult
from crm.intake.callmeta import merge_call_meta
from crm.models import Activity, ActivityBinding, ExternalCall, InboundEventLog, OutboxMessage
from crm.services.calls import apply_call_rules
from crm.services.rows import OWNER_MODELS, add_timeline, bind_activity
from matching.event import InboundEvent
from matching.identities import event_identities

CALL_CHANNEL = "call"
# Outbox kinds the rep bot turns into a call card and removes again.
CARD_SHOWN = "call_shown"
CARD_HIDDEN = "call_hidden"
# CardMessage.owner_type of a call card (its owner_id is the ExternalCall row id).
CARD_OWNER = "call"


@dataclass
class _RuleOut:
    """What `apply_call_rules` reports back (the call-back task and its notification)."""

    responsible_id: int | None
    task_id: int | None = None
    notify: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _owner_ids(kind: str, ident: int) -> dict[str, int | None]:
    ids: dict[str, int | None] = {f"{k}_id": None for k in ("lead", "deal", "contact", "company")}
    ids[f"{kind}_id"] = ident
    return ids


async def _call_row(s: AsyncSession, call_id: str, *, lock: bool = False) -> ExternalCall | None:
    query = select(ExternalCall).where(ExternalCall.call_id == call_id)
    return await s.scalar(query.with_for_update() if lock else query)


async def _call_activity(s: AsyncSession, call_id: str) -> Activity | None:
    return await s.scalar(
        select(Activity).where(Activity.channel == CALL_CHANNEL, Activity.external_id == call_id)
    )


class ExternalCalls:
    def __init__(self, db: Database, default_region: str) -> None:
        self.db = db
        self.default_region = default_region

    async def record_on_entity(
        self,
        call_id: str,
        entity: tuple[str, int],
        event: InboundEvent,
        outcome: IntakeResult,
        *,
        rep_id: int,
        now: datetime,
    ) -> int | None:
        """Bind the call's activity to `entity` (kind, id) and to nothing else, as Bitrix24 does
        for CRM_ENTITY_TYPE / CRM_ENTITY_ID. Intake ran the event in update-only mode: when it
        matched the number the activity exists and is only rebound; when it did not (unknown
        number), the activity, its call-back task and the rep's notification are made here.
        Returns the activity id; None when the entity is gone."""
        kind, ident = entity
        recorded = outcome.activity_id is not None
        async with self.db.transaction() as s:
            owner = await s.get(OWNER_MODELS[kind], ident)
            if owner is None:
                return None
            responsible = owner.responsible_id or rep_id
            meta = {k: v for k, v in event.meta.items() if k not in ("queue", "body")}
            ids = event_identities(event, self.default_region)
            act = await _call_activity(s, call_id)
            created = act is None
            if act is None:
                act = Activity(
                    kind="call",
                    direction=event.direction.value,
                    subject=(event.subject or f"Call {call_id}")[:500],
                    done=True,
                    done_at=now,
                    responsible_id=responsible,
                    channel=CALL_CHANNEL,
                    external_id=call_id[:500],
                    counterparty=next((p.e164 for p in ids.phones if p.e164), None),
                    last_attempt_at=event.occurred_at,
                    meta=meta,
                    created_at=now,
                )
                s.add(act)
                await s.flush()
            elif not recorded:  # a later stage intake did not record: it refines the activity
                act.meta = merge_call_meta(act.meta or {}, meta)
            await s.execute(delete(ActivityBinding).where(ActivityBinding.activity_id == act.id))
            await bind_activity(s, act.id, [(kind, ident)], fresh=True)
            if not recorded:
                out = _RuleOut(responsible_id=responsible)
                await apply_call_rules(s, event, ids, [(kind, ident)], now, out)
                notes: list[tuple[str, dict[str, Any]]] = []
                if created and not event.meta.get("missed"):  # a missed call's task tells
                    notes.append(("activity", {}))
                for note, payload in [*notes, *out.notify]:
                    body = {
                        "event_id": outcome.event_log_id,
                        "channel": event.channel.value,
                        "outcome": outcome.outcome,
                        "reason": f"bound by the phone system to {kind} #{ident}",
                        **_owner_ids(kind, ident),
                        "activity_id": act.id,
                        **payload,
                    }
                    s.add(_outbox(note, responsible, body, now))
            return act.id

    async def reassign_created(
        self,
        created: Sequence[tuple[str, int]],
        activity_id: int | None,
        *,
        before: int | None,
        after: int,
        now: datetime,
    ) -> list[tuple[str, int]]:
        """Hand the records a call created (and its call activity) from `before`, the rep they
        were created for, to `after`, the rep who finished the call, as Bitrix24's finish does.
        A record whose responsible someone changed since keeps it. The new rep is told with an
        "assigned" card. Returns the (kind, id) reassigned."""
        if before == after:
            return []
        moved: list[tuple[str, int]] = []
        async with self.db.transaction() as s:
            for kind, ident in created:
                model = OWNER_MODELS.get(kind.lower())
                row = await s.get(model, ident) if model is not None else None
                if row is None or row.responsible_id != before:
                    continue
                row.responsible_id = after
                row.modified_at = now
                add_timeline(
                    s,
                    kind.lower(),
                    ident,
                    "assigned",
                    None,
                    {"responsible_id": before},
                    {"responsible_id": after, "reason": "finished the call it came from"},
                )
                moved.append((kind.lower(), ident))
            act = await s.get(Activity, activity_id) if activity_id is not None else None
            if act is not None and act.responsible_id == before:
                act.responsible_id = after
            ids = dict(moved)
            if ids:
                card = {f"{k}_id": ids.get(k) for k in ("lead", "deal", "contact")}
                reason = "you finished the call it came from"
                s.add(_outbox("assigned", after, {**card, "reason": reason}, now))
        return moved

    async def attach_record(
        self, call_id: str, url: str, filename: str | None, now: datetime
    ) -> tuple[bool, int | None]:
        """Keep a recording link on a finished call and on its call activity (a later link
        replaces an earlier one). Returns (whether the call is known and finished, the
        activity id)."""
        async with self.db.transaction() as s:
            row = await _call_row(s, call_id, lock=True)
            if row is None or row.finished_at is None:
                return False, None
            record = {"url": url, "filename": filename, "attached_at": now.isoformat()}
            row.entities = {**(row.entities or {}), "record": record}
            act = await _call_activity(s, call_id)
            if act is None:
                return True, None
            meta = {**(act.meta or {}), "recording_url": url}
            if filename:
                meta["recording_filename"] = filename
            act.meta = meta
            return True, act.id

    async def recording_of_call(
        self, call_id: str, url: str, *, after_final: bool = True
    ) -> int | None:
        """Keep a recording link on the call activity of a call by the phone system's call id
        (a later link replaces an earlier one); the activity id, or None while the call has
        no activity. With `after_final`, also None until intake has recorded the call's final
        event: intake rewrites the activity's meta then, and would put back what it read
        before this link."""
        async with self.db.transaction() as s:
            if after_final:
                final = await s.scalar(
                    select(InboundEventLog.id).where(
                        InboundEventLog.channel == CALL_CHANNEL,
                        InboundEventLog.external_id == f"{call_id}:final",
                    )
                )
                if final is None:
                    return None
            act = await _call_activity(s, call_id)
            if act is None:
                return None
            if (act.meta or {}).get("recording_url") != url:
                act.meta = {**(act.meta or {}), "recording_url": url}
            return act.id

    async def show_card(
        self, call_id: str, rep_ids: Iterable[int], card: dict[str, Any], now: datetime
    ) -> bool:
        """Show the call card to the reps (once each while it is shown). False: no such call
        in progress (unknown or finished)."""
        async with self.db.transaction() as s:
            row = await _call_row(s, call_id, lock=True)
            if row is None or row.finished_at is not None:
                return False
            data = dict(row.entities or {})
            shown = [int(r) for r in data.get("shown") or []]
            for rep_id in rep_ids:
                if rep_id in shown:
                    continue
                shown.append(rep_id)
                payload = {**card, "call_id": call_id, "call_ref": row.id}
                s.add(_outbox(CARD_SHOWN, rep_id, payload, now))
            row.entities = {**data, "shown": shown}
            return True

    async def hide_card(
        self, call_id: str, rep_ids: Iterable[int] | None, now: datetime, *, finished: bool = False
    ) -> bool:
        """Take the call card away from the reps (None: from everybody who has it). False: no
        such call in progress, unless `finished` (the finish that just closed it)."""
        async with self.db.transaction() as s:
            row = await _call_row(s, call_id, lock=True)
            if row is None or (row.finished_at is not None and not finished):
                return False
            data = dict(row.entities or {})
            shown = [int(r) for r in data.get("shown") or []]
            wanted = set(shown if rep_ids is None else rep_ids)
            for rep_id in [r for r in shown if r in wanted]:
                s.add(_outbox(CARD_HIDDEN, rep_id, {"call_id": call_id, "call_ref": row.id}, now))
            row.entities = {**data, "shown": [r for r in shown if r not in wanted]}
            return True


def _outbox(kind: str, rep_id: int, payload: dict[str, Any], now: datetime) -> OutboxMessage:
    return OutboxMessage(
        rep_id=rep_id, kind=kind, payload=payload, created_at=now, next_attempt_at=now
    )
