"""Bitrix24 REST, the wire in: method names, limits, error codes, and PHP-style parameters
(query, form, multipart and JSON bodies, `a[b][]=c` nesting) read the way Bitrix24 reads them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

REGISTER = "telephony.externalcall.register"
FINISH = "telephony.externalcall.finish"
SEARCH = "telephony.externalcall.searchcrmentities"
SHOW = "telephony.externalcall.show"
HIDE = "telephony.externalcall.hide"
ATTACH_RECORD = "telephony.externalcall.attachrecord"
BATCH = "batch"
TELEPHONY_METHODS = frozenset({REGISTER, FINISH, SEARCH, SHOW, HIDE, ATTACH_RECORD})
# The CRM, user, system and line methods (channels/phone/bitrix_crm, bitrix_catalog,
# bitrix_users); the service checks that each has a handler.
CRM_METHODS = frozenset(
    {
        *(
            f"crm.{kind}.{verb}"
            for kind in ("lead", "contact", "company", "deal")
            for verb in ("list", "get", "add", "update")
        ),
        "crm.activity.list",
        "crm.activity.get",
        "crm.activity.add",
        "crm.timeline.comment.add",
        "crm.duplicate.findbycomm",
        "crm.status.list",
        "crm.dealcategory.list",
        "crm.dealcategory.stage.list",
        "crm.category.list",
        "user.get",
        "user.current",
        "profile",
        "app.info",
        "methods",
        "method.get",
        "scope",
        "telephony.externalline.add",
        "telephony.externalline.get",
        "telephony.externalline.update",
        "telephony.externalline.delete",
    }
)
SUPPORTED_METHODS = TELEPHONY_METHODS | CRM_METHODS | {BATCH}

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
