"""The write API over HTTP: scopes, duplicate warnings (409 with hits, force, attach_to),
the record actions, rep tokens' rights, Idempotency-Key, bad bodies."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from decimal import Decimal
from typing import Any

from crm.identity import Comms
from crm.services.handmade import CompanyDraft, ContactDraft, DealDraft, LeadDraft
from tests.api.conftest import ApiClient, Reply
from tests.api.schema_check import check, resolve


async def writer(api: ApiClient, rep_id: int | None = None) -> str:
    _, token = await api.service.crm.tokens.create(
        "writer", scopes=("read", "write"), rep_id=rep_id
    )
    return token


def conforms(doc: dict[str, Any], method: str, path: str, reply: Reply) -> None:
    op = doc["paths"][path][method]
    declared = op["responses"].get(str(reply.status))
    assert declared is not None, (method, path, reply.status, reply.body)
    declared = resolve(doc, declared)
    check(doc, declared["content"]["application/json"]["schema"], reply.body, f"{method} {path}")


async def test_a_read_token_cannot_write(api: ApiClient) -> None:
    reply = await api.send("POST", "/api/v1/leads", {"title": "X"})
    assert reply.status == 403 and reply.body["error"] == "insufficient_scope"
    assert "--scope read,write" in reply.body["detail"]
    assert (await api.service.crm.leads.page(_all()))[1] == 0


def _all() -> Any:
    from crm.services.listing import ListFilter

    return ListFilter()


async def test_duplicate_warning_force_and_attach(api: ApiClient) -> None:
    token = await writer(api)
    doc = (await api.get("/api/v1/openapi.json", token=None)).body
    lead = await api.send(
        "POST", "/api/v1/leads", {"title": "Old", "phones": ["030 1234567"]}, token=token
    )
    assert lead.status == 201 and lead.body["record_type"] == "lead", lead.body
    conforms(doc, "post", "/api/v1/leads", lead)
    lead_id = lead.body["id"]
    new = {"name": "Anna", "phones": ["+49 30 1234567"], "emails": ["anna@example.com"]}
    dup = await api.send("POST", "/api/v1/contacts", new, token=token)
    assert dup.status == 409 and dup.body["error"] == "duplicate", dup.body
    assert [(h["owner_type"], h["owner_id"]) for h in dup.body["hits"]] == [("lead", lead_id)]
    assert f"belongs to lead #{lead_id}" in dup.body["detail"]
    conforms(doc, "post", "/api/v1/contacts", dup)
    attached = await api.send(
        "POST",
        "/api/v1/contacts",
        {**new, "attach_to": {"type": "lead", "id": lead_id}},
        token=token,
    )
    assert attached.status == 200 and attached.body["attached"] is True
    assert attached.body["record"]["id"] == lead_id
    conforms(doc, "post", "/api/v1/contacts", attached)
    forced = await api.send("POST", "/api/v1/contacts", {**new, "force": True}, token=token)
    assert forced.status == 201 and forced.body["record_type"] == "contact"


async def test_an_edit_adding_a_known_phone_or_email_is_a_duplicate_unless_forced(
    api: ApiClient,
) -> None:
    token = await writer(api)
    doc = (await api.get("/api/v1/openapi.json", token=None)).body

    async def send(method: str, path: str, body: Any) -> Reply:
        return await api.send(method, "/api/v1" + path, body, token=token)

    held = await send("POST", "/contacts", {"name": "Anna", "phones": ["030 7654321"]})
    anna = held.body["id"]
    mail = await send("POST", "/companies", {"title": "Acme", "emails": ["info@acme.de"]})
    acme = mail.body["id"]
    lead = (await send("POST", "/leads", {"title": "Inquiry", "phones": ["030 5550001"]})).body
    lid = lead["id"]
    bert = (await send("POST", "/contacts", {"name": "Bert"})).body["id"]
    shop = (await send("POST", "/companies", {"title": "Shop"})).body["id"]

    for path, body, holder in (
        (f"/leads/{lid}", {"phones": ["+49 30 7654321"]}, [("contact", anna)]),
        (f"/contacts/{bert}", {"emails": ["INFO@acme.de"]}, [("company", acme)]),
        # By now the lead holds Anna's number too (forced above): both are named.
        (f"/companies/{shop}", {"phones": ["030/7654321"]}, [("contact", anna), ("lead", lid)]),
    ):
        dup = await send("PATCH", path, body)
        assert dup.status == 409 and dup.body["error"] == "duplicate", (path, dup.body)
        assert [(h["owner_type"], h["owner_id"]) for h in dup.body["hits"]] == holder
        for kind, ident in holder:
            assert f"belongs to {kind} #{ident}" in dup.body["detail"]
        conforms(doc, "patch", "/api/v1" + re.sub(r"/\d+$", "/{id}", path), dup)
        typed = (body.get("phones") or body["emails"])[0].lower()
        got = await api.get("/api/v1" + path, token=token)
        assert typed not in [c["raw"].lower() for c in got.body["comms"]]  # nothing saved
        forced = await send("PATCH", path, {**body, "force": True})
        assert forced.status == 200, (path, forced.body)
        assert typed in [c["raw"].lower() for c in forced.body["comms"]]

    # The record's own phone again, or a new one: no warning.
    again = await send("PATCH", f"/leads/{lid}", {"phones": ["030 5550001"], "name": "X"})
    assert again.status == 200 and again.body["name"] == "X"
    fresh = await send("PATCH", f"/contacts/{anna}", {"emails": ["anna@new.de"]})
    assert fresh.status == 200 and len(fresh.body["comms"]) == 2


async def test_an_edit_adds_telegram_and_whatsapp_handles_to_contacts_and_companies(
    api: ApiClient,
) -> None:
    token = await writer(api)

    async def send(method: str, path: str, body: Any) -> Reply:
        return await api.send(method, "/api/v1" + path, body, token=token)

    anna = (await send("POST", "/contacts", {"name": "Anna"})).body["id"]
    acme = (await send("POST", "/companies", {"title": "Acme"})).body["id"]
    handles = {"telegram": ["@Anna_K"], "whatsapp": ["+49 151 23456789"]}
    for path in (f"/contacts/{anna}", f"/companies/{acme}"):
        reply = await send("PATCH", path, {**handles, "force": True})
        assert reply.status == 200, (path, reply.body)
        kinds = {c["kind"]: c["raw"] for c in reply.body["comms"]}
        assert kinds.keys() >= {"telegram", "whatsapp"}, reply.body["comms"]
    # Anna's handle is now hers: another record adding it is warned of.
    bert = (await send("POST", "/contacts", {"name": "Bert"})).body["id"]
    dup = await send("PATCH", f"/contacts/{bert}", {"telegram": ["anna_k"]})
    assert dup.status == 409 and dup.body["error"] == "duplicate", dup.body
    assert ("contact", anna) in [(h["owner_type"], h["owner_id"]) for h in dup.body["hits"]]
    bad = await send("PATCH", f"/contacts/{bert}", {"whatsapp": ["not a number"]})
    assert bad.status == 400 and "not a WhatsApp number" in bad.body["detail"], bad.body


async def test_a_rep_token_learns_only_the_kind_and_rep_of_another_reps_holder(
    api: ApiClient,
) -> None:
    crm = api.service.crm
    rita = await crm.reps.add("Rita")
    otto = await crm.reps.add("Otto")
    boss = await crm.reps.add("Sam", role="supervisor")
    doc = (await api.get("/api/v1/openapi.json", token=None)).body
    zeds = Comms(phones=("030 2223334",))
    ottos = await crm.handmade.create_lead(LeadDraft("Zed's roof", comms=zeds, owner_id=otto.id))
    # A second lead of Otto's with the number: to Rita both read alike, so one hit says it.
    again = await crm.handmade.create_lead(
        LeadDraft("Zed's garage", comms=zeds, owner_id=otto.id), force=True
    )
    as_rita, as_boss = await writer(api, rep_id=rita.id), await writer(api, rep_id=boss.id)
    mine = await api.send("POST", "/api/v1/leads", {"title": "Mine"}, token=as_rita)
    for method, path, body in (
        ("POST", "/api/v1/contacts", {"name": "X", "phones": ["+49 30 2223334"]}),
        ("PATCH", f"/api/v1/leads/{mine.body['id']}", {"phones": ["030/2223334"]}),
    ):
        refused = await api.send(method, path, body, token=as_rita)
        assert refused.status == 409, refused.body
        conforms(doc, method.lower(), re.sub(r"/\d+$", "/{id}", path), refused)
        assert refused.body["hits"] == [
            {
                "kind": "phone",
                "value": "+49302223334",
                "owner_type": "lead",
                "owner_id": None,
                "owner_title": None,
                "message": "phone +49302223334 belongs to a lead of another rep (Otto)",
                "owner_rep": "Otto",
                "hidden": True,
            }
        ]
        assert "Zed" not in refused.body["detail"] and f"#{ottos.id}" not in refused.body["detail"]
        # The supervisor is told which leads, as before.
        seen = await api.send(method, path, body, token=as_boss)
        assert seen.status == 409
        assert [(h["owner_id"], h["owner_title"], h["hidden"]) for h in seen.body["hits"]] == [
            (ottos.id, "Zed's roof", False),
            (again.id, "Zed's garage", False),
        ]
        assert f"belongs to lead #{ottos.id} (Zed's roof)" in seen.body["detail"]
    assert (await crm.leads.get(mine.body["id"])).comms == []


async def test_contacts_and_companies_are_assigned_by_supervisors(api: ApiClient) -> None:
    crm = api.service.crm
    rita = await crm.reps.add("Rita")
    boss = await crm.reps.add("Sam", role="supervisor")
    gone = await crm.reps.add("Gone")
    await crm.reps.deactivate(gone.id)
    system, as_boss = await writer(api), await writer(api, rep_id=boss.id)
    as_rita = await writer(api, rep_id=rita.id)
    doc = (await api.get("/api/v1/openapi.json", token=None)).body
    contact = await api.send("POST", "/api/v1/contacts", {"name": "Anna"}, token=as_rita)
    company = await api.send("POST", "/api/v1/companies", {"title": "Acme"}, token=system)
    for kind, ident in (("contacts", contact.body["id"]), ("companies", company.body["id"])):
        path = f"/api/v1/{kind}/{ident}/assign"
        refused = await api.send("POST", path, {"rep_id": rita.id}, token=as_rita)
        assert refused.status == 403 and "supervisor" in refused.body["detail"], refused.body
        conforms(doc, "post", f"/api/v1/{kind}/{{id}}/assign", refused)
        inactive = await api.send("POST", path, {"rep_id": gone.id}, token=as_boss)
        assert inactive.status == 409 and "not active" in inactive.body["detail"]
        for token in (as_boss, system):
            moved = await api.send("POST", path, {"rep_id": rita.id}, token=token)
            assert moved.status == 200 and moved.body["responsible_id"] == rita.id, moved.body
            conforms(doc, "post", f"/api/v1/{kind}/{{id}}/assign", moved)
        missing = await api.send(
            "POST", f"/api/v1/{kind}/987654/assign", {"rep_id": rita.id}, token=system
        )
        assert missing.status == 404
    history = await crm.activities.timeline("company", company.body["id"])
    assert history[-1].action == "assigned" and history[-1].after == {"responsible_id": rita.id}


async def test_records_and_actions(api: ApiClient) -> None:
    token = await writer(api)
    crm = api.service.crm
    rep = await crm.reps.add("Rita")

    async def post(path: str, body: Any, status: int = 200, method: str = "POST") -> Any:
        reply = await api.send(method, "/api/v1" + path, body, token=token)
        assert reply.status == status, (path, reply.body)
        return reply.body

    company = await post(
        "/companies",
        {
            "title": "Acme",
            "contacts": [{"name": "Anna", "phones": ["030 1111111"]}, {"name": "Bernd"}],
        },
        201,
    )
    assert len(company["contact_ids"]) == 2
    anna = company["contact_ids"][0]
    deal = await post("/deals", {"title": "Kitchen", "contact_id": anna, "amount": "100.50"}, 201)
    assert deal["record"]["company_id"] == company["id"]
    deal_id = deal["id"]
    await post(f"/deals/{deal_id}", {"title": "Big kitchen"}, method="PATCH")
    comment = await post(f"/deals/{deal_id}/comments", {"text": "Called,\nall good"}, 201)
    assert comment["kind"] == "comment"
    reminder = await post(
        f"/contacts/{anna}/reminders", {"due_at": "2030-01-01T09:00:00+01:00"}, 201
    )
    assert reminder["kind"] == "call" and reminder["done"] is False
    moved = await post(f"/deals/{deal_id}/assign", {"rep_id": rep.id})
    assert moved["responsible_id"] == rep.id
    won = await post(f"/deals/{deal_id}/win", {"amount": "2000"})
    assert won["stage_semantic"] == "success" and Decimal(won["amount"]) == 2000
    lead = await post("/leads", {"title": "Inquiry", "emails": ["x@y.de"]}, 201)
    lead_id = lead["id"]
    patched = await post(f"/leads/{lead_id}", {"name": "Xaver"}, method="PATCH")
    assert patched["name"] == "Xaver"
    junk = await post(f"/leads/{lead_id}/status", {"status": "JUNK", "reason": "spam"})
    assert junk["status_semantic"] == "failure"
    closed = await api.send("POST", f"/api/v1/leads/{lead_id}/convert", {}, token=token)
    assert closed.status == 409 and closed.body["error"] == "conflict"
    second = await post("/leads", {"title": "Second"}, 201)
    converted = await post(f"/leads/{second['id']}/convert", {"amount": "5"})
    assert Decimal(converted["deal"]["amount"]) == 5
    lost = await post(f"/deals/{converted['deal']['id']}/lose", {"reason": "too dear"})
    assert lost["stage_semantic"] == "failure"
    timeline = await crm.activities.timeline("deal", converted["deal"]["id"])
    assert timeline[-1].after and timeline[-1].after["reason"] == "too dear"


async def test_a_rep_token_has_the_reps_rights(api: ApiClient) -> None:
    crm = api.service.crm
    rita = await crm.reps.add("Rita")
    bob = await crm.reps.add("Bob")
    token = await writer(api, rep_id=rita.id)
    mine = await api.send("POST", "/api/v1/leads", {"title": "Mine"}, token=token)
    assert mine.status == 201 and mine.body["record"]["responsible_id"] == rita.id
    for_bob = await api.send(
        "POST", "/api/v1/leads", {"title": "X", "owner_id": bob.id}, token=token
    )
    assert for_bob.status == 403
    reassign = await api.send(
        "POST", f"/api/v1/leads/{mine.body['id']}/assign", {"rep_id": bob.id}, token=token
    )
    assert reassign.status == 403 and "supervisor" in reassign.body["detail"]
    bobs = await api.send(
        "POST", "/api/v1/leads", {"title": "Bob's", "owner_id": bob.id}, token=await writer(api)
    )
    other = await api.get(f"/api/v1/leads/{bobs.body['id']}", token=token)
    assert other.status == 403 and other.body["error"] == "forbidden"
    listed = await api.get("/api/v1/leads", token=token)
    assert [item["id"] for item in listed.body["items"]] == [mine.body["id"]]
    await crm.reps.deactivate(rita.id)
    gone = await api.get("/api/v1/leads", token=token)
    assert gone.status == 401


async def test_idempotency_key_replays_the_first_answer(api: ApiClient) -> None:
    token = await writer(api)
    key = {"Idempotency-Key": "order-17"}
    body = {"title": "Once", "phones": ["030 7654321"]}
    first = await api.send("POST", "/api/v1/leads", body, token=token, headers=key)
    again = await api.send("POST", "/api/v1/leads", body, token=token, headers=key)
    assert first.status == again.status == 201
    assert again.body == first.body and again.headers.get("Idempotent-Replayed") == "true"
    other = await api.send("POST", "/api/v1/leads", {"title": "Else"}, token=token, headers=key)
    assert other.status == 422 and other.body["error"] == "idempotency_key_reused"
    bad = await api.send(
        "POST", "/api/v1/leads", body, token=token, headers={"Idempotency-Key": "é"}
    )
    assert bad.status == 400
    assert (await api.service.crm.leads.page(_all()))[1] == 1


async def test_concurrent_requests_with_one_key_apply_once(api: ApiClient) -> None:
    token = await writer(api)
    key = {"Idempotency-Key": "same"}
    body = {"title": "Race", "emails": ["race@example.com"], "force": True}
    replies = await asyncio.gather(
        *(api.send("POST", "/api/v1/leads", body, token=token, headers=key) for _ in range(8))
    )
    statuses = sorted(r.status for r in replies)
    assert set(statuses) <= {201, 409} and statuses.count(201) >= 1, statuses
    created = {r.body["id"] for r in replies if r.status == 201}
    assert len(created) == 1  # the replays answer the one lead made
    assert (await api.service.crm.leads.page(_all()))[1] == 1


BAD_BODIES: list[tuple[str, str, bytes | None, Any, int, str]] = [
    ("POST", "/api/v1/leads", b"{not json", None, 400, "not valid JSON"),
    ("POST", "/api/v1/leads", None, [1, 2], 422, "must be a JSON object"),
    ("POST", "/api/v1/leads", None, {}, 422, "title: Field required"),
    ("POST", "/api/v1/leads", None, {"title": "x", "titel": "y"}, 422, "titel: Extra inputs"),
    ("POST", "/api/v1/leads", None, {"title": "a\x00b"}, 422, "title: String should match"),
    ("POST", "/api/v1/leads", None, {"title": "x" * 201}, 422, "at most 200"),
    ("POST", "/api/v1/leads", None, {"title": "x", "phones": "030"}, 422, "phones"),
    ("POST", "/api/v1/deals", None, {"title": "x"}, 400, "needs a client"),
    ("POST", "/api/v1/deals", None, {"title": "x", "contact_id": 5, "amount": "-1"}, 422, "amount"),
    (
        "POST",
        "/api/v1/deals",
        None,
        {"title": "x", "contact_id": 5, "amount": "NaN"},
        422,
        "amount",
    ),
    ("POST", "/api/v1/deals", None, {"title": "x", "contact_id": 2**40}, 422, "contact_id"),
    ("POST", "/api/v1/deals", None, {"title": "x", "contact_id": 99}, 404, "contact #99"),
    ("POST", "/api/v1/contacts", None, {"attach_to": {"type": "deal", "id": 1}}, 422, "attach_to"),
    ("POST", "/api/v1/leads/1/reminders", None, {"due_at": "2030-01-01T09:00:00"}, 422, "due_at"),
    ("POST", "/api/v1/leads/1/status", None, {"status": "NOPE"}, 400, "unknown lead status"),
    ("POST", "/api/v1/deals/1/assign", None, {"rep_id": 0}, 422, "rep_id"),
    ("PATCH", "/api/v1/leads/abc", None, {}, 400, "id must be an integer"),
    ("POST", "/api/v1/leads", None, {"title": "x", "phones": ["1"] * 21}, 422, "phones"),
    ("POST", "/api/v1/leads", None, {"title": "x", "source": "S" * 31}, 422, "source"),
    ("POST", "/api/v1/contacts", None, {"first_name": "F" * 151}, 422, "first_name"),
    (
        "POST",
        "/api/v1/leads/1/reminders",
        None,
        {"due_at": "2030-01-01T09:00:00Z", "responsible_id": 99},
        404,
        "rep #99",
    ),
    ("POST", "/api/v1/leads/1/assign", None, {"rep_id": 99}, 404, "rep #99"),
    ("POST", "/api/v1/deals/1/assign", None, {"rep_id": 99}, 404, "rep #99"),
    ("POST", "/api/v1/leads", None, {"title": "x", "owner_id": 99}, 404, "rep #99"),
    ("PATCH", "/api/v1/contacts/1", None, {"company_id": 99}, 404, "company #99"),
    ("POST", "/api/v1/leads/1/convert", None, {"existing_deal_id": 99}, 404, "deal #99"),
    ("POST", "/api/v1/deals/1/stage", None, {"stage": "NOPE"}, 400, "no stage 'NOPE'"),
]


async def test_bad_bodies_are_4xx_with_a_reason(api: ApiClient) -> None:
    token = await writer(api)
    crm = api.service.crm
    # Record #1 of each kind, for the cases that get past the body to the CRM's checks.
    await crm.handmade.create_lead(LeadDraft("L"))
    contact = await crm.handmade.create_contact(ContactDraft(name="C"))
    await crm.handmade.create_deal(DealDraft("D", contact_id=contact.id))
    doc = (await api.get("/api/v1/openapi.json", token=None)).body
    for method, path, raw, body, status, detail in BAD_BODIES:
        reply = await api.send(method, path, body, token=token, raw=raw)
        assert reply.status == status, (method, path, body, reply.body)
        assert detail in reply.body["detail"], (method, path, body, reply.body)
        template = re.sub(r"/(1|abc)(/|$)", r"/{id}\2", path)
        conforms(doc, method.lower(), template, reply)


async def test_every_write_operation_answers_as_documented(api: ApiClient) -> None:
    """Each write operation with an empty body and on a missing record: a declared status
    with a declared body, never a 5xx."""
    token = await writer(api)
    doc = (await api.get("/api/v1/openapi.json", token=None)).body
    writes = [
        (method, path) for path, item in doc["paths"].items() for method in item if method != "get"
    ]
    assert len(writes) >= 20
    for method, path in writes:
        url = path.replace("{id}", "987654")
        for body in ({}, None, {"x": 1}):
            reply = await api.send(method.upper(), url, body, token=token)
            assert reply.status < 500, (method, url, reply.body)
            conforms(doc, method, path, reply)
        anonymous = await api.send(method.upper(), url, {}, token=None)
        assert anonymous.status == 401


def _extreme(doc: dict[str, Any], schema: dict[str, Any], big: bool) -> Any:
    """A value at one end of what `schema` allows: the longest strings, most items and
    largest amounts (big), or the shortest and smallest; ids are 1, records that exist."""
    schema = resolve(doc, schema)
    if "anyOf" in schema:
        schema = resolve(doc, next(s for s in schema["anyOf"] if s.get("type") != "null"))
    if "enum" in schema:
        return schema["enum"][-1 if big else 0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        # No WhatsApp numbers, pipelines or stages: text there is refused before the rest
        # reaches the database.
        skip = {"attach_to", "whatsapp", "pipeline", "stage"}
        return {k: _extreme(doc, v, big) for k, v in props.items() if k not in skip}
    if kind == "array":
        n = min(schema.get("maxItems", 2), 3) if big else 1  # under the size limit
        return [_extreme(doc, schema["items"], big)] * n
    if kind == "integer":
        return schema.get("minimum", 1)  # ids of records that exist (too large ones: 404)
    if kind == "boolean":
        return big
    if schema.get("format") == "date-time":
        return "9999-12-31T23:59:59Z" if big else "2030-01-01T00:00:00+01:00"
    if schema.get("pattern") == "^[A-Z]{3}$":
        return "EUR"
    if kind == "string" or "pattern" in schema:
        pattern = schema.get("pattern", "")
        if "\\d" in pattern or "number" in str(schema):  # a decimal amount
            return "9999999999999999.99" if big else "0"
        return "ü" * schema.get("maxLength", 200) if big else "x"
    return "1"


async def test_writes_at_the_ends_of_their_schemas_are_never_a_5xx(api: ApiClient) -> None:
    """Every write operation on existing records with every field at its largest and at its
    smallest value: the database's own limits (column lengths, numeric precision, foreign
    keys) never turn into a 5xx, on SQLite and PostgreSQL."""
    token = await writer(api)
    crm = api.service.crm
    await crm.reps.add("Rita")
    await crm.handmade.create_lead(LeadDraft("L"))
    contact = await crm.handmade.create_contact(ContactDraft(name="C"))
    await crm.handmade.create_company(CompanyDraft("Co"))
    await crm.handmade.create_deal(DealDraft("D", contact_id=contact.id))
    doc = (await api.get("/api/v1/openapi.json", token=None)).body
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "get":
                continue
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            for big in (True, False):
                body = _extreme(doc, schema, big)
                if not big:
                    body["force"] = True if "force" in body else body.get("force")
                    body = {k: v for k, v in body.items() if v is not None}
                reply = await api.send(method.upper(), path.replace("{id}", "1"), body, token=token)
                assert reply.status < 500, (method, path, body, reply.body)
                conforms(doc, method, path, reply)


async def test_a_key_whose_request_never_finished_is_free_after_a_while(api: ApiClient) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from crm.models import IdempotentRequest, utcnow

    token = await writer(api)
    crm = api.service.crm
    caller = await crm.tokens.identify(token)
    assert caller is not None
    # The first request's process died between taking the key and storing its answer.
    digest = hashlib.sha256(b"POST /api/v1/leads\n" + json.dumps({"title": "T"}).encode())
    assert await crm.idempotency.begin(caller.token_id, "lost", digest.hexdigest()) is None
    key = {"Idempotency-Key": "lost"}
    busy = await api.send("POST", "/api/v1/leads", {"title": "T"}, token=token, headers=key)
    assert busy.status == 409 and "still being answered" in busy.body["detail"]
    async with crm.db.transaction() as s:
        await s.execute(
            update(IdempotentRequest).values(created_at=utcnow() - timedelta(minutes=3))
        )
    retry = await api.send("POST", "/api/v1/leads", {"title": "T"}, token=token, headers=key)
    assert retry.status == 201, retry.body
