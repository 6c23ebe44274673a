"""CRM configuration as plain values (the composition root builds it from the settings file)."""

from __future__ import annotations

from dataclasses import dataclass, field

from matching.model import CrmMode, MatchSettings


class ConfigError(Exception):
    """A one-line, user-facing configuration problem (any layer may raise it while building
    its part from the settings; the CLI prints it without a traceback)."""


@dataclass(frozen=True, slots=True)
class StatusDef:
    code: str
    name: str
    semantic: str  # process | success | failure


@dataclass(frozen=True, slots=True)
class PipelineDef:
    code: str
    name: str
    stages: tuple[StatusDef, ...]


DEFAULT_STATUSES = (
    StatusDef("NEW", "New", "process"),
    StatusDef("IN_PROCESS", "In progress", "process"),
    StatusDef("PROCESSED", "Processed", "process"),
    StatusDef("JUNK", "Junk", "failure"),
    StatusDef("CONVERTED", "Converted", "success"),
)

DEFAULT_PIPELINE = PipelineDef(
    "sales",
    "Sales",
    (
        StatusDef("NEW", "New", "process"),
        StatusDef("PREPARATION", "Preparing offer", "process"),
        StatusDef("NEGOTIATION", "Negotiation", "process"),
        StatusDef("WON", "Won", "success"),
        StatusDef("LOSE", "Lost", "failure"),
    ),
)


DEFAULT_LOST_REASONS = ("Price", "Competitor", "No budget", "No answer", "Not interested")


@dataclass(frozen=True, slots=True)
class CrmConfig:
    match: MatchSettings = field(default_factory=MatchSettings)
    default_region: str = "DE"
    currency: str = "EUR"
    lead_converts_to: tuple[str, ...] = ("contact", "deal")
    lead_statuses: tuple[StatusDef, ...] = DEFAULT_STATUSES
    pipelines: tuple[PipelineDef, ...] = (DEFAULT_PIPELINE,)
    escalation_minutes: int = 15
    timezone: str = "Europe/Berlin"
    admin_telegram_ids: tuple[int, ...] = field(default=())
    web_session_hours: float = 12.0  # how long a web console sign-in lasts
    # Offered when a deal is lost; reps may also type their own.
    lost_reasons: tuple[str, ...] = DEFAULT_LOST_REASONS

    @property
    def mode(self) -> CrmMode:
        return self.match.crm_mode

    def status(self, code: str) -> StatusDef | None:
        return next((s for s in self.lead_statuses if s.code == code), None)

    def first_status(self, semantic: str) -> StatusDef:
        return next(s for s in self.lead_statuses if s.semantic == semantic)
