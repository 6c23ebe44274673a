"""The inbound event log with outcome and reason, and duplicate lookups by phone / email."""

from __future__ import annotations

from crm.services.leads import LeadInput
from crm.services.records import ContactInput
from matching.event import Channel
from tests.api.conftest import ApiClient
from tests.conftest import make_event


async def test_events_with_outcome_reason_and_filters(api: ApiClient) -> None:
    service = api.service
    first = await service.process_now(make_event(phones=("+49 30 5550001",)))
    again = await service.process_now(make_event(phones=("030 5550001",)))
    mail = await service.process_now(
        make_event(channel=Channel.EMAIL, emails=("kim@example.org",), subject="Offer?")
    )
    assert first.outcome == "new_lead" and mail.outcome == "new_lead"
    assert again.outcome != "new_lead"  # the same caller again lands on the open lead

    page = await api.ok("/api/v1/events")
    assert page["total"] == 3
    assert [e["id"] for e in page["items"]] == [
        mail.event_log_id,
        again.event_log_id,
        first.event_log_id,
    ]
    newest = page["items"][0]
    assert newest["channel"] == "email" and newest["outcome"] == "new_lead"
    assert newest["reason"] == mail.reason and newest["reason"]
    assert newest["lead_id"] == mail.lead_id is not None

    calls = await api.ok("/api/v1/events", {"channel": "call"})
    assert [e["id"] for e in calls["items"]] == [again.event_log_id, first.event_log_id]
    assert await api.ids("/api/v1/events", {"outcome": "new_lead"}) == [
        mail.event_log_id,
        first.event_log_id,
    ]
    assert await api.ids("/api/v1/events", {"outcome": again.outcome, "channel": "email"}) == []
    paged = await api.ok("/api/v1/events", {"offset": "1", "limit": "1"})
    assert [e["id"] for e in paged["items"]] == [again.event_log_id] and paged["total"] == 3


async def test_duplicates_find_holders_whatever_the_phone_format(api: ApiClient) -> None:
    crm = api.service.crm
    contact = await crm.records.create_contact(
        ContactInput(name="Max", phones=("+49 30 1234567",), emails=("max@example.com",))
    )
    company = await crm.records.create_company("Max GmbH", emails=("office@max.example",))
    lead = await crm.leads.create(LeadInput(title="Call", phones=("030/123 45 67",)))
    other = await crm.records.create_contact(ContactInput(name="Other", phones=("+4930999",)))

    for phone in ("030 1234567", "+49 30 1234567", "0049 (30) 123-4567", "+49301234567"):
        hits = await api.ok("/api/v1/duplicates", {"phone": phone})
        assert hits == {"leads": [lead.id], "contacts": [contact.id], "companies": []}, phone

    both = await api.ok(
        "/api/v1/duplicates",
        [("email", "MAX@example.com"), ("email", "office@max.example"), ("phone", "+4930999")],
    )
    assert both == {
        "leads": [],
        "contacts": sorted([contact.id, other.id]),
        "companies": [company.id],
    }
    nobody = await api.ok("/api/v1/duplicates", {"phone": "+1 212 555 0100"})
    assert nobody == {"leads": [], "contacts": [], "companies": []}

    neither = await api.get("/api/v1/duplicates")
    assert neither.status == 400 and "phone or email" in neither.body["detail"]
