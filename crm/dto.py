"""Plain dataclasses the services return; adapters never see ORM objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting: a rep with a role, or the system / an API token (rep_id None)."""

    rep_id: int | None
    role: str = "admin"  # rep | supervisor | admin

    @property
    def sees_everything(self) -> bool:
        return self.role in ("supervisor", "admin")


SYSTEM = Actor(rep_id=None, role="admin")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class CommView:
    kind: str
    raw: str
    value: str | None  # the match key: E.164, an ASCII (punycode) email, a messenger id
    label: str | None = None
    extension: str | None = None  # a phone's extension
    # What a rep reads: an email with its Unicode domain, a phone with its extension.
    display: str | None = None


@dataclass(frozen=True, slots=True)
class RepView:
    id: int
    name: str
    role: str
    active: bool
    telegram_user_id: int | None
    email: str | None
    phone: str | None
    extension: str | None


@dataclass(frozen=True, slots=True)
class ContactView:
    id: int
    name: str
    first_name: str | None
    last_name: str | None
    company_id: int | None
    company_title: str | None
    responsible_id: int | None
    comms: list[CommView]
    created_at: datetime
    modified_at: datetime

    @property
    def phones(self) -> list[str]:
        return [c.value or c.raw for c in self.comms if c.kind == "phone"]

    @property
    def emails(self) -> list[str]:
        return [c.value or c.raw for c in self.comms if c.kind == "email"]


@dataclass(frozen=True, slots=True)
class CompanyView:
    id: int
    title: str
    responsible_id: int | None
    comms: list[CommView]
    contact_ids: list[int]
    created_at: datetime
    modified_at: datetime


@dataclass(frozen=True, slots=True)
class LeadView:
    id: int
    title: str
    status: str
    status_name: str
    status_semantic: str
    source: str
    is_return_customer: bool
    name: str | None
    company_title: str | None
    contact_id: int | None
    company_id: int | None
    responsible_id: int | None
    responsible_name: str | None
    comms: list[CommView]
    comments: str | None
    junk_reason: str | None
    utm: dict[str, Any] | None
    taken_at: datetime | None
    created_at: datetime
    modified_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status_semantic == "process"


@dataclass(frozen=True, slots=True)
class DealView:
    id: int
    title: str
    pipeline: str
    pipeline_name: str
    stage: str
    stage_name: str
    stage_semantic: str
    amount: Decimal | None
    currency: str
    contact_id: int | None
    company_id: int | None
    lead_id: int | None
    is_return_customer: bool
    is_repeated_approach: bool
    responsible_id: int | None
    responsible_name: str | None
    source: str | None
    created_at: datetime
    modified_at: datetime
    closed_at: datetime | None
    lost_reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.stage_semantic == "process"


@dataclass(frozen=True, slots=True)
class ActivityView:
    id: int
    kind: str
    direction: str | None
    subject: str | None
    body: str | None
    due_at: datetime | None
    done: bool
    done_at: datetime | None
    result: str | None
    responsible_id: int | None
    author_id: int | None
    channel: str | None
    counterparty: str | None
    attempts: int
    last_attempt_at: datetime | None
    meta: dict[str, Any]
    bindings: list[tuple[str, int]]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TimelineView:
    id: int
    owner_type: str
    owner_id: int
    actor_id: int | None
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime


@dataclass(frozen=True, slots=True)
class ExceptionView:
    id: int
    kind: str
    value: str
    comment: str | None
    added_by: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EventView:
    id: int
    channel: str
    external_id: str
    received_at: datetime
    occurred_at: datetime
    direction: str
    outcome: str
    reason: str
    lead_id: int | None
    deal_id: int | None
    contact_id: int | None
    company_id: int | None
    activity_id: int | None


# Not frozen: a frozen dataclass's __init__ sets each field through `object.__setattr__`,
# several times the cost of a plain one, and intake builds one per event. Nothing assigns to
# a result once built; hashed by value, as a frozen one is.
@dataclass(slots=True, unsafe_hash=True)
class IntakeResult:
    """What intake did with one event."""

    outcome: str
    reason: str
    event_log_id: int | None = None
    lead_id: int | None = None
    deal_id: int | None = None
    contact_id: int | None = None
    company_id: int | None = None
    activity_id: int | None = None
    task_id: int | None = None
    created: list[tuple[str, int]] = field(default_factory=list)  # (entity type, id)
    responsible_id: int | None = None


@dataclass(frozen=True, slots=True)
class DuplicateHits:
    """Which records hold given communications (like crm.duplicate.findbycomm): those the
    viewer may read by id, the others (another rep's) counted in `hidden`."""

    leads: list[int]
    contacts: list[int]
    companies: list[int]
    hidden: int
