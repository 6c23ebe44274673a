"""The shape every phone format (generic JSON, Twilio, Bitrix24 REST) is parsed into, and how
such a call report becomes an `InboundEvent`.

Each stage of a call is its own event: `<call id>:ringing`, `<call id>:answered` and one
`<call id>:final` for the outcome (ended or missed). A call ends once, so the first outcome
reported wins and any later, contradicting one is a duplicate: Twilio, for one, reports the
rep's `<Dial>` outcome first and then "completed" for the caller's leg, which only means Twilio
itself picked up. The CRM side keeps one activity per call id (`meta["call_id"]`).
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from enum import StrEnum
from typing import cast

import msgspec

from matching.event import Channel, Direction, EventMeta, InboundEvent
from matching.normalize import is_withheld, normalize_phone


class CallDirection(StrEnum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


class CallStage(StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"  # finished after being answered (or an ended outgoing attempt)
    MISSED = "missed"  # finished without anybody answering


class Disposition(StrEnum):
    ANSWERED = "answered"
    MISSED = "missed"  # nobody picked up (no-answer, Bitrix 304)
    BUSY = "busy"
    DECLINED = "declined"  # rejected by the callee (Bitrix 603)
    FAILED = "failed"  # network / number error
    CANCELLED = "cancelled"  # the caller hung up while it was still ringing


# A msgspec Struct rather than a frozen dataclass: one is made for every call webhook request,
# and a frozen dataclass sets each of its fields through object.__setattr__. It holds no
# containers, so the garbage collector need not track it.
class CallReport(msgspec.Struct, frozen=True, gc=False):
    """One stage of one call, as the phone system told it. Numbers are raw; None = withheld."""

    call_id: str
    stage: CallStage
    direction: CallDirection
    from_number: str | None
    to_number: str | None
    line: str | None = None  # the line / DID the call went through
    agent_extension: str | None = None
    started_at: datetime | None = None  # timezone-aware when set
    ended_at: datetime | None = None
    duration: int | None = None  # seconds of conversation
    disposition: Disposition | None = None  # set once the call is over
    recording_url: str | None = None
    caller_name: str | None = None
    occurred_at: datetime | None = None  # when this stage happened, if the source says so
    lead_source: str | None = None  # source code for a lead the call opens (else CALL)

    @property
    def customer_number(self) -> str | None:
        """The other party: the caller for incoming calls, the callee for outgoing ones."""
        if self.direction is _INCOMING:
            return self.from_number
        return self.to_number

    @property
    def missed(self) -> bool:
        """An incoming call that is over and was never answered."""
        return (
            self.direction is CallDirection.INCOMING
            and self.stage in (CallStage.ENDED, CallStage.MISSED)
            and self.disposition is not Disposition.ANSWERED
        )


# On Python 3.11 `CallDirection.INCOMING` passes through the enum type's __getattr__ on every
# use: bound once for what every call webhook request asks.
_INCOMING = CallDirection.INCOMING


class PayloadError(Exception):
    """A body or parameter set that is not a call report; `status` is the HTTP status to send:
    400 for malformed input, 422 for a well-formed event we do not know."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def final_stage(direction: CallDirection, disposition: Disposition) -> CallStage:
    """The stage a finished call is reported as: only an unanswered incoming call is missed."""
    if direction is CallDirection.INCOMING and disposition is not Disposition.ANSWERED:
        return CallStage.MISSED
    return CallStage.ENDED


# PBX extensions are short digit strings; nothing this short is a number a customer calls from.
MAX_EXTENSION_DIGITS = 4
# Twilio Client / SIP endpoints are our own softphones, never customers.
_URI_SCHEME = re.compile(r"^(?:client|sip|sips):", re.IGNORECASE)
_NUMBER_PUNCTUATION = re.compile(r"[\s\-./()]")


def _compact(number: str) -> str:
    # A number sent compact already ("+" or a digit, then digits) has nothing to take out.
    if number[1:].isdigit() and (number[:1] == "+" or number[:1].isdigit()):
        return number
    return _NUMBER_PUNCTUATION.sub("", number)


def is_endpoint_uri(number: str) -> bool:
    """True for `client:alice` / `sip:101@pbx` style addresses (our side of a call)."""
    return bool(_URI_SCHEME.match(number.strip()))


def is_http_url(value: str) -> bool:
    """Recording links end up as links in Telegram: only http(s) may pass."""
    return value.lower().startswith(("https://", "http://")) and len(value) > len("https://")


@functools.lru_cache(maxsize=64)
def _compact_set(numbers: frozenset[str]) -> frozenset[str]:
    return frozenset(_compact(x) for x in numbers)


@functools.lru_cache(maxsize=64)
def _e164_set(numbers: frozenset[str], region: str | None) -> frozenset[str]:
    # Settings-sized sets, asked on every call: parse them once.
    return frozenset(e for x in numbers if (e := normalize_phone(x, region).e164) is not None)


def _is_internal(
    number: str,
    e164: str | None,
    region: str | None,
    internal: frozenset[str],
    ours: frozenset[str],
    compact: str | None = None,
) -> bool:
    if is_endpoint_uri(number):
        return True
    if compact is None:
        compact = _compact(number)
    if compact in _compact_set(internal):
        return True
    if compact.isdigit() and len(compact) <= MAX_EXTENSION_DIGITS:
        return True
    return compact in _compact_set(ours) or (e164 is not None and e164 in _e164_set(ours, region))


def _plain_e164(compact: str) -> str | None:
    # "+" and digits: what normalizing gives when the number is valid, and no number in a set
    # of normalized ones when it is not, so a membership test needs no parsing.
    return compact if compact[:1] == "+" and compact[1:].isdigit() else None


def plainly_internal(
    report: CallReport,
    *,
    line_region: str | None,
    internal_extensions: frozenset[str],
    our_numbers: frozenset[str],
) -> bool:
    """Whether `call_to_event` will find the call internal, told without parsing the number:
    cheap enough for a webhook's reply. Only a nationally written spelling of one of our own
    numbers is left to `call_to_event`."""
    customer = report.customer_number
    if customer is None:
        return False
    customer = customer.strip()
    if customer[:1] == "+" and customer[1:].isdigit():
        # Compact E.164, as most systems send it: no placeholder, no endpoint, nothing to
        # take out, its own E.164 if valid: `_is_internal`'s answer in three set lookups.
        return (
            customer in _compact_set(internal_extensions)
            or customer in _compact_set(our_numbers)
            or customer in _e164_set(our_numbers, line_region)
        )
    return _spelled_internal(customer, line_region, internal_extensions, our_numbers)


def _spelled_internal(
    customer: str, region: str | None, internal: frozenset[str], ours: frozenset[str]
) -> bool:
    """`plainly_internal` of a stripped number in any other spelling."""
    if is_withheld(customer):
        return False
    compact = _compact(customer)
    return _is_internal(customer, _plain_e164(compact), region, internal, ours, compact)


def _title(report: CallReport, shown_number: str) -> str:
    # Also the title of a lead the call creates (a missed call is still an incoming call).
    if report.direction is CallDirection.OUTGOING:
        return f"{shown_number} — outgoing call"
    return f"{shown_number} — incoming call"


def event_id(report: CallReport) -> str:
    """The external id of the event a report becomes."""
    return f"{report.call_id}:{stage_key(report.stage)}"


_EARLIER_STAGES: dict[str, tuple[str, ...]] = {
    "ringing": (),
    "answered": ("ringing",),
    "final": ("ringing", "answered"),
}


def stage_key(stage: CallStage) -> str:
    """The external id suffix of a stage: both ways a call can end share one."""
    return _STAGE_KEYS[stage]


# Looked up, not worked out: on Python 3.11 every `CallStage.X` and `.value` passes through
# the enum type's __getattr__, and this runs for every call webhook request.
_STAGE_KEYS = {
    stage: "final" if stage in (CallStage.ENDED, CallStage.MISSED) else stage.value
    for stage in CallStage
}


def _occurred_at(report: CallReport, received_at: datetime) -> datetime:
    if report.occurred_at is not None:
        return report.occurred_at
    if report.stage in (CallStage.ENDED, CallStage.MISSED) and report.ended_at is not None:
        return report.ended_at
    return report.started_at or received_at


def call_to_event(
    report: CallReport,
    *,
    line_region: str | None,
    internal_extensions: frozenset[str],
    our_numbers: frozenset[str],
    received_at: datetime,
) -> InboundEvent | None:
    """The event for one call stage, or None for an internal call (the caller logs that).

    A withheld customer number still yields an event (phones=(), meta["withheld"]) so the call
    is logged, but it can never match or create anybody. `received_at` (timezone-aware) is used
    when the report carries no time of its own.
    """
    customer = report.customer_number
    e164: str | None = None
    if customer is not None and not is_withheld(customer):
        customer = customer.strip()
        e164 = normalize_phone(customer, line_region).e164
        if _is_internal(customer, e164, line_region, internal_extensions, our_numbers):
            return None
    else:
        customer = None
    title = _title(report, e164 or customer or "withheld number")
    facts: EventMeta = {
        "call_id": report.call_id,
        "stage": report.stage.value,
        "direction": report.direction.value,
        "from": report.from_number,
        "to": report.to_number,
        "line": report.line,
        "agent_extension": report.agent_extension,
        "started_at": report.started_at.isoformat() if report.started_at else None,
        "ended_at": report.ended_at.isoformat() if report.ended_at else None,
        "duration": report.duration,
        "disposition": report.disposition.value if report.disposition else None,
        "recording_url": report.recording_url,
        "missed": report.missed,
        "withheld": customer is None,
        # False when the number is kept raw because it does not parse (it will not match).
        "number_parsed": e164 is not None,
        "title": title,
    }
    # Unknown facts are left out, so a later event of the call never blanks what an earlier
    # one told (the activity's meta is merged event by event). Dropping keys keeps it typed.
    meta = cast(EventMeta, {k: v for k, v in facts.items() if v is not None})
    # The earlier stages are this event's thread: intake then files it with the lead / deal
    # they went to, even for a number that cannot be matched (it would open a second lead).
    earlier = _EARLIER_STAGES[stage_key(report.stage)]
    if earlier:
        meta["references"] = [f"{report.call_id}:{stage}" for stage in earlier]
    incoming = report.direction is CallDirection.INCOMING
    return InboundEvent(
        channel=Channel.CALL,
        external_id=event_id(report),
        occurred_at=_occurred_at(report, received_at),
        direction=Direction.INCOMING if incoming else Direction.OUTGOING,
        # On an outgoing call the caller name is our own line's, not the customer's.
        display_name=report.caller_name if incoming else None,
        phones=(customer,) if customer else (),
        subject=title,
        source=(report.lead_source or "CALL")[:30],
        line=report.line,
        phone_region=line_region,
        meta=meta,
    )
