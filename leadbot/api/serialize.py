"""JSON for the CRM's view dataclasses, and their JSON schemas, both read off the same
type hints so the document and the responses cannot disagree."""

from __future__ import annotations

import dataclasses
import types
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Union, get_args, get_origin, get_type_hints

from crm.dto import (
    ActivityView,
    CommView,
    CompanyView,
    ContactView,
    DealView,
    DuplicateHits,
    EventView,
    LeadView,
    TimelineView,
)
from crm.services.handmade import DuplicateHit, Saved
from crm.services.leads import ConversionResult

# Schema names in the OpenAPI document for each view type.
SCHEMA_NAMES: dict[type, str] = {
    LeadView: "Lead",
    DealView: "Deal",
    ContactView: "Contact",
    CompanyView: "Company",
    CommView: "Communication",
    ActivityView: "Activity",
    TimelineView: "TimelineEntry",
    EventView: "InboundEvent",
    DuplicateHits: "Duplicates",
    DuplicateHit: "DuplicateHit",
    Saved: "SavedRecord",
    ConversionResult: "Conversion",
}


def to_json(value: Any) -> Any:
    """Datetimes become ISO-8601 UTC, amounts decimal strings (no float rounding)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def ref(cls: type) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{SCHEMA_NAMES[cls]}"}


def object_schema(cls: type) -> dict[str, Any]:
    """Every field is present in the JSON (None becomes null), so every field is required."""
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    return {
        "type": "object",
        "properties": {name: type_schema(hints[name]) for name in names},
        "required": names,
    }


def type_schema(tp: Any) -> dict[str, Any]:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            options = [type_schema(a) for a in args]
            return {"oneOf": options}
        schema = type_schema(inner[0])
        if type(None) not in args:
            return schema
        if "type" in schema:
            return {**schema, "type": [schema["type"], "null"]}
        return {"oneOf": [schema, {"type": "null"}]}
    if origin is list:
        return {"type": "array", "items": type_schema(args[0])}
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return {"type": "array", "items": type_schema(args[0])}
    if origin is tuple:
        items = [type_schema(a) for a in args]
        return {
            "type": "array",
            "prefixItems": items,
            "minItems": len(items),
            "maxItems": len(items),
        }
    if origin is dict or tp is dict:
        return {"type": "object"}
    if tp is Any:
        return {}
    simple: dict[Any, dict[str, Any]] = {
        bool: {"type": "boolean"},
        int: {"type": "integer"},
        str: {"type": "string"},
        float: {"type": "number"},
        datetime: {"type": "string", "format": "date-time"},
        Decimal: {"type": "string", "format": "decimal"},
    }
    if tp in simple:
        return dict(simple[tp])
    if tp in SCHEMA_NAMES:
        return ref(tp)
    raise TypeError(f"cannot describe {tp!r}")


def component_schemas() -> dict[str, dict[str, Any]]:
    return {name: object_schema(cls) for cls, name in SCHEMA_NAMES.items()}
