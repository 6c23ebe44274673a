"""Run CSV rows through intake, or preview them (`--dry-run`) with the same counts.

A real import hands each row's event to `Intake.process`, one after another, so a person
who appears twice in the file is created once and matched the second time. A dry run asks
`Intake.preview` (the matcher against the stored data, nothing written) and remembers who
earlier rows of the file would have created, so a later row of the same person is counted as
matched, as it will be in the real run.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from channels.csv.rows import RowProblem
from channels.event import InboundEvent
from crm.dto import IntakeResult
from matching.identities import event_identities
from matching.model import Identity

log = logging.getLogger(__name__)

Kind = Literal["created", "matched", "skipped", "unchanged"]
KINDS: tuple[Kind, ...] = ("created", "matched", "skipped", "unchanged")
_KIND: dict[str, Kind] = {
    "new_lead": "created",
    "new_repeat_lead": "created",
    "new_deal": "created",
    "new_repeat_deal": "created",
    "new_contact": "created",
    "attached_lead": "matched",
    "attached_deal": "matched",
    "attached_client": "matched",
    "duplicate": "unchanged",  # this row was imported before
}
# What a later row of the same person becomes once an earlier row took this outcome.
_FOLLOW_UP = {
    "new_lead": "attached_lead",
    "new_repeat_lead": "attached_lead",
    "new_deal": "attached_deal",
    "new_repeat_deal": "attached_deal",
    "new_contact": "attached_client",
}
UNUSABLE = "unusable"  # no phone or email we could use: never reaches intake
FAILED = "failed"  # intake raised; the reason is in the report and the log
_MAX_FAILURES_IN_A_ROW = 20


class ImportAborted(Exception):
    """Intake keeps failing (database gone?): stop instead of failing every row."""


class IntakePort(Protocol):
    async def process(self, event: InboundEvent) -> IntakeResult: ...

    async def preview(self, event: InboundEvent) -> IntakeResult: ...


@dataclass(frozen=True, slots=True)
class RowResult:
    row_no: int
    outcome: str  # an intake outcome, UNUSABLE or FAILED
    reason: str

    @property
    def kind(self) -> Kind:
        return _KIND.get(self.outcome, "skipped")


@dataclass
class ImportSummary:
    rows: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    # Rows for the report: not imported (unusable, excepted, failed) or imported with warnings.
    problems: list[RowResult] = field(default_factory=list)

    def by_kind(self) -> dict[Kind, Counter[str]]:
        grouped: dict[Kind, Counter[str]] = {kind: Counter() for kind in KINDS}
        for outcome, n in self.outcomes.items():
            grouped[RowResult(0, outcome, "").kind][outcome] += n
        return grouped


class _FileMemory:
    """Who earlier rows of this dry run would have created or matched, by identity."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.owner: dict[Identity, tuple[int, str]] = {}

    def identities(self, event: InboundEvent) -> tuple[Identity, ...]:
        return event_identities(event, self.region).matchable()

    def earlier(self, event: InboundEvent) -> tuple[int, str] | None:
        hits = [self.owner[i] for i in self.identities(event) if i in self.owner]
        return min(hits) if hits else None

    def remember(self, row_no: int, event: InboundEvent, outcome: str) -> None:
        for identity in self.identities(event):
            self.owner.setdefault(identity, (row_no, outcome))


async def import_rows(
    intake: IntakePort,
    items: Sequence[InboundEvent | RowProblem],
    *,
    dry_run: bool,
    region: str,
    on_row: Callable[[RowResult], object] = lambda _: None,
) -> ImportSummary:
    """Import (or preview) every row in order; `on_row` sees each result as it is known."""
    summary = ImportSummary()
    memory = _FileMemory(region) if dry_run else None
    failures = 0
    for item in items:
        if isinstance(item, RowProblem):
            result = RowResult(item.row_no, UNUSABLE, item.reason)
            summary.problems.append(result)
        else:
            result = await _one(intake, item, memory)
            failures = failures + 1 if result.outcome == FAILED else 0
            if failures >= _MAX_FAILURES_IN_A_ROW:
                raise ImportAborted(f"{failures} rows in a row failed; last: {result.reason}")
            if problem := _problem(item, result):
                summary.problems.append(problem)
        summary.rows += 1
        summary.outcomes[result.outcome] += 1
        on_row(result)
    return summary


async def _one(intake: IntakePort, event: InboundEvent, memory: _FileMemory | None) -> RowResult:
    row_no = int(event.meta["row"])
    try:
        done = await (intake.process(event) if memory is None else intake.preview(event))
    except Exception as exc:  # one bad row must not end the import of the others
        log.exception("CSV row %d failed", row_no)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return RowResult(row_no, FAILED, f"not imported: {reason}")
    result = RowResult(row_no, done.outcome, done.reason)
    if memory is None or result.outcome in ("ignored", "duplicate"):
        return result
    earlier = memory.earlier(event)
    if earlier is not None:
        first_row, first_outcome = earlier
        outcome = _FOLLOW_UP.get(first_outcome, first_outcome)
        result = RowResult(row_no, outcome, f"same person as row {first_row} → {outcome}")
    memory.remember(row_no, event, result.outcome)
    return result


def _problem(event: InboundEvent, result: RowResult) -> RowResult | None:
    if result.outcome in ("ignored", FAILED):
        return result
    warnings = event.meta.get("warnings")
    if warnings and result.kind != "unchanged":
        reason = f"imported ({result.outcome}), but " + "; ".join(warnings)
        return RowResult(result.row_no, result.outcome, reason)
    return None
