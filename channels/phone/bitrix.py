"""Bitrix24-compatible telephony REST (`/rest/<user>/<token>/<method>[.json]`), the pure part:
validation of the `telephony.externalcall.*` methods (register,
finish, searchCrmEntities, show, hide, attachRecord) and of `batch` with Bitrix24's own error
texts, and their mapping to `CallReport`. Parameters are read in `bitrix_params`, `batch` in
`bitrix_batch`, answers shaped in `bitrix_replies`.

Where Bitrix24 is lax we are a little stricter, with a clear error instead of a silent cast:
a DURATION of "abc" is an error here (PHP would read 0); "N" / "false" are false flags (PHP
would read any non-empty string as true).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import IntEnum
from typing import Any

from channels.phone.bitrix_params import (
    _FALSE,
    _LINE_BREAKS,
    _MAX_TEXT,
    _TRUE,
    ENTITY_TYPES,
    MAX_CARD_USERS,
    BitrixError,
    _core,
)
from channels.phone.calls import (
    CallDirection,
    CallReport,
    CallStage,
    Disposition,
    final_stage,
    is_http_url,
)

# --- typed requests ---------------------------------------------------------------------------


class CallType(IntEnum):
    OUTGOING = 1
    INCOMING = 2
    INCOMING_REDIRECTED = 3
    CALLBACK = 4

    @property
    def direction(self) -> CallDirection:
        # A callback is us calling the customer back: outgoing, it never creates a lead.
        if self in (CallType.OUTGOING, CallType.CALLBACK):
            return CallDirection.OUTGOING
        return CallDirection.INCOMING


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    user_id: int | None  # one of user_id / user_phone_inner is set
    user_phone_inner: str | None
    phone_number: str  # raw, as sent (a "+" lost to form decoding restored)
    type: CallType
    call_start_date: datetime | None = None
    crm_create: bool = False
    crm_source: str | None = None
    crm_entity_type: str | None = None
    crm_entity_id: int | None = None
    show: bool = True
    add_to_chat: bool = True
    line_number: str | None = None
    external_call_id: str | None = None
    call_list_id: int | None = None


@dataclass(frozen=True, slots=True)
class FinishRequest:
    call_id: str
    user_id: int | None
    user_phone_inner: str | None
    duration: int = 0
    status_code: str = "304"  # already defaulted from DURATION, see status_from
    cost: float | None = None
    cost_currency: str | None = None
    failed_reason: str | None = None
    record_url: str | None = None
    vote: int | None = None
    add_to_chat: bool = True


@dataclass(frozen=True, slots=True)
class SearchRequest:
    phone_number: str


def _text(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None or value is False:
        return None
    if value is True:
        value = "1"  # PHP's (string)true
    elif isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        raise _core(f"{key} must be a string")
    if len(value) > _MAX_TEXT:
        raise _core(f"{key} is too long")
    return value.strip() or None


def _float(params: Mapping[str, Any], key: str) -> float | None:
    value = params.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        text = _text(params, key)
        if text is None:
            return None
        try:
            number = float(text) if len(text) <= 32 else math.nan
        except ValueError:
            number = math.nan
    if not math.isfinite(number):
        raise _core(f"{key} must be a number")
    return number


def _int(params: Mapping[str, Any], key: str) -> int | None:
    value = params.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # exact, even beyond float precision
    number = _float(params, key)
    return None if number is None else int(number)


def _flag(params: Mapping[str, Any], key: str, default: bool) -> bool:
    text = _text(params, key)
    if text is None:
        return default
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise _core(f"{key} must be 0 or 1")


def _user(params: Mapping[str, Any]) -> tuple[int | None, str | None]:
    try:
        user_id = _int(params, "USER_ID")
    except BitrixError:
        user_id = None  # PHP's (int) cast reads garbage as 0, then USER_PHONE_INNER is tried
    inner = _text(params, "USER_PHONE_INNER")
    if (user_id is None or user_id <= 0) and inner is None:
        raise _core("USER_ID or USER_PHONE_INNER should be set")
    return (user_id if user_id and user_id > 0 else None), inner


def _phone(params: Mapping[str, Any]) -> str:
    raw = params.get("PHONE_NUMBER")
    if isinstance(raw, str) and raw[:1] == " " and raw.strip()[:1].isdigit():
        # A client that does not URL-encode sends "+49…" as "+49…", which decodes to " 49…".
        raw = "+" + raw.lstrip(" ")
    phone = _text({"PHONE_NUMBER": raw}, "PHONE_NUMBER")
    if phone is None:
        raise _core("PHONE_NUMBER is empty")
    if not any(c.isdigit() for c in phone) or len(phone) > 64:
        raise _core("Unsupported phone number format")
    return phone


def _call_type(params: Mapping[str, Any]) -> CallType:
    try:
        return CallType(_int(params, "TYPE") or 0)
    except (BitrixError, ValueError):
        raise _core("Unknown TYPE") from None


def _start_date(params: Mapping[str, Any], tz: tzinfo) -> datetime | None:
    text = _text(params, "CALL_START_DATE")
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _core("CALL_START_DATE should be in the ISO-8601 format") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def _entity(params: Mapping[str, Any]) -> tuple[str | None, int | None]:
    entity_type = _text(params, "CRM_ENTITY_TYPE")
    entity_id = _int(params, "CRM_ENTITY_ID")
    if entity_type is None:
        return None, None
    if entity_type.upper() not in ENTITY_TYPES:
        raise _core("CRM_ENTITY_TYPE should be CONTACT, COMPANY or LEAD")
    if entity_id is None or entity_id <= 0:
        raise _core("CRM_ENTITY_ID should be set together with CRM_ENTITY_TYPE")
    return entity_type.upper(), entity_id


def parse_register(params: Mapping[str, Any], *, tz: tzinfo = UTC) -> RegisterRequest:
    """`telephony.externalcall.register`; a CALL_START_DATE without offset is read in `tz`."""
    user_id, inner = _user(params)
    call_type = _call_type(params)
    start = _start_date(params, tz)
    entity_type, entity_id = _entity(params)
    return RegisterRequest(
        user_id=user_id,
        user_phone_inner=inner,
        phone_number=_phone(params),
        type=call_type,
        call_start_date=start,
        # Bitrix24's docs: "By default — 0" (do not create); connectors that want leads send 1.
        crm_create=_flag(params, "CRM_CREATE", False),
        crm_source=_text(params, "CRM_SOURCE"),
        crm_entity_type=entity_type,
        crm_entity_id=entity_id,
        show=_flag(params, "SHOW", True),
        add_to_chat=_flag(params, "ADD_TO_CHAT", True),
        line_number=_text(params, "LINE_NUMBER"),
        external_call_id=_text(params, "EXTERNAL_CALL_ID"),
        call_list_id=_int(params, "CALL_LIST_ID"),
    )


def status_from(status_code: object, duration: int | None) -> str:
    """STATUS_CODE as sent, or Bitrix24's default: 200 when the call lasted, else 304."""
    if isinstance(status_code, int | str) and not isinstance(status_code, bool):
        text = str(status_code).strip().upper()
        if text:
            return text
    return "200" if duration and duration > 0 else "304"


def parse_finish(params: Mapping[str, Any]) -> FinishRequest:
    """`telephony.externalcall.finish`, checked in Bitrix24's order (user, then CALL_ID)."""
    user_id, inner = _user(params)
    call_id = params.get("CALL_ID")
    if not isinstance(call_id, str) or not call_id.strip() or len(call_id) > 200:
        raise BitrixError("INVALID_ARGUMENT", "CALL_ID must be a string")
    duration = _int(params, "DURATION") or 0
    if duration < 0:
        raise _core("DURATION must not be negative")
    record_url = _text(params, "RECORD_URL")
    if record_url is not None and not is_http_url(record_url):
        raise _core("RECORD_URL must be an http(s) URL")
    vote = _int(params, "VOTE")
    if vote is not None and not 1 <= vote <= 5:
        raise _core("VOTE must be between 1 and 5")
    return FinishRequest(
        call_id=call_id.strip(),
        user_id=user_id,
        user_phone_inner=inner,
        duration=duration,
        status_code=status_from(_text(params, "STATUS_CODE"), duration),
        cost=_float(params, "COST"),
        cost_currency=_text(params, "COST_CURRENCY"),
        failed_reason=_text(params, "FAILED_REASON"),
        record_url=record_url,
        vote=vote,
        add_to_chat=_flag(params, "ADD_TO_CHAT", True),
    )


def parse_search(params: Mapping[str, Any]) -> SearchRequest:
    """`telephony.externalcall.searchCrmEntities`."""
    return SearchRequest(phone_number=_phone(params))


@dataclass(frozen=True, slots=True)
class CardRequest:
    """`telephony.externalcall.show` / `.hide`: whose call card, for which users (empty: the
    user the call was registered for)."""

    call_id: str
    user_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class AttachRecordRequest:
    call_id: str
    record_url: str | None
    filename: str | None
    content: bytes | None = None  # FILE_CONTENT, decoded: the recording itself

    @property
    def extension(self) -> str:
        return (self.filename or "").rpartition(".")[2].lower()


def _call_id(params: Mapping[str, Any]) -> str:
    call_id = params.get("CALL_ID")
    if not isinstance(call_id, str) or not call_id.strip() or len(call_id) > 200:
        raise BitrixError("INVALID_ARGUMENT", "CALL_ID must be a string")
    return call_id.strip()


def _user_ids(params: Mapping[str, Any]) -> tuple[int, ...]:
    """USER_ID as one id or a list of them (`USER_ID[]=1&USER_ID[]=2`, a JSON array)."""
    raw = params.get("USER_ID")
    if raw is None or raw == "":
        return ()
    values = list(raw.values()) if isinstance(raw, dict) else raw
    values = values if isinstance(values, list) else [values]
    if len(values) > MAX_CARD_USERS:
        raise _core(f"USER_ID lists at most {MAX_CARD_USERS} users")
    ids: list[int] = []
    for value in values:
        number = _int({"USER_ID": value}, "USER_ID") if isinstance(value, str | int) else None
        if number is None or number <= 0:
            raise _core("USER_ID must be a user id or a list of user ids")
        if number not in ids:
            ids.append(number)
    return tuple(ids)


def parse_card(params: Mapping[str, Any]) -> CardRequest:
    """`telephony.externalcall.show` and `.hide` take the same parameters."""
    return CardRequest(call_id=_call_id(params), user_ids=_user_ids(params))


def parse_attach_record(params: Mapping[str, Any], *, can_store: bool) -> AttachRecordRequest:
    """`telephony.externalcall.attachRecord`, checked in Bitrix24's order: RECORD_URL (kept as
    the recording's link), or FILENAME with FILE_CONTENT (base64) when there is a directory to
    keep files in (`can_store`). Bitrix24's other way, FILENAME alone for an upload URL, is
    refused with a reason."""
    call_id = _call_id(params)
    record_url = _text(params, "RECORD_URL")
    filename = _text(params, "FILENAME")
    raw = params.get("FILE_CONTENT")
    if record_url is None and filename is None:
        raise BitrixError(
            "",
            "Required parameters are not set. Request should contain either URL or FILENAME "
            "parameter",
        )
    if filename is not None and filename.rpartition(".")[2].lower() not in ("wav", "mp3"):
        raise _core("Wrong file extension. Only wav and mp3 are allowed")
    if record_url is not None:
        if not is_http_url(record_url):
            raise _core("RECORD_URL must be an http(s) URL")
        return AttachRecordRequest(call_id, record_url, filename)
    if not can_store:
        raise _core(
            "Recording files are not stored by this server: pass RECORD_URL, a link to the "
            "recording"
        )
    if not isinstance(raw, str) or not raw.strip():
        raise _core("pass FILE_CONTENT (the recording, base64) or RECORD_URL")
    try:
        # A space is a "+" a client forgot to encode in a form body (base64 has no spaces);
        # line breaks are MIME-style wrapping.
        text = raw.replace(" ", "+").translate(_LINE_BREAKS)
        content = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _core("FILE_CONTENT is not base64") from None
    if not content:
        raise _core("FILE_CONTENT is empty")
    return AttachRecordRequest(call_id, None, filename, content)


# --- mapping to CallReport --------------------------------------------------------------------

_DISPOSITIONS = {
    "200": Disposition.ANSWERED,
    "304": Disposition.MISSED,
    "603": Disposition.DECLINED,
    "603-S": Disposition.CANCELLED,
    "486": Disposition.BUSY,
}


def disposition_from(status_code: str) -> Disposition:
    """Bitrix24 STATUS_CODE → disposition; every other SIP-ish code is a failed call."""
    return _DISPOSITIONS.get(status_code.upper(), Disposition.FAILED)


def _parties(request: RegisterRequest) -> tuple[str | None, str | None]:
    if request.type.direction is CallDirection.INCOMING:
        return request.phone_number, request.line_number
    return request.line_number, request.phone_number


def register_report(request: RegisterRequest, call_id: str) -> CallReport:
    """The ringing stage of a registered call; `call_id` is the CALL_ID we answer with."""
    from_number, to_number = _parties(request)
    return CallReport(
        call_id=call_id,
        stage=CallStage.RINGING,
        direction=request.type.direction,
        from_number=from_number,
        to_number=to_number,
        line=request.line_number,
        agent_extension=request.user_phone_inner,
        started_at=request.call_start_date,
        occurred_at=request.call_start_date,
        # CRM_SOURCE names the source of the lead the call opens (a source code like CALL).
        lead_source=request.crm_source.strip().upper() if request.crm_source else None,
    )


def finish_report(
    request: FinishRequest, registration: RegisterRequest, *, ended_at: datetime | None = None
) -> CallReport:
    """The final stage of a call, from its finish request and the stored registration."""
    from_number, to_number = _parties(registration)
    disposition = disposition_from(request.status_code)
    direction = registration.type.direction
    return CallReport(
        call_id=request.call_id,
        stage=final_stage(direction, disposition),
        direction=direction,
        from_number=from_number,
        to_number=to_number,
        line=registration.line_number,
        agent_extension=request.user_phone_inner or registration.user_phone_inner,
        started_at=registration.call_start_date,
        ended_at=ended_at,
        duration=request.duration,
        disposition=disposition,
        recording_url=request.record_url,
    )


def register_key(
    user_id: int,
    phone: str,
    type: CallType | int,
    line: str | None,
    external_call_id: str | None,
    *,
    app: str = "",
) -> str:
    """Key under which a registration is reused for 30 minutes (R6.2): same app / webhook,
    user, phone (only its digits and "+"), TYPE, line and EXTERNAL_CALL_ID. A fixed-length hex
    digest so it fits an indexed column."""
    digits = "".join(c for c in phone if c.isdigit() or c == "+")
    parts = [app, int(user_id), digits, int(type), line or "", external_call_id or ""]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()
