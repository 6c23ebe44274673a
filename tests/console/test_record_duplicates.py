"""A record page's Edit (add phones / emails) checks duplicates as the console's create does, in
a real Chromium: a known number is refused with links to its holders and saves only with "Save
anyway"; a new number and the record's own number save at once; with the script the warning
shows as one types, without it the form round trip does the same."""

from __future__ import annotations

from typing import Any

import aiohttp
from playwright.async_api import Browser, Page

from crm.dto import RepView
from crm.services.leads import LeadInput
from crm.services.records import ContactInput
from tests.console.conftest import Shot, SignIn, console_url
from tests.console.test_records import RitaConsole, rita_console

__all__ = ["rita_console"]

KNOWN = "030 1234567"  # Anna Meyer's, as a contact and on her lead


async def _anna(service: Any) -> tuple[int, int]:
    """Anna Meyer as a contact and her lead, both holding KNOWN: (contact id, lead id)."""
    anna = await service.crm.records.create_contact(
        ContactInput(first_name="Anna", last_name="Meyer", phones=(KNOWN,))
    )
    lead = await service.crm.leads.create(
        LeadInput("Anna's inquiry", phones=(KNOWN,), contact_id=anna.id)
    )
    return anna.id, lead.id


async def _type(page: Page, name: str, value: str) -> list[Any]:
    """Type into the Edit form's field as a person does; the hits the page's check answered."""
    await page.evaluate("document.querySelector('form.edit').closest('details').open = true")
    async with page.expect_response(lambda r: "/app/new/check?" in r.url) as answer:
        await page.locator(f"form.edit [name={name}]").press_sequentially(value)
    hits: list[Any] = (await (await answer.value).json())["hits"]
    return hits


async def _phones(service: Any, kind: str, ident: int) -> list[str]:
    crm = service.crm
    get = {"lead": crm.leads.get, "contact": crm.records.get_contact}
    record = await get.get(kind, crm.records.get_company)(ident)
    return sorted(c.value for c in record.comms if c.kind == "phone")


async def _rita_on_her_lead(rita_console: RitaConsole, page: Page, sign_in: SignIn) -> Any:
    """A lead of Rita's ("Call from Dora"), its page open in Rita's session."""
    service, rita = rita_console
    lead = await service.crm.leads.create(LeadInput("Call from Dora", responsible_id=rita.id))
    await sign_in(page, service, rita)
    await page.goto(f"{console_url(service)}/app/lead/{lead.id}")
    return lead


async def test_a_known_phone_warns_with_links_and_saves_only_anyway(
    rita_console: RitaConsole, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    service, _ = rita_console
    anna, anna_lead = await _anna(service)
    page = browser_page
    lead = await _rita_on_her_lead(rita_console, page, sign_in)

    # As one types: the holders, linked, before any save.
    hits = await _type(page, "phones", "+49 30 1234567")
    assert {(h["owner_type"], h["owner_id"]) for h in hits} == {
        ("contact", anna),
        ("lead", anna_lead),
    }
    live = page.locator("form.edit .dup-warning")
    await live.wait_for()
    text = await live.inner_text()
    assert f"+49301234567 is already on contact #{anna} Anna Meyer — lead #{anna_lead}" in text
    # Save: refused with the same warning, the form as typed, nothing saved.
    await page.click("form.edit button:text-is('Save')")
    warning = page.locator("form.edit .dup-warning")
    assert "Nothing was saved." in await warning.inner_text()
    links = await warning.locator("a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert links == [f"/app/contact/{anna}", f"/app/lead/{anna_lead}"]
    assert await page.input_value("form.edit [name=phones]") == "+49 30 1234567"
    assert await _phones(service, "lead", lead.id) == []
    await shot(page, "record-edit-duplicate")
    # Save anyway: saved, as the service's force.
    await page.click("form.edit button:has-text('Save anyway')")
    assert "Saved." in await page.inner_text("#flashes")
    assert await page.get_attribute("a[href^='tel:']", "href") == "tel:+49301234567"
    assert await _phones(service, "lead", lead.id) == ["+49301234567"]

    # A new number: no warning, saved straight away.
    assert await _type(page, "phones", "030 7654321") == []
    assert await page.locator("form.edit .dup-warning").count() == 0
    await page.click("form.edit button:text-is('Save')")
    assert "Saved." in await page.inner_text("#flashes")
    assert await _phones(service, "lead", lead.id) == ["+49301234567", "+49307654321"]


async def test_the_records_own_number_is_no_duplicate(
    rita_console: RitaConsole, browser_page: Page, sign_in: SignIn
) -> None:
    """Anna's contact page: her own number (also on the lead she came from) is no hit."""
    service, rita = rita_console
    anna, _ = await _anna(service)
    await service.crm.records.assign_contact(anna, rita.id)
    page = browser_page
    await sign_in(page, service, rita)
    await page.goto(f"{console_url(service)}/app/contact/{anna}")
    assert await _type(page, "phones", "+49 30 1234567") == []
    await page.fill("form.edit [name=first_name]", "Anne")
    await page.click("form.edit button:text-is('Save')")
    assert "Saved." in await page.inner_text("#flashes")
    assert "Anne Meyer" in await page.inner_text("h1")
    assert await _phones(service, "contact", anna) == ["+49301234567"]


async def _no_script_page(browser: Browser, service: Any, rep: RepView, sign_in: SignIn) -> Page:
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await sign_in(page, service, rep)
    return page


async def test_without_the_script_the_round_trip_warns_and_saves_anyway(
    rita_console: RitaConsole, browser: Browser, sign_in: SignIn
) -> None:
    service, rita = rita_console
    anna, _ = await _anna(service)
    company = await service.crm.records.create_company("Klein GmbH", responsible_id=rita.id)
    page = await _no_script_page(browser, service, rita, sign_in)
    await page.goto(f"{console_url(service)}/app/company/{company.id}")
    edit = page.locator("form.edit")
    await page.click("summary:text-is('Edit')")
    await edit.locator("[name=title]").fill("Klein & Meyer GmbH")
    await edit.locator("[name=phones]").fill(f"{KNOWN}, 030 7654321")
    await edit.locator("button:text-is('Save')").click()
    warning = edit.locator(".dup-warning")
    assert f"is already on contact #{anna} Anna Meyer" in await warning.inner_text()
    assert await edit.locator("[name=title]").input_value() == "Klein & Meyer GmbH"
    assert (await service.crm.records.get_company(company.id)).title == "Klein GmbH"
    assert await _phones(service, "company", company.id) == []
    await warning.locator("button:has-text('Save anyway')").click()
    assert "Saved." in await page.inner_text("#flashes")
    assert (await service.crm.records.get_company(company.id)).title == "Klein & Meyer GmbH"
    assert await _phones(service, "company", company.id) == ["+49301234567", "+49307654321"]
    await page.context.close()


async def test_save_anyway_needs_the_csrf_token_and_bad_checks_are_refused(
    rita_console: RitaConsole,
) -> None:
    service, rita = rita_console
    crm = service.crm
    await _anna(service)
    lead = await crm.leads.create(LeadInput("Quote", responsible_id=rita.id))
    signed = await crm.web_sessions.redeem(await crm.web_sessions.create_link(rita.id))
    base = console_url(service)
    form = {"phones": KNOWN, "force": "1"}
    async with aiohttp.ClientSession(cookies={"leadbot_session": signed.session_token}) as http:
        async with http.post(f"{base}/app/lead/{lead.id}/edit", data=form) as r:
            assert r.status == 403 and "security token" in await r.text()
        edit = {"phones": KNOWN, "_csrf": signed.csrf_token}
        async with http.post(f"{base}/app/lead/{lead.id}/edit", data=edit) as r:
            assert r.status == 409 and "is already on" in await r.text()
        assert await _phones(service, "lead", lead.id) == []
        headers = {"X-CSRF-Token": signed.csrf_token}
        for bad in ("deal:1", "lead:x", "lead:"):
            query = {"phone": KNOWN, "record": bad}
            async with http.get(f"{base}/app/new/check", params=query, headers=headers) as r:
                assert r.status == 422 and "record must be" in (await r.json())["detail"]


async def _ottos_anna(service: Any) -> tuple[int, RepView]:
    """Anna Meyer as a contact of another rep, Otto, holding KNOWN: (contact id, Otto)."""
    otto = await service.crm.reps.add("Otto Other")
    anna = await service.crm.records.create_contact(
        ContactInput(first_name="Anna", last_name="Meyer", phones=(KNOWN,), responsible_id=otto.id)
    )
    return anna.id, otto


async def test_another_reps_record_is_named_by_its_kind_and_rep_only(
    rita_console: RitaConsole,
) -> None:
    """Over HTTP, as the pages and their scripts ask: Rita learns that a contact of Otto's holds
    the number, not which (no id, title or link); a supervisor sees the holder as before."""
    service, rita = rita_console
    crm = service.crm
    anna, _ = await _ottos_anna(service)
    sam = await crm.reps.add("Sam Supervisor", role="supervisor")
    lead = await crm.leads.create(LeadInput("Quote", responsible_id=rita.id))
    base = console_url(service)
    for rep, hidden in ((rita, True), (sam, False)):
        signed = await crm.web_sessions.redeem(await crm.web_sessions.create_link(rep.id))
        cookies = {"leadbot_session": signed.session_token}
        headers = {"X-CSRF-Token": signed.csrf_token}
        async with aiohttp.ClientSession(cookies=cookies) as http:
            query = {"phone": KNOWN, "record": f"lead:{lead.id}"}
            async with http.get(f"{base}/app/new/check", params=query, headers=headers) as r:
                assert r.status == 200
                (hit,) = (await r.json())["hits"]
            edit = {"phones": KNOWN, "_csrf": signed.csrf_token}
            async with http.post(f"{base}/app/lead/{lead.id}/edit", data=edit) as r:
                assert r.status == 409
                edit_page = await r.text()
            new = {"first_name": "Anne", "phones": KNOWN, "action": "save"}
            async with http.post(
                f"{base}/app/new/contact", data=new | {"_csrf": signed.csrf_token}
            ) as r:
                assert r.status == 409
                create_page = await r.text()
        assert hit["owner_type"] == "contact" and hit["owner_rep"] == "Otto Other"
        if hidden:
            assert hit["hidden"] is True and hit["url"] is None
            assert hit["owner_id"] is None and hit["owner_title"] is None
            assert hit["holder"] == "a contact of another rep (Otto Other)"
            assert hit["message"] == (
                "phone +49301234567 belongs to a contact of another rep (Otto Other)"
            )
            said = " ".join(edit_page.split())
            assert "+49301234567 is already on a contact of another rep (Otto Other)" in said
            assert "belongs to a contact of another rep (Otto Other)" in create_page
            for page in (edit_page, create_page):
                assert "Anna" not in page and f"/app/contact/{anna}" not in page
                assert f"contact #{anna}" not in page and "attach:contact" not in page
        else:
            assert hit["hidden"] is False and hit["url"] == f"/app/contact/{anna}"
            assert hit["owner_id"] == anna and hit["owner_title"] == "Anna Meyer"
            assert f'<a href="/app/contact/{anna}">contact #{anna} Anna Meyer</a>' in edit_page
            assert f"belongs to contact #{anna} (Anna Meyer)" in create_page
            assert f'value="attach:contact:{anna}"' in create_page
    assert await _phones(service, "lead", lead.id) == []


async def test_the_scripts_show_another_reps_record_without_a_link_or_attach(
    rita_console: RitaConsole, browser_page: Page, sign_in: SignIn
) -> None:
    service, _ = rita_console
    anna, _ = await _ottos_anna(service)
    page = browser_page
    await _rita_on_her_lead(rita_console, page, sign_in)
    (hit,) = await _type(page, "phones", "+49 30 1234567")
    assert hit["hidden"] is True
    live = page.locator("form.edit .dup-warning")
    await live.wait_for()
    assert "+49301234567 is already on a contact of another rep (Otto Other)" in (
        await live.inner_text()
    )
    assert await live.locator("a").count() == 0
    # The create form's check, as the field is left: the service's sentence, no attach.
    await page.goto(f"{console_url(service)}/app/new/contact")
    async with page.expect_response(lambda r: "/app/new/check?" in r.url):
        await page.fill("input[name=phones]", KNOWN)
        await page.locator("input[name=phones]").blur()
    line = page.locator(".check-hit")
    await line.wait_for()
    assert await line.inner_text() == (
        "phone +49301234567 belongs to a contact of another rep (Otto Other)"
    )
    assert await line.locator("a, button").count() == 0
    assert "Anna" not in await page.content() and f"#{anna}" not in await page.content()
