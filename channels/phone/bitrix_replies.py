"""Bitrix24 REST, the wire out: `{"result": …, "time": {…}}` and `{"error", "error_description"}`
envelopes, and the result shapes of each telephony method."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from channels.phone.bitrix import (
    FinishRequest,
    RegisterRequest,
    disposition_from,
)
from channels.phone.bitrix_batch import (
    BatchKey,
)
from channels.phone.calls import (
    CallDirection,
    Disposition,
)
from crm.services.telephony import CallerInfo, NumberHolder

# --- responses --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall-clock facts of one request (unix seconds), measured by the caller."""

    start: float
    finish: float
    processing: float | None = None  # time spent in the method itself; defaults to the total
    operating: float = 0.0  # Bitrix24's per-method time budget used so far
    operating_reset_at: int | None = None


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")


def command_time(timing: Timing) -> dict[str, Any]:
    """The time block of one batch command: start, finish, duration, processing, dates."""
    duration = max(timing.finish - timing.start, 0.0)
    return {
        "start": timing.start,
        "finish": timing.finish,
        "duration": duration,
        "processing": duration if timing.processing is None else timing.processing,
        "date_start": _iso(timing.start),
        "date_finish": _iso(timing.finish),
    }


def bitrix_result(result: Any, timing: Timing) -> dict[str, Any]:
    """`{"result": …, "time": {…}}`, the success shape every Bitrix24 client reads."""
    reset = timing.operating_reset_at
    return {
        "result": result,
        "time": {
            **command_time(timing),
            "operating_reset_at": int(timing.start) + 600 if reset is None else reset,
            "operating": timing.operating,
        },
    }


@dataclass(frozen=True, slots=True)
class Listed:
    """A list method's page: the rows, and the envelope's `next` (only when more rows exist)
    and `total` (None: not counted, Bitrix24's start=-1)."""

    items: list[Any]
    next: int | None
    total: int | None


def listed_result(listed: Listed, timing: Timing) -> dict[str, Any]:
    body = bitrix_result(listed.items, timing)
    if listed.next is not None:
        body["next"] = listed.next
    if listed.total is not None:
        body["total"] = listed.total
    # Bitrix24 prints result, next, total, time in this order.
    return {k: body[k] for k in ("result", "next", "total", "time") if k in body}


def bitrix_error(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description}


def php_array(items: Mapping[BatchKey, Any]) -> Any:
    """How PHP's json_encode writes an array: `[]` when empty, a list for keys 0..n-1 in
    order, else an object."""
    keys = list(items)
    if keys == list(range(len(keys))):
        return list(items.values())
    return {str(k): v for k, v in items.items()}


def batch_result(
    results: Mapping[BatchKey, Any],
    errors: Mapping[BatchKey, dict[str, str]],
    times: Mapping[BatchKey, dict[str, Any]],
    totals: Mapping[BatchKey, int] | None = None,
    nexts: Mapping[BatchKey, int] | None = None,
) -> dict[str, Any]:
    """The `batch` reply's result: every command's answer, error and time under its key, and
    the `total` / `next` of its list commands."""
    return {
        "result": php_array(results),
        "result_error": php_array(errors),
        "result_total": php_array(totals or {}),
        "result_next": php_array(nexts or {}),
        "result_time": php_array(times),
    }


def attach_record_result(call_id: str, url: str, activity_id: int | None) -> dict[str, Any]:
    """Bitrix24 answers the id of the file on its Drive; there is no Drive here: FILE_ID is
    null and RECORD_URL is the recording's link (the one given, or where the file is served)."""
    return {"FILE_ID": None, "CALL_ID": call_id, "RECORD_URL": url, "CRM_ACTIVITY_ID": activity_id}


def register_result(
    call_id: str,
    *,
    created: Sequence[tuple[str, int]] = (),
    entity: tuple[str, int] | None = None,
    lead_creation_error: str | None = None,
) -> dict[str, Any]:
    """The register reply: CALL_ID, the entities this call created and the primary entity."""
    created_lead = next((i for t, i in created if t == "LEAD"), None)
    result: dict[str, Any] = {
        "CALL_ID": call_id,
        "CRM_CREATED_LEAD": created_lead,
        "CRM_CREATED_ENTITIES": [{"ENTITY_TYPE": t, "ENTITY_ID": i} for t, i in created],
        "CRM_ENTITY_TYPE": entity[0] if entity else None,
        "CRM_ENTITY_ID": entity[1] if entity else None,
    }
    if lead_creation_error:
        result["LEAD_CREATION_ERROR"] = lead_creation_error
    return result


def finish_result(
    request: FinishRequest,
    registration: RegisterRequest,
    *,
    user_id: int,
    activity_id: int | None,
    entity: tuple[str, int] | None,
) -> dict[str, Any]:
    """The finish reply: the call's statistic record."""
    ok = disposition_from(request.status_code) is Disposition.ANSWERED
    start = registration.call_start_date
    return {
        "CALL_ID": request.call_id,
        "PORTAL_USER_ID": user_id,
        "PHONE_NUMBER": registration.phone_number,
        "PORTAL_NUMBER": registration.line_number,
        "INCOMING": int(registration.type),
        "CALL_DURATION": request.duration,
        "CALL_START_DATE": start.isoformat() if start else None,
        "CALL_STATUS": 1 if ok else 0,
        "CALL_FAILED_CODE": request.status_code,
        "CALL_FAILED_REASON": request.failed_reason,
        "CALL_VOTE": request.vote,
        "COST": request.cost,
        "COST_CURRENCY": request.cost_currency,
        "CRM_ACTIVITY_ID": activity_id,
        "CRM_ENTITY_TYPE": entity[0] if entity else None,
        "CRM_ENTITY_ID": entity[1] if entity else None,
    }


@dataclass(frozen=True, slots=True)
class EntityHit:
    """One CRM record holding the searched number, with its responsible user."""

    entity_type: str  # CONTACT | COMPANY | LEAD
    entity_id: int
    name: str
    assigned_by_id: int | None
    timeman_status: str = "OPENED"
    user_phone_inner: str | None = None
    work_phone: str | None = None
    personal_phone: str | None = None
    personal_mobile: str | None = None


def search_result(hits: Sequence[EntityHit]) -> list[dict[str, Any]]:
    """The searchCrmEntities reply, one entry per record."""
    return [
        {
            "CRM_ENTITY_TYPE": hit.entity_type,
            "CRM_ENTITY_ID": hit.entity_id,
            "ASSIGNED_BY_ID": hit.assigned_by_id,
            "NAME": hit.name,
            "ASSIGNED_BY": {
                "ID": hit.assigned_by_id,
                "TIMEMAN_STATUS": hit.timeman_status,
                "USER_PHONE_INNER": hit.user_phone_inner,
                "WORK_PHONE": hit.work_phone,
                "PERSONAL_PHONE": hit.personal_phone,
                "PERSONAL_MOBILE": hit.personal_mobile,
            },
        }
        for hit in hits
    ]


def call_card(
    request: RegisterRequest, caller: CallerInfo | None, forced: NumberHolder | None
) -> dict[str, Any]:
    """What a rep's call card shows: the number, the direction, and the records of the caller
    (the entity the phone system named first, then open deal, open lead, contact, company)."""
    records: list[list[Any]] = []
    if forced is not None:
        records.append([forced.owner_type, forced.owner_id, forced.name])
    if caller is not None:
        for kind, ident, label in (
            ("deal", caller.deal_id, caller.deal_title),
            ("lead", caller.lead_id, caller.lead_title),
            ("contact", caller.contact_id, caller.contact_name),
            ("company", caller.company_id, caller.company_name),
        ):
            if ident is not None and [kind, ident] not in [r[:2] for r in records]:
                records.append([kind, ident, label])
    responsible = caller.responsible if caller is not None else None
    return {
        "phone": request.phone_number,
        "incoming": request.type.direction is CallDirection.INCOMING,
        "line": request.line_number,
        "records": records,
        "responsible": responsible.name if responsible is not None else None,
    }
