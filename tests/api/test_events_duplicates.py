"""The inbound event log with outcome and reason, and duplicate lookups by phone / email."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.views import (
    CardContext,
    contact_card,
    plain_text,
)
from crm.dto import SYSTEM
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
        assert hits == {
            "leads": [lead.id],
            "contacts": [contact.id],
            "companies": [],
            "hidden": 0,
        }, phone

    both = await api.ok(
        "/api/v1/duplicates",
        [("email", "MAX@example.com"), ("email", "office@max.example"), ("phone", "+4930999")],
    )
    assert both == {
        "leads": [],
        "contacts": sorted([contact.id, other.id]),
        "companies": [company.id],
        "hidden": 0,
    }
    nobody = await api.ok("/api/v1/duplicates", {"phone": "+1 212 555 0100"})
    assert nobody == {"leads": [], "contacts": [], "companies": [], "hidden": 0}

    neither = await api.get("/api/v1/duplicates")
    assert neither.status == 400 and "phone or email" in neither.body["detail"]


async def test_duplicates_give_the_ids_a_token_may_read_and_count_the_others(
    api: ApiClient,
) -> None:
    """A rep's token gets the ids of the holders it may open (own and unassigned records, as
    `GET /{type}/{id}` decides) and only a count of another rep's: that the number is someone
    else's customer, never which record. A supervisor's token gets every id."""
    crm = api.service.crm
    otto = await crm.reps.add("Otto Other", role="rep")
    rita = await crm.reps.add("Rita Rep", role="rep")
    sam = await crm.reps.add("Sam Super", role="supervisor")
    phone, email = "+49 30 7654321", "office@shared.example"
    ottos_contact = await crm.records.create_contact(
        ContactInput("Otto's client", phones=(phone,), responsible_id=otto.id)
    )
    ottos_lead = await crm.leads.create(
        LeadInput(title="Otto's", emails=(email,), responsible_id=otto.id)
    )
    ritas_lead = await crm.leads.create(
        LeadInput(title="Rita's", phones=("030 7654321",), responsible_id=rita.id)
    )
    queued = await crm.records.create_company("Nobody's yet", emails=(email,))
    _, ritas = await crm.tokens.create("rita", rep_id=rita.id)
    _, sams = await crm.tokens.create("sam", rep_id=sam.id)
    asked = [("phone", "030 7654321"), ("email", "OFFICE@shared.example")]

    as_rita = await api.get("/api/v1/duplicates", asked, token=ritas)
    assert as_rita.status == 200
    assert as_rita.body == {
        "leads": [ritas_lead.id],
        "contacts": [],
        "companies": [queued.id],
        "hidden": 2,  # Otto's contact and lead
    }
    as_sam = await api.get("/api/v1/duplicates", asked, token=sams)
    assert as_sam.body == {
        "leads": sorted([ottos_lead.id, ritas_lead.id]),
        "contacts": [ottos_contact.id],
        "companies": [queued.id],
        "hidden": 0,
    }
    # The same rights as the record endpoints: every id given opens, the hidden ones do not.
    for token, answer in ((ritas, as_rita.body), (sams, as_sam.body)):
        for plural in ("leads", "contacts", "companies"):
            for ident in answer[plural]:
                opened = await api.get(f"/api/v1/{plural}/{ident}", token=token)
                assert opened.status == 200, (plural, ident)
    for path in (f"/api/v1/leads/{ottos_lead.id}", f"/api/v1/contacts/{ottos_contact.id}"):
        assert (await api.get(path, token=ritas)).status == 403
    # Only another rep's records hold it: nothing but the count.
    await crm.leads.assign(ritas_lead.id, otto.id, SYSTEM)
    theirs = await api.get("/api/v1/duplicates", {"phone": "+4930 7654321"}, token=ritas)
    assert theirs.body == {"leads": [], "contacts": [], "companies": [], "hidden": 2}


async def test_duplicates_read_national_numbers_in_the_region_asked(api: ApiClient) -> None:
    crm = api.service.crm
    nora = await crm.records.create_contact(ContactInput("Nora", phones=("+1 212 555 0100",)))
    anton = await crm.records.create_contact(ContactInput("Anton", phones=("+43 1 5134567",)))
    gerda = await crm.records.create_contact(ContactInput("Gerda", phones=("+49 212 5550100",)))
    for phone, region, holder in (
        ("(212) 555-0100", "US", nora.id),
        ("(212) 555-0100", "us", nora.id),
        ("01 5134567", "AT", anton.id),
        ("(212) 555-0100", None, gerda.id),  # crm.default_region: DE
    ):
        params = {"phone": phone, **({"region": region} if region else {})}
        hits = await api.ok("/api/v1/duplicates", params)
        assert hits["contacts"] == [holder], (phone, region)
    for bad in ("XX", "EU", "AUT", "1", "a b"):
        reply = await api.get("/api/v1/duplicates", {"phone": "01 5134567", "region": bad})
        assert reply.status == 400 and reply.body["error"] == "bad_request", bad
        assert "region" in reply.body["detail"]


async def test_unassigned_numbers_are_nobodys_duplicate(api: ApiClient) -> None:
    crm = api.service.crm
    zero = await crm.records.create_contact(ContactInput("Zero", phones=("0000000",)))
    hits = await api.ok("/api/v1/duplicates", {"phone": "0000000"})
    assert hits == {"leads": [], "contacts": [], "companies": [], "hidden": 0}
    # The rep still sees the number as it was typed, flagged.
    [entry] = (await api.ok(f"/api/v1/contacts/{zero.id}"))["comms"]
    assert (entry["raw"], entry["value"], entry["label"]) == ("0000000", None, "invalid")


async def test_idn_emails_match_in_ascii_and_read_in_unicode(api: ApiClient) -> None:
    crm = api.service.crm
    jonas = await crm.records.create_contact(ContactInput("Jonas", emails=("Jonas@Müller.de",)))
    ivan = await crm.records.create_contact(ContactInput("Иван", emails=("иван@пример.рф",)))
    for email, holder in (
        ("jonas@xn--mller-kva.de", jonas.id),
        ("JONAS@MÜLLER.DE", jonas.id),
        ("иван@XN--E1AFMKFD.XN--P1AI", ivan.id),
    ):
        hits = await api.ok("/api/v1/duplicates", {"email": email})
        assert hits["contacts"] == [holder], email
    [entry] = (await api.ok(f"/api/v1/contacts/{jonas.id}"))["comms"]
    assert (entry["value"], entry["display"]) == ("jonas@xn--mller-kva.de", "jonas@müller.de")
    [entry] = (await api.ok(f"/api/v1/contacts/{ivan.id}"))["comms"]
    assert entry["display"] == "иван@пример.рф"
    # The rep's card in Telegram shows it as the customer wrote it, not as xn--.
    contact = await crm.records.get_contact(jonas.id, SYSTEM)
    card = plain_text(contact_card(contact, CardContext(), UTC, datetime.now(UTC)).text)
    assert "jonas@müller.de" in card and "xn--" not in card
    # A mail from the punycode spelling lands on the same person.
    mail = make_event(channel=Channel.EMAIL, emails=("jonas@XN--MLLER-KVA.DE",), subject="Hi")
    result = await api.service.process_now(mail)
    assert result.contact_id == jonas.id
    # IDNA 2008: straße.de is its own domain, not strasse.de.
    await crm.records.create_contact(ContactInput("Sven", emails=("info@strasse.de",)))
    hits = await api.ok("/api/v1/duplicates", {"email": "info@straße.de"})
    assert hits["contacts"] == []
