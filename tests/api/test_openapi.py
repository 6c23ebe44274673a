"""The OpenAPI document describes exactly what the server does: every route, every
parameter, every status code and the shape of every body."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any

from crm.services.leads import LeadInput
from crm.services.records import ContactInput
from tests.api.conftest import ApiClient, Reply
from tests.api.schema_check import check, resolve
from tests.conftest import make_event


def _sample(schema: dict[str, Any]) -> list[str]:
    """Query values a client could send for a declared parameter schema."""
    if schema.get("type") == "array":
        return _sample(schema["items"]) * 2
    if "enum" in schema:
        return [str(schema["enum"][0])]
    if "examples" in schema:
        return [str(schema["examples"][0])]
    if schema.get("format") == "date-time":
        return ["2000-01-01T00:00:00+01:00"]
    kind = schema["type"]
    if kind == "integer":
        return [str(schema.get("default", schema.get("minimum", 1)))]
    if kind == "boolean":
        return ["false"]
    return ["x"]


async def _seed(api: ApiClient) -> dict[str, int]:
    """One record of each kind with an activity, so item schemas are checked on real data."""
    crm = api.service.crm
    result = await api.service.process_now(make_event(phones=("+49 30 2223334",), text="hi"))
    assert result.lead_id is not None
    contact = await crm.records.create_contact(ContactInput(name="C", phones=("+4930111",)))
    company = await crm.records.create_company("Co", emails=("a@co.example",))
    deal = await crm.deals.create("D", contact_id=contact.id)
    await crm.leads.create(LeadInput(title="Second", emails=("x@y.example",)))
    ids = {"leads": result.lead_id, "contacts": contact.id, "companies": company.id}
    ids["deals"] = deal.id
    for owner_type, key in (("deal", "deals"), ("contact", "contacts"), ("company", "companies")):
        await crm.activities.comment(owner_type, ids[key], "seen")
    return ids


def _conforms(doc: dict[str, Any], op: dict[str, Any], reply: Reply, what: str) -> None:
    declared = op["responses"].get(str(reply.status))
    assert declared is not None, f"{what}: status {reply.status} is not declared"
    declared = resolve(doc, declared)
    check(doc, declared["content"]["application/json"]["schema"], reply.body, what)
    for header in declared.get("headers", {}):
        assert header in reply.headers, f"{what}: header {header} missing"


async def test_every_documented_path_behaves_as_documented(api: ApiClient) -> None:
    ids = await _seed(api)
    doc = (await api.get("/api/v1/openapi.json", token=None)).body
    assert doc["openapi"] == "3.1.0" and len(doc["paths"]) >= 19
    for path, item in doc["paths"].items():
        if "get" not in item:
            continue  # write operations: tests/api/test_writes.py
        op = item["get"]
        kind = path.split("/")[3]
        url = path.replace("{id}", str(ids.get(kind, 0)))
        # 1. Without query parameters: real data (or a declared error), body as declared.
        plain = await api.get(url)
        _conforms(doc, op, plain, f"GET {url}")
        if "items" in plain.body:
            assert plain.body["items"], f"{url}: seeded data should be listed"
        # 2. Every declared query parameter at once is accepted.
        query = [
            (p["name"], value)
            for p in op["parameters"]
            if p["in"] == "query"
            for value in _sample(p["schema"])
        ]
        full = await api.get(url, query)
        assert full.status == 200, (url, query, full.body)
        _conforms(doc, op, full, f"GET {url} with {query}")
        # 3. An undeclared parameter is refused, as the document says.
        unknown = await api.get(url, {"no_such_param": "1"})
        assert unknown.status == 400, url
        _conforms(doc, op, unknown, f"GET {url}?no_such_param")
        # 4. Without a token: 401 unless the operation is public (security: []).
        anonymous = await api.get(url, token=None)
        if op.get("security") == []:
            assert anonymous.status == 200, url
        else:
            assert anonymous.status == 401, url
        _conforms(doc, op, anonymous, f"anonymous GET {url}")
        # 5. Unknown records give the declared 404.
        if "{id}" in path:
            missing = await api.get(path.replace("{id}", "987654"))
            assert missing.status == 404, path
            _conforms(doc, op, missing, f"GET {path} unknown id")


async def test_document_lists_every_registered_route_and_nothing_else(api: ApiClient) -> None:
    doc = (await api.get("/api/v1/openapi.json", token=None)).body
    registered = {
        (route.method.lower(), route.resource.canonical)
        for route in api.service.web_app().router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/v1")
    }
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert registered == documented
    operations = [op for item in doc["paths"].values() for op in item.values()]
    operation_ids = [op["operationId"] for op in operations]
    assert len(operation_ids) == len(set(operation_ids))
    for path, item in doc["paths"].items():
        in_path = set(re.findall(r"{(\w+)}", path))
        for op in item.values():
            declared = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert in_path == declared, path


# --- no refusal the document does not state -------------------------------------------------

_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|([+-])(\d{2}):(\d{2}))"
)


def _date_time_ok(value: str) -> bool:
    """RFC 3339 `date-time`, as JSON Schema's format means it (seconds up to 59)."""
    m = _DATE_TIME.fullmatch(value)
    if m is None:
        return False
    try:
        datetime(*(int(m.group(i)) for i in range(1, 7)))
    except ValueError:
        return False
    return m.group(10) is None or (int(m.group(10)) < 24 and int(m.group(11)) < 60)


def _value_ok(schema: dict[str, Any], value: str) -> bool:
    """Whether one query value is valid by the declared schema (the document is the judge,
    never the server)."""
    if schema.get("format") == "date-time":
        return _date_time_ok(value)
    kind = schema["type"]
    if kind == "integer":
        if not re.fullmatch(r"-?[0-9]+", value):
            return False
        number = int(value)
        return schema.get("minimum", number) <= number <= schema.get("maximum", number)
    if kind == "boolean":
        return value in ("true", "false")
    assert kind == "string", schema
    return (
        schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value))
        and re.search(schema.get("pattern", ""), value) is not None
        and value in schema.get("enum", [value])
    )


def _values(schema: dict[str, Any]) -> list[str]:
    """Values worth trying for one schema: its edges and just past them, and the shapes
    clients get wrong."""
    if schema.get("format") == "date-time":
        return [
            "2024-05-01T10:00:00Z",
            "2024-05-01t10:00:00.250z",
            "2024-05-01T10:00:00+02:00",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
            "2024-05-01T10:00:00",
            "2024-02-30T10:00:00Z",
            "2024-05-01",
            "yesterday",
            "",
        ]
    kind = schema["type"]
    if kind == "integer":
        low, high = schema.get("minimum", -5), schema.get("maximum", 2**31 - 1)
        edges = {low, low - 1, high, high + 1, 0, 1}
        return [str(n) for n in sorted(edges)] + ["007", "1.5", "1e3", "abc", "", " 1"]
    if kind == "boolean":
        return ["true", "false", "TRUE", "1", "maybe", ""]
    longest = schema.get("maxLength", 200)
    text = [
        "x",
        "Anna Müller",
        "+49 30 1234567",
        "a" * longest,
        "a" * (longest + 1),
        "",
        "A\x00B",
        "A\x1fB",
        "A\x7fB",
        "A\x85B",
        "\u2028",
        "💬",
    ]
    return list(schema.get("enum", [])) + text


def _query_cases(op: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """Queries to send: none at all, and each query parameter alone (with whatever the
    operation needs besides), once per value worth trying, repeated, and too often."""
    one_of: list[str] = op.get("x-required-one-of", [])
    cases: list[list[tuple[str, str]]] = [[]]
    for p in op["parameters"]:
        if p["in"] != "query":
            continue
        name, schema = p["name"], p["schema"]
        base = [] if not one_of or name in one_of else [(one_of[0], "x")]
        one = schema["items"] if schema["type"] == "array" else schema
        cases += [[*base, (name, v)] for v in _values(one)]
        times = schema.get("maxItems", 1)
        cases += [[*base, *[(name, "1")] * times], [*base, *[(name, "1")] * (times + 1)]]
    return cases


def _query_ok(op: dict[str, Any], query: list[tuple[str, str]]) -> bool:
    params = {p["name"]: p for p in op["parameters"] if p["in"] == "query"}
    given = [name for name, _ in query]
    for name in set(given):
        schema = params[name]["schema"]
        limit = schema.get("maxItems", 1) if schema["type"] == "array" else 1
        one = schema["items"] if schema["type"] == "array" else schema
        if given.count(name) > limit:
            return False
        if not all(_value_ok(one, v) for n, v in query if n == name):
            return False
    one_of = op.get("x-required-one-of", [])
    return not one_of or any(name in given for name in one_of)


async def test_every_refusal_is_one_the_document_states(api: ApiClient) -> None:
    """Every operation driven with valid and invalid values of each parameter over HTTP:
    whatever the server answers is a status the operation declares, with the declared body,
    and a request the document calls valid is never refused as a bad request."""
    ids = await _seed(api)
    doc = (await api.get("/api/v1/openapi.json", token=None)).body
    for path, item in doc["paths"].items():
        if "get" not in item:
            continue
        op = item["get"]
        url = path.replace("{id}", str(ids.get(path.split("/")[3], 0)))
        sent: list[tuple[str, list[tuple[str, str]], bool]] = [
            (url, query, _query_ok(op, query)) for query in _query_cases(op)
        ]
        if "{id}" in path:
            id_schema = next(p["schema"] for p in op["parameters"] if p["in"] == "path")
            for value in _values(id_schema):
                if value.strip() and "/" not in value:
                    sent.append((path.replace("{id}", value), [], _value_ok(id_schema, value)))
        # Several at a time: hundreds of requests in all.
        replies = await asyncio.gather(*(api.get(target, query) for target, query, _ in sent))
        for (target, query, valid), reply in zip(sent, replies, strict=True):
            what = f"GET {target} {query}"
            _conforms(doc, op, reply, what)
            if valid:
                assert reply.status in (200, 404), (what, reply.body)
