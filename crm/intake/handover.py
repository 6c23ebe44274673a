"""A call's records created while it rang go to the rep who answered it.

A phone system often reports the ringing before anyone picks up (a group, a queue): the lead
it creates goes to the round robin or the line's owner. When a later stage of that call names
the agent who answered (the generic webhook's `agent_extension`, resolved to a rep by the
channel as the event's one-rep `queue`), the records the call created, and its call activity,
move to that rep, as Bitrix24's `telephony.externalcall.finish` hands them to the rep who
finished the call. Only an active rep takes them, and only records that still have the
responsible they were created with (a rep's own reassignment stands)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.intake.outcomes import CREATING
from crm.models import Activity, InboundEventLog
from crm.services.rows import OWNER_MODELS, RowSink, add_timeline
from matching.event import Channel, Direction, InboundEvent

_LATER_STAGES = frozenset({"answered", "ended"})


def answering_rep(event: InboundEvent) -> int | None:
    """The rep a later stage of an incoming call names as having answered it."""
    if event.channel is not Channel.CALL or event.direction is not Direction.INCOMING:
        return None
    if str(event.meta.get("stage")) not in _LATER_STAGES or event.meta.get("missed"):
        return None
    queue = event.meta.get("queue") or []
    return int(queue[0]) if len(queue) == 1 else None


@dataclass(frozen=True, slots=True)
class HandedOver:
    rep_id: int
    records: dict[str, int]  # kind → id of what moved

    def card(self) -> dict[str, Any]:
        """The "assigned" card's payload for the rep who took the records."""
        ids = {f"{k}_id": self.records.get(k) for k in ("lead", "deal", "contact")}
        return {**ids, "reason": "you answered the call it came from"}


async def hand_over(
    s: AsyncSession,
    event: InboundEvent,
    act: Activity,
    active: set[int],
    sink: RowSink,
) -> HandedOver | None:
    """Move what the call created at ringing to the answering rep; None when nothing
    changes hands."""
    rep = answering_rep(event)
    before = act.responsible_id
    if rep is None or rep == before or rep not in active:
        return None
    call_id = str(event.meta.get("call_id") or "")
    rows = await s.execute(
        select(
            InboundEventLog.lead_id,
            InboundEventLog.deal_id,
            InboundEventLog.contact_id,
            InboundEventLog.company_id,
        ).where(
            InboundEventLog.channel == Channel.CALL.value,
            InboundEventLog.external_id == f"{call_id}:ringing",
            InboundEventLog.outcome.in_([o.value for o in CREATING]),
        )
    )
    moved: dict[str, int] = {}
    for row in rows:
        for kind, ident in zip(("lead", "deal", "contact", "company"), row, strict=True):
            record = await s.get(OWNER_MODELS[kind], ident) if ident is not None else None
            if record is None or record.responsible_id != before:
                continue
            record.responsible_id = rep
            add_timeline(
                s,
                kind,
                record.id,
                "assigned",
                None,
                {"responsible_id": before},
                {"responsible_id": rep, "reason": "answered the call it came from"},
                sink=sink,
            )
            moved[kind] = record.id
    if not moved:
        return None
    act.responsible_id = rep
    return HandedOver(rep, moved)
