"""Bitrix24 CRM field names ↔ Leadbot's records: which Bitrix field a filter or an order names
(and how its value reads), and each record as the field map Bitrix24 answers with.

Bitrix24 sends ids and numbers as strings and flags as "Y" / "N"; dates are ISO-8601 with the
portal's offset. Fields Leadbot does not keep (UF_*, UTM_*, HONORIFIC, …) are not listed: a
filter, order or select naming them is ignored, as Bitrix24 ignores unknown fields."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

from channels.phone.bitrix_params import BitrixError
from crm.dto import ActivityView, CommView, CompanyView, ContactView, DealView, LeadView, RepView

SEMANTIC_IDS = {"P": "process", "S": "success", "F": "failure"}
SEMANTIC_LETTERS = {v: k for k, v in SEMANTIC_IDS.items()}
# Bitrix24 activity TYPE_ID ↔ Leadbot activity kinds (6 "provider" stands for the rest).
ACTIVITY_TYPES = {"1": "meeting", "2": "call", "3": "task", "4": "email"}
ACTIVITY_TYPE_IDS = {v: k for k, v in ACTIVITY_TYPES.items()}
OWNER_TYPES = {"1": "lead", "2": "deal", "3": "contact", "4": "company"}
OWNER_TYPE_IDS = {v: k for k, v in OWNER_TYPES.items()}


# Ids are 32-bit integers in the database: a larger one names no record (and PostgreSQL
# refuses it outright), so it is a bad value, not a server error.
MAX_ID = 2**31 - 1
# Amounts fit Numeric(18, 2).
MAX_AMOUNT = Decimal("9999999999999999.99")


def whole(value: Any, name: str = "value") -> int:
    """An id or count as Bitrix24 clients send it (a number or its text)."""
    text = str(value).strip()
    try:
        number = int(text) if len(text) <= 20 else None
    except ValueError:
        number = None
    if number is None or not -MAX_ID <= number <= MAX_ID:
        raise BitrixError("", f"{name}: {text[:40]!r} is not a valid number")
    return number


def money(value: Any, name: str = "value") -> Decimal:
    try:
        amount = Decimal(str(value).strip())
    except ArithmeticError:
        amount = None
    if amount is None or not amount.is_finite() or abs(amount) > MAX_AMOUNT:
        raise BitrixError("", f"{name}: {str(value)[:40]!r} is not a valid amount")
    return amount


def _int(value: Any) -> int:
    return whole(value)


def _text(value: Any) -> str:
    return str(value)


def _yes(value: Any) -> bool:
    return str(value).strip().upper() in ("Y", "1", "TRUE")


def when(value: Any, tz: tzinfo | None = None) -> datetime:
    """An ISO-8601 date; without an offset it is read in `tz` (none: an error)."""
    try:
        parsed = datetime.fromisoformat(str(value).strip())
        if parsed.tzinfo is None and tz is not None:
            parsed = parsed.replace(tzinfo=tz)
        if parsed.tzinfo is None:
            raise BitrixError("", "a date needs an offset (ISO-8601 with offset)")
        return parsed.astimezone(UTC)  # also: a date the database could not store fails here
    except (ValueError, OverflowError):
        raise BitrixError("", f"{str(value)[:40]!r} is not an ISO-8601 date") from None


def _date(value: Any) -> datetime:
    return when(value)


def _decimal(value: Any) -> Decimal:
    return money(value)


def _semantic(value: Any) -> str:
    return SEMANTIC_IDS.get(str(value).strip().upper(), str(value))


def _activity_type(value: Any) -> str:
    return ACTIVITY_TYPES.get(str(value).strip(), "other")


def _owner_type(value: Any) -> str:
    return OWNER_TYPES.get(str(value).strip(), "other")


def _direction(value: Any) -> str:
    return {"1": "incoming", "2": "outgoing"}.get(str(value).strip(), "other")


Reader = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # the field of crm.services.querying the filter names
    read: Reader = _text


_COMMON = {
    "ID": Field("id", _int),
    "ASSIGNED_BY_ID": Field("responsible_id", _int),
    "DATE_CREATE": Field("created_at", _date),
    "DATE_MODIFY": Field("modified_at", _date),
    "COMMENTS": Field("comments"),
}
_COMMS = {"PHONE": Field("phone"), "EMAIL": Field("email")}

FILTERS: dict[str, dict[str, Field]] = {
    "lead": {
        **_COMMON,
        **_COMMS,
        "TITLE": Field("title"),
        "NAME": Field("name"),
        "COMPANY_TITLE": Field("company_title"),
        "STATUS_ID": Field("status"),
        "STATUS_SEMANTIC_ID": Field("status_semantic", _semantic),
        "SOURCE_ID": Field("source"),
        "IS_RETURN_CUSTOMER": Field("is_return_customer", _yes),
        "CONTACT_ID": Field("contact_id", _int),
        "COMPANY_ID": Field("company_id", _int),
    },
    "contact": {
        **_COMMON,
        **_COMMS,
        "NAME": Field("first_name"),
        "LAST_NAME": Field("last_name"),
        "FULL_NAME": Field("name"),
        "COMPANY_ID": Field("company_id", _int),
    },
    "company": {**_COMMON, **_COMMS, "TITLE": Field("title")},
    "deal": {
        **{k: v for k, v in _COMMON.items() if k != "COMMENTS"},
        "TITLE": Field("title"),
        "STAGE_SEMANTIC_ID": Field("stage_semantic", _semantic),
        "OPPORTUNITY": Field("amount", _decimal),
        "CURRENCY_ID": Field("currency"),
        "CONTACT_ID": Field("contact_id", _int),
        "COMPANY_ID": Field("company_id", _int),
        "LEAD_ID": Field("lead_id", _int),
        "IS_RETURN_CUSTOMER": Field("is_return_customer", _yes),
        "IS_REPEATED_APPROACH": Field("is_repeated_approach", _yes),
        "SOURCE_ID": Field("source"),
        "CLOSEDATE": Field("closed_at", _date),
        # STAGE_ID and CATEGORY_ID: bitrix_filters (pipelines are numbered by config order).
    },
    "activity": {
        "ID": Field("id", _int),
        "TYPE_ID": Field("kind", _activity_type),
        "OWNER_TYPE_ID": Field("owner_type", _owner_type),
        "OWNER_ID": Field("owner_id", _int),
        "RESPONSIBLE_ID": Field("responsible_id", _int),
        "AUTHOR_ID": Field("author_id", _int),
        "COMPLETED": Field("done", _yes),
        "DIRECTION": Field("direction", _direction),
        "SUBJECT": Field("subject"),
        "DEADLINE": Field("due_at", _date),
        "CREATED": Field("created_at", _date),
    },
    "rep": {
        "ID": Field("id", _int),
        "ACTIVE": Field("active", _yes),
        "NAME": Field("name"),
        "EMAIL": Field("email"),
        "UF_PHONE_INNER": Field("extension"),
        "WORK_PHONE": Field("phone"),
        "PERSONAL_MOBILE": Field("phone"),
    },
}


# --- records as Bitrix24 answers them -------------------------------------------------------


def yn(flag: bool) -> str:
    return "Y" if flag else "N"


def _id(value: int | None) -> str | None:
    return None if value is None else str(value)


def multifield(comms: Sequence[CommView], kind: str) -> list[dict[str, Any]]:
    """PHONE / EMAIL items: {ID, VALUE_TYPE, VALUE, TYPE_ID}."""
    return [
        {
            "ID": str(position + 1),
            "VALUE_TYPE": "WORK",
            "VALUE": c.value or c.raw,
            "TYPE_ID": kind.upper(),
        }
        for position, c in enumerate(c for c in comms if c.kind == kind)
    ]


class Printer:
    """Views → Bitrix24 field maps, dates in the CRM's zone, deal funnels numbered by the
    configured pipelines' order (0: the first, Bitrix24's general funnel)."""

    def __init__(self, tz: tzinfo, currency: str, pipelines: Sequence[str]) -> None:
        self.tz = tz
        self.currency = currency
        self.pipelines = list(pipelines)

    def date(self, value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(self.tz).isoformat(timespec="seconds")

    def category(self, pipeline: str) -> int:
        return self.pipelines.index(pipeline) if pipeline in self.pipelines else 0

    def stage_id(self, pipeline: str, stage: str) -> str:
        category = self.category(pipeline)
        return stage if category == 0 else f"C{category}:{stage}"

    def _comms_and_dates(
        self, comms: Sequence[CommView], created: datetime, modified: datetime
    ) -> dict[str, Any]:
        return {
            "HAS_PHONE": yn(any(c.kind == "phone" for c in comms)),
            "HAS_EMAIL": yn(any(c.kind == "email" for c in comms)),
            "DATE_CREATE": self.date(created),
            "DATE_MODIFY": self.date(modified),
            "PHONE": multifield(comms, "phone"),
            "EMAIL": multifield(comms, "email"),
        }

    def lead(self, v: LeadView) -> dict[str, Any]:
        return {
            "ID": str(v.id),
            "TITLE": v.title,
            "NAME": v.name,
            "SECOND_NAME": None,
            "LAST_NAME": None,
            "COMPANY_TITLE": v.company_title,
            "STATUS_ID": v.status,
            "STATUS_SEMANTIC_ID": SEMANTIC_LETTERS.get(v.status_semantic, "P"),
            "SOURCE_ID": v.source,
            "OPPORTUNITY": "0.00",
            "CURRENCY_ID": self.currency,
            "ASSIGNED_BY_ID": _id(v.responsible_id),
            "CONTACT_ID": _id(v.contact_id),
            "COMPANY_ID": _id(v.company_id),
            "IS_RETURN_CUSTOMER": yn(v.is_return_customer),
            "OPENED": "Y",
            "COMMENTS": v.comments,
            **self._comms_and_dates(v.comms, v.created_at, v.modified_at),
        }

    def contact(self, v: ContactView) -> dict[str, Any]:
        return {
            "ID": str(v.id),
            "NAME": v.first_name or (None if v.last_name else v.name),
            "SECOND_NAME": None,
            "LAST_NAME": v.last_name,
            "FULL_NAME": v.name,
            "COMPANY_ID": _id(v.company_id),
            "ASSIGNED_BY_ID": _id(v.responsible_id),
            "OPENED": "Y",
            **self._comms_and_dates(v.comms, v.created_at, v.modified_at),
        }

    def company(self, v: CompanyView) -> dict[str, Any]:
        return {
            "ID": str(v.id),
            "TITLE": v.title,
            "ASSIGNED_BY_ID": _id(v.responsible_id),
            "CONTACT_ID": _id(v.contact_ids[0]) if v.contact_ids else None,
            "OPENED": "Y",
            **self._comms_and_dates(v.comms, v.created_at, v.modified_at),
        }

    def deal(self, v: DealView) -> dict[str, Any]:
        return {
            "ID": str(v.id),
            "TITLE": v.title,
            "CATEGORY_ID": str(self.category(v.pipeline)),
            "STAGE_ID": self.stage_id(v.pipeline, v.stage),
            "STAGE_SEMANTIC_ID": SEMANTIC_LETTERS.get(v.stage_semantic, "P"),
            "IS_NEW": yn(v.stage_semantic == "process" and v.stage == "NEW"),
            "IS_RETURN_CUSTOMER": yn(v.is_return_customer),
            "IS_REPEATED_APPROACH": yn(v.is_repeated_approach),
            "OPPORTUNITY": f"{v.amount or 0:.2f}",
            "CURRENCY_ID": v.currency,
            "CONTACT_ID": _id(v.contact_id),
            "COMPANY_ID": _id(v.company_id),
            "LEAD_ID": _id(v.lead_id),
            "SOURCE_ID": v.source,
            "ASSIGNED_BY_ID": _id(v.responsible_id),
            "OPENED": "Y",
            "CLOSED": yn(v.stage_semantic != "process"),
            "DATE_CREATE": self.date(v.created_at),
            "DATE_MODIFY": self.date(v.modified_at),
            "CLOSEDATE": self.date(v.closed_at),
        }

    def activity(self, v: ActivityView) -> dict[str, Any]:
        owner = v.bindings[0] if v.bindings else None
        return {
            "ID": str(v.id),
            "TYPE_ID": ACTIVITY_TYPE_IDS.get(v.kind, "6"),
            "PROVIDER_TYPE_ID": v.kind.upper(),
            "OWNER_TYPE_ID": OWNER_TYPE_IDS.get(owner[0]) if owner else None,
            "OWNER_ID": _id(owner[1]) if owner else None,
            "SUBJECT": v.subject,
            "DESCRIPTION": v.body,
            "DESCRIPTION_TYPE": "1",
            "DIRECTION": {"incoming": "1", "outgoing": "2"}.get(v.direction or "", "0"),
            "COMPLETED": yn(v.done),
            "RESPONSIBLE_ID": _id(v.responsible_id),
            "AUTHOR_ID": _id(v.author_id),
            "CREATED": self.date(v.created_at),
            "DEADLINE": self.date(v.due_at),
            "END_TIME": self.date(v.done_at),
        }


def user(v: RepView) -> dict[str, Any]:
    """A rep as Bitrix24's user.get answers a user."""
    first, _, last = v.name.partition(" ")
    return {
        "ID": str(v.id),
        "ACTIVE": v.active,
        "NAME": first,
        "LAST_NAME": last,
        "EMAIL": v.email,
        "WORK_PHONE": v.phone,
        "PERSONAL_MOBILE": None,
        "UF_PHONE_INNER": v.extension,
        "UF_DEPARTMENT": [],
        "USER_TYPE": "employee",
        "IS_ONLINE": "N",
        "IS_ADMIN": v.role == "admin",
    }


def selected(
    record: dict[str, Any], select: Sequence[str] | None, multifields: bool = True
) -> dict[str, Any]:
    """A list row as `select` asks: "*" (and no select) = the standard fields without the
    multifields (a CRM record's PHONE / EMAIL, asked for by name); ID always; unknown names
    (UF_*) dropped. A user's EMAIL is a plain field (`multifields=False`)."""
    if not select:
        select = ["*"]
    wanted = {s.upper() for s in select}
    hidden = {"PHONE", "EMAIL"} if multifields else set()
    keep = set(record) - hidden if "*" in wanted else set()
    keep |= wanted & set(record)
    keep.add("ID")
    return {k: v for k, v in record.items() if k in keep}
