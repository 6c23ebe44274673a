"""Bitrix24 `batch`: up to 50 sub-requests in one call, `$result[key]` references between them
substituted as PHP would print the value."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channels.phone.bitrix import (
    _flag,
)
from channels.phone.bitrix_params import (
    _CANONICAL_INT,
    _SEGMENT,
    BATCH,
    MAX_BATCH,
    BitrixError,
    _bad_request,
    _query_pairs,
    nest_params,
    normalize_method,
    resolve_method,
)

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
