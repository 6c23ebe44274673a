"""Reading the values of Bitrix24 write calls: `id`, `fields` (names in any case), texts,
numbers, amounts and the PHONE / EMAIL multifields, with Bitrix24's error bodies."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from channels.phone.bitrix_fields import money, whole
from channels.phone.bitrix_params import BitrixError


def ci(params: Mapping[str, Any], name: str) -> Any:
    """A parameter in any case: clients send `fields` and `FIELDS`, `id` and `ID`."""
    for key, value in params.items():
        if str(key).lower() == name:
            return value
    return None


def record_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    raw = ci(params, "fields")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BitrixError("", "fields must be an object")
    return {str(k).upper(): v for k, v in raw.items()}


def record_id(params: Mapping[str, Any]) -> int:
    raw = ci(params, "id")
    try:
        ident = whole(raw, "ID")
    except BitrixError:
        ident = 0
    if ident <= 0:
        raise BitrixError("", "ID is not defined or invalid.")
    return ident


def text(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is None or isinstance(value, dict | list):
        return None
    return str(value).strip() or None


def number(fields: Mapping[str, Any], key: str) -> int | None:
    value = text(fields, key)
    return None if value is None else whole(value, key)


def amount(fields: Mapping[str, Any], key: str) -> Decimal | None:
    value = text(fields, key)
    return None if value is None else money(value, key)


def comm_values(raw: Any) -> tuple[str, ...]:
    """PHONE / EMAIL: a list of {VALUE, VALUE_TYPE} (or plain strings); deleted items (DELETE
    = Y, an empty VALUE) are left out."""
    items = raw.values() if isinstance(raw, dict) else raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for item in items:
        if isinstance(item, dict):
            upper = {str(k).upper(): v for k, v in item.items()}
            if str(upper.get("DELETE", "")).upper() == "Y":
                continue
            item = upper.get("VALUE")
        if isinstance(item, str | int) and str(item).strip():
            out.append(str(item).strip())
    return tuple(out)
