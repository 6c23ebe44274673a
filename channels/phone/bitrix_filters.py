"""Bitrix24 list parameters (`filter`, `order`, `select`, `start`) → `crm.services.querying.
RecordQuery`, which the CRM turns into SQL. Pages are 50 rows, as in Bitrix24; `start=-1`
skips the total."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from channels.phone.bitrix_fields import FILTERS, Field, whole
from channels.phone.bitrix_params import BitrixError
from crm.services.querying import Condition, Op, RecordQuery

PAGE = 50
# Longest first: "!=%" before "!=" before "!".
_PREFIX = re.compile(r"^(!@|!=%|!%=|!%|!=|=%|%=|>=|<=|@|!|=|%|>|<)?(.+)$", re.DOTALL)
_OPS: dict[str, Op] = {
    "": "eq",
    "=": "eq",
    "!": "ne",
    "!=": "ne",
    ">": "gt",
    ">=": "ge",
    "<": "lt",
    "<=": "le",
    "@": "in",
    "!@": "not_in",
    "%": "like",
    "=%": "like",
    "%=": "like",
    "!%": "not_like",
    "!=%": "not_like",
    "!%=": "not_like",
}
_STAGE = re.compile(r"^C(\d+):(.+)$")


@dataclass(frozen=True, slots=True)
class ListRequest:
    query: RecordQuery
    select: tuple[str, ...]
    start: int  # as asked; -1: no total


def _ci(params: Mapping[str, Any], name: str) -> Any:
    """A parameter by name in any case (`FILTER` in user.get, `filter` elsewhere)."""
    for key, value in params.items():
        if key.lower() == name:
            return value
    return None


def _values(value: Any) -> tuple[Any, ...]:
    if isinstance(value, dict):
        return tuple(value.values())
    if isinstance(value, list | tuple):
        return tuple(value)
    return (value,)


def _condition(field: Field, op: Op, raw: Any) -> Condition:
    if op in ("like", "not_like"):
        text = str(raw).strip("%") if not isinstance(raw, list | dict) else str(_values(raw)[0])
        return Condition(field.name, op, text)
    many = isinstance(raw, list | tuple | dict)
    if many or op in ("in", "not_in"):
        values = tuple(field.read(v) for v in _values(raw) if v not in ("", None))
        if op == "eq":
            op = "in"
        elif op == "ne":
            op = "not_in"
        elif op not in ("in", "not_in"):
            raise BitrixError("", f"{field.name}: a list needs = or @")
        return Condition(field.name, op, values)
    if raw in ("", None) or raw is False:
        if op in ("eq", "ne"):
            return Condition(field.name, op, None)  # Bitrix24: empty means "not set"
        raise BitrixError("", f"{field.name}: an empty value can only be compared with =")
    return Condition(field.name, op, field.read(raw))


def _deal_stage(op: Op, raw: Any, pipelines: Sequence[str]) -> list[Condition]:
    """STAGE_ID "C<n>:CODE" names funnel n's stage; a bare code the first funnel's."""
    values = _values(raw)
    stages: list[str] = []
    funnels: set[str] = set()
    for value in values:
        text = str(value)
        match = _STAGE.match(text)
        index = int(match.group(1)) if match else 0
        funnels.add(pipelines[index] if index < len(pipelines) else f"#{index}")
        stages.append(match.group(2) if match else text)
    if op not in ("eq", "in") or len(funnels) > 1:
        # Only the codes compared: stages of different funnels may share a code.
        return [Condition("stage", op, tuple(stages) if len(stages) > 1 else stages[0])]
    return [
        Condition("pipeline", "eq", funnels.pop()),
        Condition("stage", "in", tuple(stages)),
    ]


def _deal_category(op: Op, raw: Any, pipelines: Sequence[str]) -> Condition:
    codes = []
    for value in _values(raw):
        try:
            index = int(str(value))
        except ValueError:
            raise BitrixError("", "CATEGORY_ID must be a number") from None
        codes.append(pipelines[index] if 0 <= index < len(pipelines) else f"#{index}")
    if op in ("eq", "in"):
        return Condition("pipeline", "in", tuple(codes))
    if op in ("ne", "not_in"):
        return Condition("pipeline", "not_in", tuple(codes))
    raise BitrixError("", "CATEGORY_ID can only be compared with = or !")


def conditions(kind: str, flt: Any, pipelines: Sequence[str] = ()) -> tuple[Condition, ...]:
    """A Bitrix24 filter → conditions; unknown fields (UF_*, …) are ignored, as Bitrix24
    does."""
    if not isinstance(flt, dict):
        return ()
    fields = FILTERS[kind]
    out: list[Condition] = []
    for key, raw in flt.items():
        match = _PREFIX.match(str(key).strip())
        if match is None:
            continue
        op, name = _OPS[match.group(1) or ""], match.group(2).upper()
        if kind == "deal" and name == "STAGE_ID":
            out.extend(_deal_stage(op, raw, pipelines))
        elif kind == "deal" and name == "CATEGORY_ID":
            out.append(_deal_category(op, raw, pipelines))
        elif kind == "deal" and name == "CLOSED":
            closed = str(raw).upper() == "Y"
            want = ("success", "failure") if closed == (op == "eq") else ("process",)
            out.append(Condition("stage_semantic", "in", want))
        elif kind == "rep" and name in ("NAME_SEARCH", "FIND"):
            out.append(Condition("name", "like", str(raw)))
        elif name in fields:
            out.append(_condition(fields[name], op, raw))
    return tuple(out)


def _order(kind: str, raw: Any) -> tuple[tuple[str, bool], ...]:
    fields = FILTERS[kind]
    order: list[tuple[str, bool]] = []
    if isinstance(raw, dict):
        for name, direction in raw.items():
            field = fields.get(str(name).upper())
            if field is not None and field.name not in ("phone", "email"):
                order.append((field.name, str(direction).upper() == "DESC"))
    return tuple(order) or (("id", False),)


def _start(raw: Any) -> int:
    if raw in (None, ""):
        return 0
    start = whole(raw, "start")
    return -1 if start < 0 else start


def list_request(
    kind: str, params: Mapping[str, Any], pipelines: Sequence[str] = ()
) -> ListRequest:
    """The list parameters of a `*.list` / `user.get` call."""
    start = _start(_ci(params, "start"))
    order = _ci(params, "order")
    if kind == "rep" and order is None and _ci(params, "sort"):
        # user.get: sort=FIELD&order=ASC|DESC
        order = {str(_ci(params, "sort")): "ASC"}
    elif kind == "rep" and isinstance(order, str):
        order = {str(_ci(params, "sort") or "ID"): order}
    raw_select = _ci(params, "select")
    select = tuple(str(s) for s in _values(raw_select)) if raw_select else ()
    query = RecordQuery(
        conditions=conditions(kind, _ci(params, "filter"), pipelines),
        order=_order(kind, order),
        offset=max(start, 0),
        limit=PAGE,
        count=start >= 0,
    )
    return ListRequest(query, select, start)


def paged(request: ListRequest, rows: int, total: int | None) -> tuple[int | None, int | None]:
    """(next, total) of a page: next only when more rows exist."""
    if total is None:
        return None, None
    offset = request.query.offset
    following = offset + PAGE
    return (following if following < total and rows == PAGE else None), total
