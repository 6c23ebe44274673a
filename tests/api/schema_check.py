"""A small JSON-schema checker for the subset the OpenAPI document uses (no extra package)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def check(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$") -> None:
    """Raise AssertionError naming the first place where `value` breaks `schema`."""
    schema = resolve(doc, schema)
    if "oneOf" in schema:
        matches = 0
        for option in schema["oneOf"]:
            try:
                check(doc, option, value, where)
                matches += 1
            except AssertionError:
                pass
        assert matches == 1, f"{where}: {value!r} matches {matches} of oneOf"
        return
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        assert any(_is(value, k) for k in kinds), f"{where}: {value!r} is not {kinds}"
    if value is None:
        return
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if schema.get("format") == "date-time":
        assert datetime.fromisoformat(value).tzinfo is not None, f"{where}: naive {value!r}"
    if "minimum" in schema:
        assert value >= schema["minimum"], f"{where}: {value!r} < {schema['minimum']}"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            assert name in value, f"{where}: missing {name!r}"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                check(doc, sub, value[name], f"{where}.{name}")
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items", {})
            check(doc, sub, item, f"{where}[{i}]")
        assert len(value) >= schema.get("minItems", 0), f"{where}: too few items"
        assert len(value) <= schema.get("maxItems", len(value)), f"{where}: too many items"
