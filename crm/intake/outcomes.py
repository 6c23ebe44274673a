"""What a decision means for the stored outcome, and the results intake answers with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crm.dto import IntakeResult
from crm.models import InboundEventLog
from matching.event import InboundEvent
from matching.model import Decision, Outcome

if TYPE_CHECKING:
    from crm.intake.apply import Applied

# Outcomes that create a lead or a deal; a contact import turns them into a contact instead.
CREATING = frozenset(
    {Outcome.NEW_LEAD, Outcome.NEW_REPEAT_LEAD, Outcome.NEW_DEAL, Outcome.NEW_REPEAT_DEAL}
)


@dataclass(frozen=True, slots=True)
class Logged:
    """What a duplicate's answer reads of its event's log row (read without the ORM)."""

    id: int
    outcome: str
    lead_id: int | None
    deal_id: int | None
    contact_id: int | None
    company_id: int | None
    activity_id: int | None


def imports_contact(event: InboundEvent, decision: Decision) -> bool:
    return event.meta.get("import_as") == "contact" and decision.outcome in CREATING


def creates(event: InboundEvent, d: Decision) -> bool:
    """Whether the decision makes a new record that needs a responsible."""
    if imports_contact(event, d):
        return d.contact_id is None and d.company_id is None
    return d.outcome in CREATING


def stored_outcome(event: InboundEvent, decision: Decision) -> tuple[str, str]:
    """Outcome and reason as logged and returned; a contact import never makes a lead/deal."""
    if not imports_contact(event, decision):
        return str(decision.outcome), decision.reason  # (str(): the value)
    why = decision.reason.partition(" → ")[0]
    if decision.contact_id is None and decision.company_id is None:
        return "new_contact", f"{why} → new contact (contact import)"
    return Outcome.ATTACHED_CLIENT.value, f"{why} → details merged into the client (contact import)"


def result(
    outcome: str,
    reason: str,
    refs: Decision | Applied | InboundEventLog | Logged | IntakeResult,
    **extra: Any,
) -> IntakeResult:
    """A result naming the records `refs` names."""
    return IntakeResult(
        outcome=outcome,
        reason=reason,
        lead_id=refs.lead_id,
        deal_id=refs.deal_id,
        contact_id=refs.contact_id,
        company_id=refs.company_id,
        **extra,
    )


def _duplicate_of(
    event_id: int | None, outcome: str, refs: InboundEventLog | Logged | IntakeResult
) -> IntakeResult:
    reason = f"already processed as event #{event_id} ({outcome})"
    return result(
        Outcome.DUPLICATE.value,
        reason,
        refs,
        event_log_id=event_id,
        activity_id=refs.activity_id,
    )


def duplicate_result(row: InboundEventLog | Logged) -> IntakeResult:
    return _duplicate_of(row.id, row.outcome, row)


def repeated(first: IntakeResult) -> IntakeResult:
    """The answer for a second copy of an event in the same batch."""
    if first.outcome == Outcome.DUPLICATE.value:
        return first
    return _duplicate_of(first.event_log_id, first.outcome, first)
