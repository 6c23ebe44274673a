"""Leads, deals, contacts and companies over HTTP: paging, every filter, single records."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from crm.services.leads import LeadInput
from crm.services.records import ContactInput
from leadbot.api import api_component
from leadbot.settings import DEFAULT_PIPELINES
from tests.api.conftest import ApiClient


async def test_paging_reports_total_offset_limit_newest_first(api: ApiClient) -> None:
    crm = api.service.crm
    ids = [(await crm.leads.create(LeadInput(title=f"Lead {i}"))).id for i in range(5)]
    newest_first = ids[::-1]

    page = await api.ok("/api/v1/leads", {"limit": "2"})
    assert (page["total"], page["offset"], page["limit"]) == (5, 0, 2)
    assert [x["id"] for x in page["items"]] == newest_first[:2]
    assert await api.ids("/api/v1/leads", {"offset": "2", "limit": "2"}) == newest_first[2:4]
    assert await api.ids("/api/v1/leads", {"offset": "4", "limit": "2"}) == newest_first[4:]
    beyond = await api.ok("/api/v1/leads", {"offset": "10"})
    assert beyond["items"] == [] and beyond["total"] == 5
    default = await api.ok("/api/v1/leads")
    assert (default["offset"], default["limit"], len(default["items"])) == (0, 50, 5)


async def test_lead_filters(api: ApiClient) -> None:
    crm = api.service.crm
    rep = await crm.reps.add("Anna", role="rep")
    contact = await crm.records.create_contact(ContactInput(name="Known Client"))
    plain = await crm.leads.create(LeadInput(title="Plain", source="CALL"))
    mine = await crm.leads.create(LeadInput(title="Mine", source="EMAIL", responsible_id=rep.id))
    await asyncio.sleep(0.01)  # a clear gap between creation times on both backends
    between = datetime.now(UTC)
    await asyncio.sleep(0.01)
    repeat = await crm.leads.create(LeadInput(title="Repeat", contact_id=contact.id))
    junk = await crm.leads.create(LeadInput(title="Junk", source="CALL"))
    await crm.leads.junk(junk.id, "spam")
    await crm.leads.change_status(plain.id, "IN_PROCESS")

    cases: list[tuple[dict[str, str], list[int]]] = [
        ({"status": "IN_PROCESS"}, [plain.id]),
        ({"status": "JUNK"}, [junk.id]),
        ({"semantic": "failure"}, [junk.id]),
        ({"semantic": "process"}, [repeat.id, mine.id, plain.id]),
        ({"source": "CALL"}, [junk.id, plain.id]),
        ({"responsible_id": str(rep.id)}, [mine.id]),
        ({"unassigned": "true"}, [junk.id, repeat.id, plain.id]),
        ({"unassigned": "false"}, [junk.id, repeat.id, mine.id, plain.id]),
        ({"is_return_customer": "true"}, [repeat.id]),
        ({"is_return_customer": "false"}, [junk.id, mine.id, plain.id]),
        ({"created_from": between.isoformat()}, [junk.id, repeat.id]),
        ({"created_to": between.isoformat()}, [mine.id, plain.id]),
        ({"source": "CALL", "semantic": "process"}, [plain.id]),
    ]
    for params, expected in cases:
        page = await api.ok("/api/v1/leads", params)
        assert [x["id"] for x in page["items"]] == expected, params
        assert page["total"] == len(expected), params


async def test_get_lead_serializes_every_field(api: ApiClient) -> None:
    crm = api.service.crm
    lead = await crm.leads.create(
        LeadInput(title="Website order", name="Eva", phones=("+49 30 1234567",))
    )
    body = await api.ok(f"/api/v1/leads/{lead.id}")
    assert body["id"] == lead.id and body["title"] == "Website order"
    assert body["status"] == "NEW" and body["status_semantic"] == "process"
    assert body["comms"][0]["kind"] == "phone" and body["comms"][0]["value"] == "+49301234567"
    assert body["created_at"].endswith("Z")
    assert datetime.fromisoformat(body["created_at"]) == lead.created_at
    missing = await api.get("/api/v1/leads/999999")
    assert missing.status == 404 and missing.body["error"] == "not_found"
    assert "999999" in missing.body["detail"]


async def _deals_fixture(crm: Any) -> dict[str, int]:
    rep = await crm.reps.add("Ben", role="rep")
    contact = await crm.records.create_contact(ContactInput(name="Returning"))
    repeat_lead = await crm.leads.create(LeadInput(title="Again", contact_id=contact.id))
    converted = await crm.leads.convert(repeat_lead.id)
    assert converted.deal is not None and converted.deal.is_repeated_approach
    won = await crm.deals.create("Won", amount=Decimal("1234.50"), source="WEB")
    await crm.deals.win(won.id)
    service = await crm.deals.create("Service", pipeline="service", responsible_id=rep.id)
    nego = await crm.deals.create("Talks", stage="NEGOTIATION", source="WEB")
    return {
        "rep": rep.id,
        "repeated": converted.deal.id,
        "won": won.id,
        "service": service.id,
        "nego": nego.id,
    }


SERVICE_PIPELINE = {
    "id": "service",
    "name": "Service",
    "stages": [
        {"id": "OPEN", "name": "Open", "semantic": "process"},
        {"id": "DONE", "name": "Done", "semantic": "success"},
        {"id": "FAILED", "name": "Failed", "semantic": "failure"},
    ],
}


async def test_deal_filters_and_amounts(start_service: Any) -> None:
    pipelines = [p.model_dump() for p in DEFAULT_PIPELINES] + [SERVICE_PIPELINE]
    service = await start_service(components=[api_component], crm={"pipelines": pipelines})
    _, token = await service.crm.tokens.create("t")
    d = await _deals_fixture(service.crm)
    async with aiohttp.ClientSession() as http:
        api = ApiClient(f"http://127.0.0.1:{service.port}", token, http, service)
        everything = await api.ids("/api/v1/deals")
        assert everything == sorted(d[k] for k in ("repeated", "won", "service", "nego"))[::-1]
        cases: list[tuple[dict[str, str], list[int]]] = [
            ({"pipeline": "service"}, [d["service"]]),
            ({"pipeline": "nope"}, []),
            ({"status": "NEGOTIATION"}, [d["nego"]]),
            ({"semantic": "success"}, [d["won"]]),
            ({"source": "WEB"}, [d["nego"], d["won"]]),
            ({"responsible_id": str(d["rep"])}, [d["service"]]),
            ({"is_repeated_approach": "true"}, [d["repeated"]]),
            ({"pipeline": "sales", "unassigned": "true", "semantic": "process"},
             [d["nego"], d["repeated"]]),
        ]  # fmt: skip
        for params, expected in cases:
            assert await api.ids("/api/v1/deals", params) == expected, params
        won = await api.ok(f"/api/v1/deals/{d['won']}")
        assert won["amount"] == "1234.50" and won["stage_semantic"] == "success"
        assert won["closed_at"] is not None and won["closed_at"].endswith("Z")
        assert (await api.get("/api/v1/deals/424242")).status == 404


async def test_contacts_and_companies(api: ApiClient) -> None:
    crm = api.service.crm
    company = await crm.records.create_company("ACME GmbH", emails=("info@acme.example",))
    first = await crm.records.create_contact(
        ContactInput(first_name="Jan", last_name="Kurz", company_id=company.id)
    )
    second = await crm.records.create_contact(ContactInput(name="Ola", phones=("030 7654321",)))

    page = await api.ok("/api/v1/contacts", {"limit": "1"})
    assert page["total"] == 2 and [c["id"] for c in page["items"]] == [second.id]
    assert await api.ids("/api/v1/contacts", {"offset": "1"}) == [first.id]
    jan = await api.ok(f"/api/v1/contacts/{first.id}")
    assert jan["name"] == "Jan Kurz" and jan["company_id"] == company.id
    assert jan["company_title"] == "ACME GmbH"

    companies = await api.ok("/api/v1/companies")
    assert companies["total"] == 1 and companies["items"][0]["title"] == "ACME GmbH"
    acme = await api.ok(f"/api/v1/companies/{company.id}")
    assert acme["contact_ids"] == [first.id]
    assert acme["comms"][0]["value"] == "info@acme.example"
    for path in ("/api/v1/contacts/777", "/api/v1/companies/777"):
        assert (await api.get(path)).status == 404


@pytest.mark.parametrize("kind", ["leads", "deals", "contacts", "companies"])
async def test_activities_and_timeline_of_a_record(api: ApiClient, kind: str) -> None:
    crm = api.service.crm
    owner_type = {"leads": "lead", "deals": "deal", "contacts": "contact", "companies": "company"}
    if kind == "leads":
        record_id = (await crm.leads.create(LeadInput(title="L"))).id
    elif kind == "deals":
        record_id = (await crm.deals.create("D")).id
    elif kind == "contacts":
        record_id = (await crm.records.create_contact(ContactInput(name="C"))).id
    else:
        record_id = (await crm.records.create_company("Co")).id
    comments = [
        await crm.activities.comment(owner_type[kind], record_id, f"note {i}") for i in range(3)
    ]
    page = await api.ok(f"/api/v1/{kind}/{record_id}/activities", {"limit": "2"})
    assert page["total"] == 3
    assert [a["id"] for a in page["items"]] == [c.id for c in comments[:2]]  # oldest first
    assert page["items"][0]["bindings"] == [[owner_type[kind], record_id]]
    rest = await api.ok(f"/api/v1/{kind}/{record_id}/activities", {"offset": "2"})
    assert [a["id"] for a in rest["items"]] == [comments[2].id]

    timeline = await api.ok(f"/api/v1/{kind}/{record_id}/timeline")
    assert timeline["items"][0]["action"] == "created"
    history = await crm.activities.timeline(owner_type[kind], record_id)
    assert timeline["total"] == len(history)
    last = await api.ok(
        f"/api/v1/{kind}/{record_id}/timeline", {"offset": str(len(history) - 1), "limit": "1"}
    )
    assert [t["id"] for t in last["items"]] == [history[-1].id]
    assert last["total"] == len(history)
    for suffix in ("activities", "timeline"):
        missing = await api.get(f"/api/v1/{kind}/999999/{suffix}")
        assert missing.status == 404 and missing.body["error"] == "not_found"
