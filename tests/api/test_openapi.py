"""The OpenAPI document describes exactly what the server does: every route, every
parameter, every status code and the shape of every body."""

from __future__ import annotations

import re
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
        assert set(item) == {"get"}, path
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
    operation_ids = [item["get"]["operationId"] for item in doc["paths"].values()]
    assert len(operation_ids) == len(set(operation_ids))
    for path, item in doc["paths"].items():
        in_path = set(re.findall(r"{(\w+)}", path))
        declared = {p["name"] for p in item["get"]["parameters"] if p["in"] == "path"}
        assert in_path == declared, path
