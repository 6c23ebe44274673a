"""Bitrix24-compatible telephony REST (`/rest/<user>/<token>/<method>[.json]`), the pure part:
PHP-style parameter parsing, validation of the `telephony.externalcall.*` methods (register,
finish, searchCrmEntities, show, hide, attachRecord) and of `batch` with Bitrix24's own error
texts, their mapping to `CallReport`, and the `{"result": …, "time": {…}}` /
`{"error", "error_description"}` response shapes.

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
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import IntEnum
from typing import Any
from urllib.parse import parse_qsl

from channels.phone.calls import (
    CallDirection,
    CallReport,
    CallStage,
    Disposition,
    final_stage,
    is_http_url,
)

REGISTER = "telephony.externalcall.register"
FINISH = "telephony.externalcall.finish"
SEARCH = "telephony.externalcall.searchcrmentities"
SHOW = "telephony.externalcall.show"
HIDE = "telephony.externalcall.hide"
ATTACH_RECORD = "telephony.externalcall.attachrecord"
BATCH = "batch"
TELEPHONY_METHODS = frozenset({REGISTER, FINISH, SEARCH, SHOW, HIDE, ATTACH_RECORD})
SUPPORTED_METHODS = TELEPHONY_METHODS | {BATCH}

# PHP's defaults are max_input_vars=1000 and max_input_nesting_level=64; ours are tighter.
MAX_PARAMS = 1000
MAX_DEPTH = 16
MAX_BODY = 1024 * 1024
# attachRecord may carry the recording itself (base64): an hour of 64 kbit/s mp3 and then some.
MAX_RECORDING_BODY = 64 * 1024 * 1024
_LINE_BREAKS = str.maketrans("", "", "\r\n\t")
MAX_BATCH = 50  # Bitrix24's limit on the commands of one batch
MAX_CARD_USERS = 50  # users one show / hide may name
_MAX_TEXT = 2000
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_BOUNDARY = re.compile(r'boundary="?([^";]{1,70})"?', re.IGNORECASE)
_FIELD_NAME = re.compile(r'content-disposition:[^\r\n]*?\bname="([^"]*)"', re.IGNORECASE)
_FILENAME = re.compile(r"content-disposition:[^\r\n]*?\bfilename\*?=", re.IGNORECASE)
_CANONICAL_INT = re.compile(r"^(?:0|-?[1-9][0-9]{0,17})$")
_TRUE = frozenset({"1", "y", "yes", "true", "on"})
_FALSE = frozenset({"", "0", "n", "no", "false", "off"})
ENTITY_TYPES = frozenset({"CONTACT", "COMPANY", "LEAD"})
# Every parameter `parse_register` reads.
REGISTER_PARAMS = (
    "USER_ID",
    "USER_PHONE_INNER",
    "PHONE_NUMBER",
    "TYPE",
    "CALL_START_DATE",
    "CRM_CREATE",
    "CRM_SOURCE",
    "CRM_ENTITY_TYPE",
    "CRM_ENTITY_ID",
    "SHOW",
    "ADD_TO_CHAT",
    "LINE_NUMBER",
    "EXTERNAL_CALL_ID",
    "CALL_LIST_ID",
)


class BitrixError(Exception):
    """A request Bitrix24 would refuse; answer it with `bitrix_error(code, description)`."""

    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status


def _core(description: str) -> BitrixError:
    # Bitrix24's RestException default: code ERROR_CORE, HTTP 400.
    return BitrixError("ERROR_CORE", description)


def _bad_request(description: str) -> BitrixError:
    return BitrixError("INVALID_REQUEST", description)


# --- method names and parameters ------------------------------------------------------------


def normalize_method(name: str) -> str:
    """`telephony.externalCall.Register.json` → `telephony.externalcall.register`."""
    method = name.strip().lower()
    return method.removesuffix(".json")


def method_not_found() -> BitrixError:
    """Bitrix24's answer to a method it does not have, called alone or in a batch."""
    return BitrixError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)


def invalid_credentials() -> BitrixError:
    """Bitrix24's answer when no webhook has this user id and secret code."""
    return BitrixError("INVALID_CREDENTIALS", "Invalid request credentials", 401)


def resolve_method(name: str) -> str:
    """The normalized method, or BitrixError 404 ERROR_METHOD_NOT_FOUND like Bitrix24."""
    method = normalize_method(name)
    if method not in SUPPORTED_METHODS:
        raise method_not_found()
    return method


Node = dict[str | int, Any]


def _key(segment: str) -> str | int | None:
    if segment == "":
        return None
    return int(segment) if _CANONICAL_INT.match(segment) else segment


def _split_name(name: str) -> list[str | int | None]:
    """`fields[PHONE][0][VALUE]` → ["fields", "PHONE", 0, "VALUE"]; `values[]` → ["values", None].

    A name without a well-formed bracket part is one plain key; text after the last `]` is
    ignored, as PHP does.
    """
    start = name.find("[")
    if start <= 0:
        return [name]
    keys: list[str | int | None] = [name[:start]]
    position = start
    while match := _SEGMENT.match(name, position):
        keys.append(_key(match.group(1)))
        position = match.end()
    if len(keys) == 1:
        return [name]
    if len(keys) > MAX_DEPTH:
        raise _bad_request(f"parameter {name[:60]!r} is nested too deeply")
    return keys


def _assign(root: Node, keys: list[str | int | None], value: Any) -> None:
    container = root
    for position, raw_key in enumerate(keys):
        key = raw_key
        if key is None:  # "[]" appends, like PHP: next integer after the largest one
            key = max((k for k in container if isinstance(k, int)), default=-1) + 1
        if position == len(keys) - 1:
            container[key] = value
            return
        child = container.get(key)
        if not isinstance(child, dict):  # a later "a[b]" replaces an earlier plain "a"
            child = {}
            container[key] = child
        container = child


def _finish_node(node: Any) -> Any:
    """PHP arrays with keys 0..n-1 become lists; other keys become strings."""
    if not isinstance(node, dict):
        return node
    items = {k: _finish_node(v) for k, v in node.items()}
    if items and list(items) == list(range(len(items))):
        return list(items.values())
    return {str(k): v for k, v in items.items()}


def nest_params(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Bracketed form / query pairs as nested dicts and lists, PHP-style."""
    root: Node = {}
    for count, (name, value) in enumerate(pairs):
        if count >= MAX_PARAMS:
            raise _bad_request(f"more than {MAX_PARAMS} parameters")
        _assign(root, _split_name(name), value)
    result = _finish_node(root)
    return result if isinstance(result, dict) else {str(i): v for i, v in enumerate(result)}


def _query_pairs(query: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_PARAMS)
    except ValueError:
        raise _bad_request(f"more than {MAX_PARAMS} parameters") from None


def _multipart_pairs(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """Text fields of a multipart/form-data body. Hand-rolled on purpose: the stdlib email
    parser crashes (IndexError) on some malformed headers, and we only need names and values."""
    boundary = _BOUNDARY.search(content_type)
    if boundary is None:
        raise _bad_request("multipart body without a boundary")
    delimiter = b"--" + boundary.group(1).encode("latin-1", "replace")
    pairs: list[tuple[str, str]] = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        head, sep, value = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = head.decode("latin-1")
        name = _FIELD_NAME.search(headers)
        if not sep or name is None or _FILENAME.search(headers):
            continue  # not a text field (file uploads are not part of these methods)
        text = value.removesuffix(b"\r\n").decode("utf-8", "replace")
        pairs.append((name.group(1), text))
    return pairs


def _json_params(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise _bad_request("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _bad_request("JSON body must be an object")
    return data


def parse_bitrix_params(
    query: str | bytes, content_type: str | None, body: bytes, limit: int = MAX_BODY
) -> dict[str, Any]:
    """Every parameter of a REST call: the query string, overlaid by a JSON, form-urlencoded or
    multipart body. Raises BitrixError (400) for a body that cannot be read."""
    if isinstance(query, bytes):
        query = query.decode("utf-8", "replace")
    params = nest_params(_query_pairs(query))
    if not body:
        return params
    if len(body) > limit:
        raise _bad_request(f"request body larger than {limit} bytes")
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        params.update(_json_params(body))
    elif media == "multipart/form-data":
        params.update(nest_params(_multipart_pairs(content_type or "", body)))
    elif media in ("application/x-www-form-urlencoded", ""):
        params.update(nest_params(_query_pairs(body.decode("utf-8", "replace"))))
    else:
        raise _bad_request(f"unsupported content type {media[:60]!r}")
    return params


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


# --- batch ------------------------------------------------------------------------------------

_REFERENCE = re.compile(r"\$result\[([^\[\]]*)\]((?:\[[^\[\]]*\])*)")

BatchKey = str | int


@dataclass(frozen=True, slots=True)
class BatchCommand:
    key: BatchKey  # as the client named it; integer keys stay integers (a PHP list)
    command: Any  # "method?url-encoded query", checked when it runs


def _batch_key(key: object) -> BatchKey:
    text = str(key)
    return int(text) if _CANONICAL_INT.match(text) else text


def parse_batch(params: Mapping[str, Any]) -> tuple[bool, list[BatchCommand]]:
    """`batch`: `halt` and the `cmd` map (or list) of sub-requests, at most 50."""
    halt = _flag(params, "halt", False)
    cmd = params.get("cmd")
    if cmd is None or cmd == "" or cmd == []:
        return halt, []
    if isinstance(cmd, list):
        items: list[tuple[object, Any]] = list(enumerate(cmd))
    elif isinstance(cmd, dict):
        items = list(cmd.items())
    else:
        raise _bad_request("cmd must map names to 'method?query' strings")
    if len(items) > MAX_BATCH:
        raise BitrixError("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
    return halt, [BatchCommand(_batch_key(k), v) for k, v in items]


def split_command(command: Any) -> tuple[str, dict[str, Any]]:
    """A batch command `method?query` → (normalized method, nested params)."""
    if not isinstance(command, str) or not command.strip():
        raise _bad_request("a batch command must be a string 'method?query'")
    name, _, query = command.strip().partition("?")
    if normalize_method(name) == BATCH:
        raise BitrixError(
            "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", 405
        )
    return resolve_method(name), nest_params(_query_pairs(query))


def _lookup(results: Mapping[BatchKey, Any], key: str, path: str) -> tuple[bool, Any]:
    if _batch_key(key) not in results:
        return False, None
    value = results[_batch_key(key)]
    for segment in _SEGMENT.findall(path):
        if isinstance(value, dict) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return False, None
    return not isinstance(value, dict | list), value


def _as_php_text(value: Any) -> str:
    if value is None or value is False:
        return ""
    return "1" if value is True else str(value)


def substitute(params: Any, results: Mapping[BatchKey, Any]) -> Any:
    """Replace `$result[cmd][FIELD]…` in parameter values with what an earlier command of the
    batch answered. A value that is only a reference keeps the answer's type; a reference to
    something missing (or not a scalar) is left as written, as Bitrix24 does."""
    if isinstance(params, dict):
        return {k: substitute(v, results) for k, v in params.items()}
    if isinstance(params, list):
        return [substitute(v, results) for v in params]
    if not isinstance(params, str) or "$result[" not in params:
        return params
    whole = _REFERENCE.fullmatch(params)
    if whole is not None:
        found, value = _lookup(results, whole.group(1), whole.group(2))
        return value if found else params

    def one(match: re.Match[str]) -> str:
        found, value = _lookup(results, match.group(1), match.group(2))
        return _as_php_text(value) if found else match.group(0)

    return _REFERENCE.sub(one, params)


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
) -> dict[str, Any]:
    """The `batch` reply's result: every command's answer, error and time under its key.
    Telephony methods are not list methods, so `result_total` and `result_next` are empty."""
    return {
        "result": php_array(results),
        "result_error": php_array(errors),
        "result_total": [],
        "result_next": [],
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
