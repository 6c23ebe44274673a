"""Numbers as callers dial them, over real HTTP: every line reads national numbers in its own
region, a possible but unassigned number never matches anybody, an extension stays on the
phone entry and shows on the card. The CRM's region is DE throughout; samples from US, AT, CH,
GB."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from bot.views import (
    CardContext,
    Viewer,
    contact_card,
    lead_card,
    plain_text,
)
from channels.phone.settings import PhoneSettings
from crm.config import DEFAULT_STATUSES
from crm.dto import SYSTEM, LeadView
from crm.services.records import ContactInput
from tests.phone.conftest import PhoneClient, StartPhone, add_rep

NEW_YORK_LINE = "+12125550000"
VIENNA_LINE = "+4315130000"
ZURICH_LINE = "+41445550000"


async def _contacts(phone: PhoneClient) -> dict[str, int]:
    """Namesakes of one national spelling in different countries."""
    crm = phone.service.crm
    people = {
        "Gerda (Solingen)": "+49 212 5550100",
        "Nora (New York)": "+1 212-555-0100",
        "Anton (Vienna)": "+43 1 5134567",
        "Urs (Zurich)": "+41 44 555 12 34",
        "Ute (Oldenburg)": "+49 4455 51234",
    }
    out = {}
    for name, number in people.items():
        out[name] = (await crm.records.create_contact(ContactInput(name, phones=(number,)))).id
    return out


def _lead_card(view: LeadView) -> str:
    """The lead's card as its rep reads it in Telegram (text without markup)."""
    card = lead_card(
        view, CardContext(), Viewer(1, "rep"), DEFAULT_STATUSES, UTC, datetime.now(UTC)
    )
    return plain_text(card.text)


async def _call_holders(phone: PhoneClient) -> list[set[tuple[str, int]]]:
    crm = phone.service.crm
    return [set((await crm.activities.get(a.id)).bindings) for a in await phone.activities("call")]


async def test_each_line_reads_callers_in_its_own_country(phone: PhoneClient) -> None:
    people = await _contacts(phone)
    # The line as the generic webhook's line field, then only as the number called (`to`).
    await phone.missed_call("us-1", "(212) 555-0100", line=NEW_YORK_LINE)
    await phone.missed_call("at-1", "01 5134567", line=VIENNA_LINE)
    await phone.missed_call("ch-1", "044 555 12 34", line=None, to=ZURICH_LINE)
    # A German line still reads German numbers as German ones.
    await phone.missed_call("de-1", "0212 5550100")
    await phone.settle()
    holders = await _call_holders(phone)
    assert [{h for h in found if h[0] == "contact"} for found in holders] == [
        {("contact", people["Nora (New York)"])},
        {("contact", people["Anton (Vienna)"])},
        {("contact", people["Urs (Zurich)"])},
        {("contact", people["Gerda (Solingen)"])},
    ]
    # What the rep reads on the new repeat lead: the client, and the caller's number in E.164,
    # the right one.
    titles = sorted(lead.title for lead in await phone.leads())
    assert titles == sorted(
        f"{who}: {n} — incoming call"
        for who, n in (
            ("Nora (New York)", "+12125550100"),
            ("Anton (Vienna)", "+4315134567"),
            ("Urs (Zurich)", "+41445551234"),
            ("Gerda (Solingen)", "+492125550100"),
        )
    )


async def test_a_configured_line_region_wins_and_names_lines_without_a_number(
    start_phone: StartPhone,
) -> None:
    phone = await start_phone(line_regions={"vienna-desk": "at", "+41 44 555 00 00": "DE"})
    people = await _contacts(phone)
    rep = await add_rep(phone, "Anna", extension="101")
    # Bitrix24 names the line by an id of the PBX: only the configuration knows its country.
    reply = await phone.bitrix(
        "telephony.externalcall.register",
        json_body={
            "USER_ID": rep,
            "PHONE_NUMBER": "01 5134567",
            "TYPE": 2,
            "LINE_NUMBER": "vienna-desk",
        },
    )
    result = reply.json()["result"]
    assert (result["CRM_ENTITY_TYPE"], result["CRM_ENTITY_ID"]) == (
        "CONTACT",
        people["Anton (Vienna)"],
    )
    # A Swiss number configured as a German line (a German office's Swiss DID, say).
    await phone.missed_call("ch-as-de", "044 555 12 34", line="+41445550000")
    await phone.settle()
    assert ("contact", people["Ute (Oldenburg)"]) in (await _call_holders(phone))[-1]


async def test_twilio_puts_a_caller_through_by_the_line_they_called(
    start_phone: StartPhone,
) -> None:
    phone = await start_phone(twilio_dial_responsible=True)
    crm = phone.service.crm
    vienna_rep = await add_rep(phone, "Lena", phone="+43 660 1234567")
    await add_rep(phone, "Dieter", phone="+49 171 7654321")
    await crm.records.create_contact(
        ContactInput("Anton", phones=("+43 1 5134567",), responsible_id=vienna_rep)
    )
    form = {
        "CallSid": "CA" + "1" * 32,
        "AccountSid": "AC" + "0" * 32,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": "01 5134567",  # a carrier passing on the national form
        "To": VIENNA_LINE,
    }
    reply = await phone.twilio("/hooks/twilio/voice", form)
    assert reply.status == 200, reply.text
    assert "<Number>+436601234567</Number>" in reply.text.replace(" ", "")


async def test_lookup_takes_a_region_or_a_line(phone: PhoneClient) -> None:
    people = await _contacts(phone)

    async def ask(**params: str) -> Any:
        reply = await phone._send(
            "GET",
            "/hooks/calls/lookup",
            params=params,
            headers={"Authorization": "Bearer lookup-secret"},
        )
        return reply.status, reply.json()

    status, body = await ask(number="(212) 555-0100", region="US")
    assert status == 200 and body["e164"] == "+12125550100"
    assert body["contact"]["id"] == people["Nora (New York)"]
    _, body = await ask(number="01 5134567", region="at")
    assert body["contact"]["id"] == people["Anton (Vienna)"]
    _, body = await ask(number="044 555 12 34", line=ZURICH_LINE)
    assert body["contact"]["id"] == people["Urs (Zurich)"]
    _, body = await ask(number="(212) 555-0100")  # the channel's region: DE
    assert body["contact"]["id"] == people["Gerda (Solingen)"]
    for bad in ("XX", "EU", "Austria", "1"):
        status, body = await ask(number="01 5134567", region=bad)
        assert status == 400 and body["error"] == "bad_request" and "region" in body["detail"]


def test_a_line_region_must_be_a_country() -> None:
    with pytest.raises(ValidationError, match=r"unknown region.*XX"):
        PhoneSettings(line_regions={"+4315130000": "XX"})
    assert PhoneSettings(line_regions={" line-7 ": "at"}).line_regions == {"line-7": "AT"}


async def test_unassigned_numbers_are_kept_but_never_glue_callers_together(
    phone: PhoneClient,
) -> None:
    crm = phone.service.crm
    await crm.records.create_contact(ContactInput("Zero Hero", phones=("0000000",)))
    for call_id, number in (("z-1", "0000000"), ("z-2", "0000000"), ("z-3", "000 0000")):
        await phone.missed_call(call_id, number)
    await phone.settle()
    leads = await phone.leads()
    assert len(leads) == 3  # three callers, not one person: nobody's number is +49000000
    for lead, raw in zip(leads, ("0000000", "0000000", "000 0000"), strict=True):
        view = await crm.leads.get(lead.id, SYSTEM)
        assert view.contact_id is None
        [entry] = [c for c in view.comms if c.kind == "phone"]
        # Kept for the rep to read and flagged, never a match key.
        assert (entry.raw, entry.value, entry.label) == (raw, None, "invalid")
        card = _lead_card(view)
        assert raw in card
    [call] = (await phone.activities("call"))[:1]
    assert call.meta is not None and call.meta["number_parsed"] is False
    lookup = (await phone.lookup("0000000")).json()
    assert lookup["found"] is False and lookup["e164"] is None


async def test_an_extension_stays_on_the_phone_entry_and_the_card(phone: PhoneClient) -> None:
    crm = phone.service.crm
    erika = await crm.records.create_contact(ContactInput("Erika", phones=("+49 30 1234567",)))
    await phone.missed_call("x-1", "+49 30 1234567 ext 12")
    await phone.missed_call("x-2", "01 5134567 x7", line=VIENNA_LINE)
    await phone.missed_call("x-3", "+7 495 123-45-67 доб. 305")
    await phone.settle()
    # A known number, now called from an extension: her entry gets it.
    contact = await crm.records.get_contact(erika.id, SYSTEM)
    [entry] = contact.comms
    assert (entry.value, entry.extension) == ("+49301234567", "12")
    card = plain_text(contact_card(contact, CardContext(), UTC, datetime.now(UTC)).text)
    assert "+49 30 1234567 ext. 12" in card
    # New callers: the lead's entry keeps the number as dialled, extension included.
    by_number = {}
    for lead in await phone.leads():
        view = await crm.leads.get(lead.id, SYSTEM)
        for c in view.comms:
            if c.kind == "phone" and c.value != "+49301234567":
                by_number[c.value] = (c.extension, c.display, view)
    assert {k: v[:2] for k, v in by_number.items()} == {
        "+4315134567": ("7", "01 5134567 x7"),
        "+74951234567": ("305", "+7 495 123-45-67 доб. 305"),
    }
    view = by_number["+4315134567"][2]
    assert "01 5134567 x7" in _lead_card(view)
    # A later call without the extension does not take it away.
    await phone.missed_call("x-4", "+49 30 1234567")
    await phone.settle()
    [entry] = (await crm.records.get_contact(erika.id, SYSTEM)).comms
    assert entry.extension == "12"
