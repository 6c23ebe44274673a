"""The three Bitrix24 rule scenarios that only hand-made records can set up (issue 15), set up
in the console as a user would, each followed by an inbound call through the real signed
webhook and intake, ending as docs/decisions.md says:

1. a hand-made deal on a contact: the contact's call is attached to the open deal;
2. a company with two contacts, nothing open: the second contact's call opens a repeat lead
   linked to that contact and to the company;
3. a contact typed in (saved anyway) whose phone is on an open lead: the next call is attached
   to the open lead, which is then linked to the contact, not a new repeat lead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page

from channels.phone.component import phone_component
from crm.dto import SYSTEM
from crm.services.listing import ListFilter
from tests.console.conftest import SignIn, console_url
from tests.console.test_create import (
    create_company,
    fill_contact,
    open_new,
    pick,
    saved_id,
    signed_in,
)
from tests.phone.conftest import PHONE_SETTINGS, PhoneClient


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _start(console: Any, http: aiohttp.ClientSession) -> tuple[Any, PhoneClient]:
    service = await console(extra=[phone_component], phone=PHONE_SETTINGS)
    return service, PhoneClient(service, http)


async def _history_kinds(service: Any, kind: str, record_id: int) -> list[str]:
    page = await service.crm.history.page(kind, record_id, SYSTEM)
    return [item.kind for item in page.items]


async def _my_work(page: Page, service: Any) -> str:
    await page.goto(f"{console_url(service)}/app/")
    return await page.inner_text("main")


async def test_a_hand_made_deal_on_a_contact_takes_the_contacts_call(
    console: Any, http: aiohttp.ClientSession, browser_page: Page, sign_in: SignIn
) -> None:
    service, phone = await _start(console, http)
    page = browser_page
    await signed_in(service, page, sign_in)
    await fill_contact(page, "Clara", "Berg", "030 7770001")
    await page.click("button:has-text('Save contact')")
    contact_id = await saved_id(page, service, "contact")
    await open_new(page, "deal")
    await page.fill("input[name=title]", "Kitchen for Clara")
    await pick(page, "contact", "Clara", "Clara Berg")
    await page.click("button:has-text('Save deal')")
    deal_id = await saved_id(page, service, "deal")

    await phone.missed_call("s1-call", "+49307770001")
    await phone.settle()

    text = await _my_work(page, service)
    assert "Kitchen for Clara" in text and "No open leads." in text  # no lead was opened
    assert "call" in await _history_kinds(service, "deal", deal_id)
    deal = await service.crm.deals.get(deal_id)
    assert deal.contact_id == contact_id and deal.is_open


async def test_a_company_with_two_contacts_is_one_client_for_the_second_contacts_call(
    console: Any, http: aiohttp.ClientSession, browser_page: Page, sign_in: SignIn
) -> None:
    service, phone = await _start(console, http)
    page = browser_page
    await signed_in(service, page, sign_in, "Sam Supervisor", "supervisor")
    await open_new(page, "company")
    await create_company(
        page, "Berg & Vogel OHG", [("Anna Berg", "030 7770011"), ("Bernd Vogel", "030 7770012")]
    )
    await page.click("button:has-text('Save company')")
    company_id = await saved_id(page, service, "company")
    company = await service.crm.records.get_company(company_id)
    bernd = company.contact_ids[1]

    await phone.missed_call("s2-call", "+49307770012")
    await phone.settle()

    leads, total = await service.crm.leads.page(ListFilter())
    assert total == 1
    [lead] = leads
    assert (lead.contact_id, lead.company_id) == (bernd, company_id)
    assert lead.is_return_customer
    text = await _my_work(page, service)
    assert f"#{lead.id} {lead.title}" in text and "repeat" in text


async def test_a_contact_whose_phone_is_on_an_open_lead_leaves_the_next_call_on_that_lead(
    console: Any, http: aiohttp.ClientSession, browser_page: Page, sign_in: SignIn
) -> None:
    service, phone = await _start(console, http)
    sam = await service.crm.reps.add("Sam Supervisor", role="supervisor")
    await phone.missed_call("s3-first", "+49307770021")
    await phone.settle()
    [first] = (await service.crm.leads.page(ListFilter()))[0]

    page = browser_page
    await sign_in(page, service, sam)
    await fill_contact(page, "Dora", "", "030 7770021")
    await page.click("button:has-text('Save contact')")
    assert f"belongs to lead #{first.id}" in await page.inner_text(".dup-warning")
    await page.click("button:has-text('Save anyway')")
    contact_id = await saved_id(page, service, "contact")

    await phone.missed_call("s3-second", "+49307770021")
    await phone.settle()

    _, total = await service.crm.leads.page(ListFilter())
    assert total == 1  # not a new repeat lead, as Bitrix24 would open
    lead = await service.crm.leads.get(first.id)
    assert lead.contact_id == contact_id and lead.is_open
    assert (await _history_kinds(service, "lead", first.id)).count("call") == 2
    text = await _my_work(page, service)
    assert "Open leads 1" in text and f"#{first.id} " in text
