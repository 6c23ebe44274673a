"""Value types the matcher works on: identities, candidates, settings and decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class CommKind(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    TELEGRAM = "telegram"
    WHATSAPP = "whatsapp"
    OTHER = "other"


# The types intake builds for every event are slots dataclasses hashed by value, not frozen
# ones: a frozen dataclass's __init__ sets each field through `object.__setattr__`, several
# times the cost of a plain one, and several are built per event. Nothing assigns to them
# once built (the matcher returns new values).


@dataclass(slots=True, unsafe_hash=True, order=True)
class Identity:
    """A normalized communication: (kind, value), e.g. (phone, "+49301234567")."""

    kind: CommKind
    value: str

    @property
    def key(self) -> str:
        """Stable string used for locks and logs."""
        # A StrEnum member formats as its value, without `.value`'s Python-level property
        # (intake reads enum values a few dozen times per event).
        return f"{self.kind}:{self.value}"


@dataclass(slots=True, unsafe_hash=True)
class PhoneNumber:
    raw: str
    e164: str | None  # None when the number does not parse: kept raw, never used to match
    extension: str | None = None

    @property
    def valid(self) -> bool:
        return self.e164 is not None


@dataclass(slots=True, unsafe_hash=True)
class EventIdentities:
    """What an event says about who sent it, normalized."""

    phones: tuple[PhoneNumber, ...] = ()
    emails: tuple[str, ...] = ()
    handles: tuple[Identity, ...] = ()  # kinds telegram / whatsapp
    hint_phones: tuple[PhoneNumber, ...] = ()  # found in free text: match only, never create
    # `matchable()` and `exception_checked()`, worked out once: intake asks for them several
    # times per event.
    _matchable: tuple[Identity, ...] = field(init=False, repr=False, compare=False)
    _checked: tuple[Identity, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        own = {Identity(CommKind.PHONE, p.e164) for p in self.phones if p.e164}
        if self.emails:
            own |= {Identity(CommKind.EMAIL, e) for e in self.emails}
        checked = tuple(sorted(own))
        object.__setattr__(self, "_checked", checked)
        if not self.hint_phones and not self.handles:  # most events: the same identities
            object.__setattr__(self, "_matchable", checked)
            return
        found = own | {Identity(CommKind.PHONE, p.e164) for p in self.hint_phones if p.e164}
        found |= set(self.handles)
        object.__setattr__(self, "_matchable", tuple(sorted(found)))

    def matchable(self) -> tuple[Identity, ...]:
        """Every identity that may be used to look someone up, sorted and de-duplicated."""
        return self._matchable

    def exception_checked(self) -> tuple[Identity, ...]:
        """Phones and emails the event itself carries (the exception list covers these)."""
        return self._checked


class CrmMode(StrEnum):
    CLASSIC = "classic"
    SIMPLE = "simple"


@dataclass(frozen=True, slots=True)
class MatchSettings:
    crm_mode: CrmMode = CrmMode.CLASSIC
    repeat_sales: bool = True
    # Only meaningful with repeat_sales off: a closed lead of this person is reused.
    traditional_mode: bool = False


@dataclass(slots=True, unsafe_hash=True)
class DealRef:
    id: int
    title: str
    modified_at: datetime
    created_at: datetime
    responsible_id: int | None
    contact_id: int | None
    company_id: int | None


@dataclass(slots=True, unsafe_hash=True)
class LeadRef:
    id: int
    title: str
    is_open: bool  # status semantic "in progress"
    is_return_customer: bool
    modified_at: datetime
    created_at: datetime
    responsible_id: int | None
    contact_id: int | None
    company_id: int | None
    matched_by: tuple[Identity, ...] = ()
    junked: bool = False  # closed as junk (status semantic "failure"), not converted


class ClientKind(StrEnum):
    CONTACT = "contact"
    COMPANY = "company"


@dataclass(slots=True, unsafe_hash=True)
class ClientCandidate:
    """A contact or company that holds one of the event's identities, or the company of such
    a contact (then `matched_by` is empty: its contact was matched)."""

    kind: ClientKind
    id: int
    name: str
    responsible_id: int | None
    responsible_active: bool
    company_id: int | None  # for a contact: the company it belongs to
    open_deals: tuple[DealRef, ...] = ()  # newest activity first
    open_repeat_leads: tuple[LeadRef, ...] = ()  # newest first
    matched_by: tuple[Identity, ...] = ()
    hit_order: int = 0  # order in which the lookup found it (lower = earlier)


@dataclass(slots=True, unsafe_hash=True)
class Candidates:
    """Everything the repository found for an event's identities."""

    contacts: tuple[ClientCandidate, ...] = ()
    companies: tuple[ClientCandidate, ...] = ()
    # Leads holding one of the identities, open and closed, newest modification first.
    leads: tuple[LeadRef, ...] = ()
    # The newest closed lead holding one of the identities, when `leads` leaves it out: a new
    # lead's reason names it ("lead #3 was junked").
    closed_lead: LeadRef | None = None
    # The event's Message-ID thread resolved to an existing lead / deal (mail replies).
    thread_lead_id: int | None = None
    thread_deal_id: int | None = None


class Outcome(StrEnum):
    IGNORED = "ignored"  # exception list, outgoing with nobody known, filtered robots
    NEW_LEAD = "new_lead"
    NEW_REPEAT_LEAD = "new_repeat_lead"
    NEW_DEAL = "new_deal"  # simple mode: new contact + deal
    NEW_REPEAT_DEAL = "new_repeat_deal"  # simple mode, known client with nothing open
    ATTACHED_LEAD = "attached_lead"
    ATTACHED_DEAL = "attached_deal"
    ATTACHED_CLIENT = "attached_client"  # activity on the contact / company only
    DUPLICATE = "duplicate"  # same (channel, external id) already processed (set by intake)


@dataclass(slots=True, unsafe_hash=True)
class Decision:
    outcome: Outcome
    reason: str  # short, human readable, shown to reps
    contact_id: int | None = None
    company_id: int | None = None
    lead_id: int | None = None  # lead to attach to / merge into
    deal_id: int | None = None  # deal to attach to
    # Responsible to use: the client's / record's responsible when active; None means the
    # distribution queue picks one.
    responsible_id: int | None = None
    merge_into_lead: bool = False  # merge the event's phones / emails / name into lead_id
    link_lead_to_client: bool = False  # lead_id gets contact_id / company_id set (blind spot)
    conflict: str | None = None  # named when identities point at different clients
    exception_hits: tuple[Identity, ...] = field(default=())
