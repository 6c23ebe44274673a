"""Rep notifications: which card an event earns, and its outbox row."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from crm.models import OutboxMessage
from crm.services.rows import RowSink
from matching.event import Channel, Direction, InboundEvent
from matching.model import Decision, Outcome

if TYPE_CHECKING:
    from crm.intake.apply import Applied

_NEW_RECORD_CARDS = frozenset({"new_lead", "repeat_lead", "new_deal", "repeat_deal"})
_CARDS = {
    Outcome.NEW_LEAD: "new_lead",
    Outcome.NEW_REPEAT_LEAD: "repeat_lead",
    Outcome.NEW_DEAL: "new_deal",
    Outcome.NEW_REPEAT_DEAL: "repeat_deal",
}


def card_kind(event: InboundEvent, decision: Decision, activity_created: bool) -> str | None:
    """The card for a new record, or for a new activity on a known one; none for an
    outgoing or imported event."""
    if event.direction is Direction.OUTGOING or event.channel is Channel.IMPORT:
        return None
    kind = _CARDS.get(decision.outcome)
    if kind is None and activity_created:
        kind = "activity"
    return kind


def one_card_per_event(
    notify: list[tuple[str, dict[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    """A missed call makes a call-back task: a new record's card already shows it, else the
    missed-call notice stands for the call's activity. Reps get one message per event."""
    kinds = {kind for kind, _ in notify}
    if "missed_call" not in kinds:
        return notify
    drop = "missed_call" if kinds & _NEW_RECORD_CARDS else "activity"
    return [(kind, payload) for kind, payload in notify if kind != drop]


def add_outbox(
    sink: RowSink,
    kind: str,
    payload: dict[str, Any],
    event_log_id: int,
    channel: Channel,
    now: datetime,
    decision: Decision,
    applied: Applied,
) -> None:
    body = {
        "event_id": event_log_id,
        "channel": str(channel),  # (str(): the value, without `.value`'s property)
        "outcome": str(decision.outcome),
        "reason": decision.reason,
        "lead_id": applied.lead_id,
        "deal_id": applied.deal_id,
        "contact_id": applied.contact_id,
        "company_id": applied.company_id,
        "activity_id": applied.activity_id,
        **payload,
    }
    sink.add(
        OutboxMessage,
        {"created_at": now, "next_attempt_at": now},
        rep_id=applied.responsible_id,
        kind=kind,
        payload=body,
    )
