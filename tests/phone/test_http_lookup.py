"""GET /hooks/calls/lookup over HTTP: who is calling, for a screen-pop or call routing."""

from __future__ import annotations

import json

from crm.services.records import ContactInput
from tests.phone.conftest import LOOKUP_TOKEN, PhoneClient, StartPhone, add_rep


async def test_lookup_names_client_open_deal_and_its_rep(phone: PhoneClient) -> None:
    anna = await add_rep(phone, "Anna", extension="101", phone="+4917600000001")
    ben = await add_rep(phone, "Ben", extension="102")
    crm = phone.service.crm
    company = await crm.records.create_company("Muster GmbH", responsible_id=anna)
    contact = await crm.records.create_contact(
        ContactInput(
            name="Erika Muster",
            phones=("+49 30 123456",),
            company_id=company.id,
            responsible_id=anna,
        )
    )
    deal = await crm.deals.create("Offer 7", contact_id=contact.id, responsible_id=ben)
    reply = await phone.lookup("030 123456")
    assert reply.status == 200, reply.text
    assert reply.json() == {
        "number": "030 123456",
        "e164": "+4930123456",
        "found": True,
        "contact": {"id": contact.id, "name": "Erika Muster"},
        "company": {"id": company.id, "name": "Muster GmbH"},
        "lead": None,
        "deal": {"id": deal.id, "title": "Offer 7"},
        # The open deal's responsible takes the call, not the contact's.
        "responsible": {
            "id": ben,
            "name": "Ben",
            "active": True,
            "extension": "102",
            "phone": None,
        },
    }


async def test_lookup_of_a_caller_who_only_has_a_lead(phone: PhoneClient) -> None:
    rep = await add_rep(phone, "Anna", extension="101")
    await phone.answered_call("c-1", "+4930123456")
    await phone.settle()
    [lead] = await phone.leads()
    body = (await phone.lookup("+4930123456")).json()
    assert body["found"] and body["contact"] is None
    assert body["lead"] == {"id": lead.id, "title": "+4930123456 — incoming call"}
    assert body["responsible"]["id"] == rep and body["responsible"]["extension"] == "101"


async def test_lookup_unknown_withheld_and_bad_numbers(phone: PhoneClient) -> None:
    for number in ("+4940999999", "anonymous", "12"):
        reply = await phone.lookup(number)
        assert reply.status == 200 and reply.json()["found"] is False, number
    assert (await phone.lookup("+4940999999")).json()["e164"] == "+4940999999"
    assert (await phone.lookup("anonymous")).json()["e164"] is None
    assert (await phone.lookup("   ")).status == 400
    assert (await phone.lookup("1" * 65)).status == 400


async def test_lookup_needs_its_token(start_phone: StartPhone) -> None:
    phone = await start_phone()
    assert (await phone.lookup("+4930123456", token=None)).status == 401
    wrong = await phone.lookup("+4930123456", token="guess")
    assert wrong.status == 401 and wrong.json()["error"] == "unauthorized"
    off = await start_phone(lookup_token=None)
    reply = await off.lookup("+4930123456")
    assert reply.status == 404 and "phone.lookup_token" in reply.json()["detail"]


async def test_lookup_answers_change_with_the_record_and_the_cache_can_be_off(
    start_phone: StartPhone,
) -> None:
    phone = await start_phone()
    crm = phone.service.crm
    assert crm.callers.cache is not None  # on by default
    assert (await phone.lookup("+4930555000")).json()["found"] is False  # cached: nobody
    contact = await crm.records.create_contact(ContactInput(name="Ida", phones=("+4930555000",)))
    assert (await phone.lookup("+4930555000")).json()["contact"]["name"] == "Ida"
    await crm.records.update_contact(contact.id, ContactInput(name="Ida Neu"))
    assert (await phone.lookup("+4930555000")).json()["contact"]["name"] == "Ida Neu"
    hits = crm.callers.cache.hits
    assert (await phone.lookup("+4930555000")).json()["contact"]["name"] == "Ida Neu"
    assert crm.callers.cache.hits == hits + 1  # the same answer, from memory
    off = await start_phone(lookup_cache=False)
    assert off.service.crm.callers.cache is None
    assert (await off.lookup("+4930555000")).json()["contact"]["name"] == "Ida Neu"


async def test_lookup_reply_is_utf8_json_with_json_responses_content_type(
    phone: PhoneClient,
) -> None:
    """The reply is encoded by msgspec: the same JSON document and Content-Type as
    web.json_response gave, names outside ASCII as UTF-8."""
    crm = phone.service.crm
    contact = await crm.records.create_contact(
        ContactInput(name='Zoë "Ž" Łukasz \\ 北京', phones=("+4930123457",))
    )
    async with phone.http.get(
        f"{phone.base}/hooks/calls/lookup",
        params={"number": "+4930123457"},
        headers={"Authorization": f"Bearer {LOOKUP_TOKEN}"},
    ) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
        raw = await reply.read()
    assert json.loads(raw)["contact"] == {"id": contact.id, "name": 'Zoë "Ž" Łukasz \\ 北京'}
    assert "Zoë".encode() in raw and b"\\u" not in raw  # UTF-8, not \\u escapes
