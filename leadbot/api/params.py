"""Declared request parameters and their strict parsing.

The same `Param` objects drive both the checks below and the OpenAPI document, so what the
document promises is exactly what the server accepts."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from multidict import MultiMapping

from leadbot.api.errors import bad_request

ParamType = Literal["integer", "boolean", "string", "date-time"]

INT32_MAX = 2**31 - 1  # ids are 32-bit on PostgreSQL; larger values would crash the query
MAX_STRING = 200
MAX_REPEAT = 20

_INTEGER = re.compile(r"-?0*[0-9]{1,12}")  # leading zeros are still the same number
# Characters no text value may hold: C0 controls and DEL. One range for the check and the
# OpenAPI `pattern` (Python's re and ECMA-262 both read \uXXXX).
CONTROL = "\\u0000-\\u001f\\u007f"
_CONTROL = re.compile(f"[{CONTROL}]")
NO_CONTROL_PATTERN = f"^[^{CONTROL}]*$"
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: ParamType
    description: str
    location: Literal["query", "path"] = "query"
    required: bool = False
    repeatable: bool = False
    enum: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    default: int | bool | None = None
    pattern: str | None = None  # a string's whole value must match (checked in parse)
    example: str | None = None  # a value the server accepts, for the document's readers

    def schema(self) -> dict[str, Any]:
        """The JSON schema of one value (the OpenAPI `schema`, wrapped in an array if
        repeatable)."""
        one: dict[str, Any]
        if self.type == "date-time":
            one = {"type": "string", "format": "date-time"}
        else:
            one = {"type": self.type}
        if self.enum:
            one["enum"] = list(self.enum)
        if self.type == "string":
            one["minLength"], one["maxLength"] = 1, MAX_STRING
            one["pattern"] = NO_CONTROL_PATTERN if self.pattern is None else self.pattern
        if self.example is not None:
            one["examples"] = [self.example]
        if self.minimum is not None:
            one["minimum"] = self.minimum
        if self.maximum is not None:
            one["maximum"] = self.maximum
        if self.default is not None:
            one["default"] = self.default
        if self.repeatable:
            return {"type": "array", "items": one, "maxItems": MAX_REPEAT}
        return one

    def parse(self, raw: str) -> Any:
        if raw == "":
            raise bad_request(f"{self.name} must not be empty")
        if self.type == "integer":
            return self._integer(raw)
        if self.type == "boolean":
            low = raw.lower()
            if low in _TRUE or low in _FALSE:
                return low in _TRUE
            raise bad_request(f"{self.name} must be true or false, not {_show(raw)}")
        if self.type == "date-time":
            return self._datetime(raw)
        if len(raw) > MAX_STRING:
            raise bad_request(f"{self.name} is longer than {MAX_STRING} characters")
        if _CONTROL.search(raw):
            raise bad_request(f"{self.name} contains control characters")
        if self.pattern is not None and not re.fullmatch(self.pattern, raw):
            raise bad_request(f"{self.name} must match {self.pattern}, not {_show(raw)}")
        if self.enum and raw not in self.enum:
            raise bad_request(
                f"{self.name} must be one of {', '.join(self.enum)}, not {_show(raw)}"
            )
        return raw

    def _integer(self, raw: str) -> int:
        if not _INTEGER.fullmatch(raw):
            raise bad_request(f"{self.name} must be an integer, not {_show(raw)}")
        value = int(raw)
        low, high = self.minimum, self.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            if high is None:
                raise bad_request(f"{self.name} must be at least {low}")
            raise bad_request(f"{self.name} must be between {low} and {high}")
        return value

    def _datetime(self, raw: str) -> datetime:
        hint = ""
        if " " in raw:
            hint = " (a '+' in a query string must be sent as %2B)"
        try:
            value = datetime.fromisoformat(raw.upper())  # RFC 3339 allows "t" and "z" too
        except ValueError:
            raise bad_request(
                f"{self.name} must be an ISO-8601 date-time such as 2024-05-01T09:00:00Z, "
                f"not {_show(raw)}{hint}"
            ) from None
        if value.tzinfo is None or value.utcoffset() is None:
            raise bad_request(f"{self.name} needs a timezone, e.g. {raw}Z or {raw}+02:00")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # year 1 east of UTC or 9999 west of it: as far as time goes
            return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


def _show(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "…")


def parse_args(
    params: Sequence[Param],
    query: MultiMapping[str],
    path: Mapping[str, str],
    one_of: Sequence[str] = (),
) -> dict[str, Any]:
    """Checked values of the declared parameters; anything undeclared is refused so that a
    misspelt filter never silently returns everything. When `one_of` names parameters, at
    least one of them must be given."""
    declared = {p.name for p in params if p.location == "query"}
    unknown = sorted(set(query) - declared)
    if unknown:
        accepted = ", ".join(sorted(declared)) or "none"
        raise bad_request(f"unknown query parameter {unknown[0]!r} (accepted: {accepted})")
    args: dict[str, Any] = {}
    for p in params:
        if p.location == "path":
            args[p.name] = p.parse(path[p.name])
            continue
        values = query.getall(p.name, [])
        if not values:
            if p.required:
                raise bad_request(f"{p.name} is required")
            if p.default is not None:
                args[p.name] = p.default
            elif p.repeatable:
                args[p.name] = []
            continue
        if p.repeatable:
            if len(values) > MAX_REPEAT:
                raise bad_request(f"at most {MAX_REPEAT} values of {p.name} are allowed")
            args[p.name] = [p.parse(v) for v in values]
        elif len(values) > 1:
            raise bad_request(f"{p.name} may be given only once")
        else:
            args[p.name] = p.parse(values[0])
    if one_of and not any(args.get(name) for name in one_of):
        raise bad_request(one_of_rule(one_of))
    return args


def one_of_rule(names: Sequence[str]) -> str:
    """The refusal of a request without any of `names`, also the OpenAPI document's words."""
    return f"give at least one {' or '.join(names)}"
