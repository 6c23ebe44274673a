"""Records typed in by hand in the console (/app/new/*), in a real Chromium: a company with two
contacts and a deal on it, the duplicate warning as a phone field is left and on submit, the
same forms without JavaScript, and refusals shown with the service's reason."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from playwright.async_api import Browser, Page

from crm.dto import RepView
from crm.identity import Comms
from crm.services.handmade import ContactDraft
from crm.services.leads import LeadInput
from crm.services.listing import ListFilter
from tests.console.conftest import Shot, SignIn, console_url


async def open_new(page: Page, kind: str) -> None:
    """The header's New menu (from My work), as a user opens it."""
    origin = re.match(r"https?://[^/]+", page.url)
    assert origin, page.url
    await page.goto(f"{origin.group(0)}/app/")
    await page.click("summary:has-text('New')")
    await page.click(f".new-menu-items >> text={kind.capitalize()}")
    assert await page.locator("h1").inner_text() == f"New {kind}"


async def saved_id(page: Page, service: Any, kind: str) -> int:
    """After Save the browser is on the record's page: its id from the address bar."""
    found = re.fullmatch(rf"{console_url(service)}/app/{kind}/(\d+)", page.url)
    assert found, page.url
    return int(found.group(1))


async def pick(page: Page, picker: str, typed: str, label: str) -> None:
    """Type into a picker and click the result showing `label`."""
    await page.fill(f"[data-picker={picker}] input[type=search]", typed)
    result = page.locator(f"[data-picker={picker}] button.pick", has_text=label)
    await result.click()


async def signed_in(
    service: Any, page: Page, sign_in: SignIn, name: str = "Rita Rep", role: str = "rep"
) -> RepView:
    """A new rep (or supervisor) signed in on `page`."""
    rep: RepView = await service.crm.reps.add(name, role=role)
    await sign_in(page, service, rep)
    return rep


async def fill_contact(page: Page, first: str, last: str, phones: str) -> None:
    """The contact form's name and phone (typed; the field is not left yet)."""
    await open_new(page, "contact")
    await page.fill("input[name=first_name]", first)
    await page.fill("input[name=last_name]", last)
    await page.fill("input[name=phones]", phones)


async def create_company(page: Page, title: str, people: list[tuple[str, str]]) -> None:
    """The company form with one new-contact row per person (rows added with the button)."""
    await page.fill("input[name=title]", title)
    rows = page.locator(".contact-rows .contact-row")
    while await rows.count() < len(people):
        await page.click("text=Add a contact")
    for n, (name, phone) in enumerate(people):
        await rows.nth(n).locator("input[name=row_name]").fill(name)
        await rows.nth(n).locator("input[name=row_phones]").fill(phone)


async def test_a_company_with_two_contacts_and_a_deal_on_it(
    console: Any, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    service = await console()
    crm = service.crm
    page = browser_page
    rita = await signed_in(service, page, sign_in)

    await open_new(page, "company")
    await create_company(
        page,
        "Acme Windows GmbH",
        [("Anna Meier", "030 1111111"), ("Bernd Vogel", "030 2222222"), ("Extra", "")],
    )
    # A row added by mistake is removed again.
    await page.locator(".contact-row").nth(2).locator("text=Remove").click()
    assert await page.locator(".contact-row").count() == 2
    await shot(page, "create-company")
    await page.click("button:has-text('Save company')")
    company_id = await saved_id(page, service, "company")
    company = await crm.records.get_company(company_id)
    assert company.title == "Acme Windows GmbH" and len(company.contact_ids) == 2

    await open_new(page, "deal")
    await page.fill("input[name=title]", "Windows for the new office")
    # The contact's search result names the company the contact now belongs to.
    await page.fill("[data-picker=contact] input[type=search]", "Anna")
    result = page.locator("[data-picker=contact] button.pick")
    await result.first.wait_for()
    assert await result.all_inner_texts() == [
        f"Anna Meier #{company.contact_ids[0]} · Acme Windows GmbH · +49301111111"
    ]
    await page.select_option("select[name=stage]", "sales:PREPARATION")
    await page.fill("input[name=amount]", "5400")
    await shot(page, "create-deal")
    await result.click()
    await page.click("button:has-text('Save deal')")
    deal_id = await saved_id(page, service, "deal")

    deal = await crm.deals.get(deal_id)
    assert (deal.contact_id, deal.company_id) == (company.contact_ids[0], company_id)
    assert deal.stage == "PREPARATION" and deal.responsible_id == rita.id
    # My work lists the new deal with its stage and amount.
    await page.goto(f"{console_url(service)}/app/")
    card = await page.inner_text(f"a.card[href='/app/deal/{deal_id}']")
    assert "Windows for the new office" in card and "Preparing offer · 5400" in card


async def test_a_phone_on_an_open_lead_is_warned_about_as_the_field_is_left_and_attach_attaches(
    console: Any, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    service = await console()
    crm = service.crm
    rita = await crm.reps.add("Rita Rep")
    lead = await crm.leads.create(
        LeadInput("Call from +49 30 5551234", source="CALL", phones=("+49305551234",))
    )
    page = browser_page
    await sign_in(page, service, rita)
    await fill_contact(page, "Clara", "Berg", "030 555 1234")
    await page.fill("input[name=emails]", "clara@example.com")
    await page.press("input[name=phones]", "Tab")  # leaving the field asks the server
    hit = page.locator(".check-hit")
    await hit.wait_for()
    assert await hit.inner_text() == f"this phone belongs to lead #{lead.id} — attach instead?"
    assert await hit.locator("a").get_attribute("href") == f"/app/lead/{lead.id}"
    await shot(page, "create-duplicate-warning")

    await hit.locator("text=attach instead?").click()
    assert page.url == f"{console_url(service)}/app/lead/{lead.id}"
    after = await crm.leads.get(lead.id)
    assert after.name == "Clara Berg"
    assert {c.value for c in after.comms} == {"+49305551234", "clara@example.com"}
    assert (await crm.records.list_contacts())[1] == 0  # attached, not a second record


async def test_without_javascript_the_warning_comes_on_submit_with_attach_and_save_anyway(
    console: Any, browser: Browser, sign_in: SignIn, shot: Shot
) -> None:
    service = await console()
    crm = service.crm
    sam = await crm.reps.add("Sam Supervisor", role="supervisor")
    rita = await crm.reps.add("Rita Rep")
    anna = await crm.handmade.create_contact(
        ContactDraft(name="Anna Meier", comms=Comms(phones=("+49301111111",)))
    )
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await sign_in(page, service, sam)
    base = console_url(service)

    await page.goto(f"{base}/app/new/lead")
    await page.fill("input[name=title]", "Second question from Anna")
    await page.fill("input[name=phones]", "+49 30 1111111")
    await page.select_option("select[name=owner_id]", str(rita.id))
    await page.click("button:has-text('Save lead')")
    warning = await page.inner_text(".dup-warning")
    assert f"phone +49301111111 belongs to contact #{anna.id} (Anna Meier)" in warning
    # What was typed is kept.
    assert await page.input_value("input[name=title]") == "Second question from Anna"
    await shot(page, "create-duplicate-on-submit")
    await page.click("button:has-text('Save anyway')")
    lead_id = await saved_id(page, service, "lead")
    lead = await crm.leads.get(lead_id)
    assert lead.title == "Second question from Anna" and lead.responsible_id == rita.id

    # Attach on submit: a new email of Anna's typed as a contact goes onto her record.
    await page.goto(f"{base}/app/new/contact")
    await page.fill("input[name=first_name]", "Anna")
    await page.fill("input[name=phones]", "030 1111111")
    await page.fill("input[name=emails]", "anna@acme.example")
    await page.click("button:has-text('Save contact')")
    await page.click(f"button:has-text('Attach to contact #{anna.id}')")
    assert page.url == f"{base}/app/contact/{anna.id}"
    assert "anna@acme.example" in (await crm.records.get_contact(anna.id)).emails

    # A company form: rows added by the server, an existing contact found and ticked.
    await page.goto(f"{base}/app/new/company")
    await page.fill("input[name=title]", "Acme")
    await page.click("button:has-text('Add a contact')")
    assert await page.locator(".contact-row").count() == 3
    await page.locator("input[name=row_name]").nth(0).fill("Bernd Vogel")
    await page.fill("input[name=member_q]", "Anna")
    await page.click("button:has-text('Find')")
    await page.check(f"input[name=member_id][value='{anna.id}']")
    assert await page.locator("input[name=row_name]").nth(0).input_value() == "Bernd Vogel"
    await page.click("button:has-text('Save company')")
    company_id = await saved_id(page, service, "company")
    company = await crm.records.get_company(company_id)
    assert len(company.contact_ids) == 2 and anna.id in company.contact_ids

    # A record page's "new deal" link names the client in the address.
    await page.goto(f"{base}/app/new/deal?company_id={company_id}")
    assert await page.input_value("input[name=company_q]") == f"Acme #{company_id}"
    # A deal whose contact is typed, not picked: one match is taken.
    await page.goto(f"{base}/app/new/deal")
    await page.fill("input[name=title]", "Roof")
    await page.fill("input[name=contact_q]", "Bernd")
    await page.click("button:has-text('Save deal')")
    deal = await crm.deals.get(await saved_id(page, service, "deal"))
    assert deal.company_id == company_id
    await context.close()


async def test_refusals_show_the_reason_and_keep_what_was_typed(
    console: Any, browser_page: Page, sign_in: SignIn
) -> None:
    service = await console()
    page = browser_page
    await signed_in(service, page, sign_in)
    base = console_url(service)

    # A deal without a client.
    await page.goto(f"{base}/app/new/deal")
    await page.fill("input[name=title]", "Garage door")
    await page.fill("input[name=amount]", "12,50")
    await page.click("button:has-text('Save deal')")
    assert "a deal needs a client" in await page.inner_text(".flash.error")
    assert await page.input_value("input[name=amount]") == "12,50"
    # A typed contact that matches nobody.
    await page.fill("[data-picker=contact] input[type=search]", "Nobody Here")
    await page.click("button:has-text('Save deal')")
    assert "no contact matches 'Nobody Here'" in await page.inner_text(".flash.error")
    # A rep has no owner choice: records are their own.
    assert await page.locator("select[name=owner_id]").count() == 0
    # Not a number.
    await page.goto(f"{base}/app/new/contact")
    await page.fill("input[name=whatsapp]", "not a number")
    await page.click("button:has-text('Save contact')")
    assert "is not a WhatsApp number" in await page.inner_text(".flash.error")
    # An unknown kind of record.
    response = await page.goto(f"{base}/app/new/invoice")
    assert response is not None and response.status == 404
    assert "cannot be created here" in await page.inner_text("main")
    assert (await service.crm.deals.page(ListFilter()))[1] == 0  # nothing was saved


async def test_the_forms_fit_a_phone(
    console: Any, browser: Browser, sign_in: SignIn, shot: Shot
) -> None:
    service = await console()
    phone = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await phone.new_page()
    await signed_in(service, page, sign_in)
    for kind in ("company", "contact", "deal", "lead"):
        await open_new(page, kind)
        # No sideways scrolling on a phone.
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390, kind
        if kind == "company":
            await create_company(page, "Acme", [("Anna Meier", "030 1111111")])
            await shot(page, "create-company-phone")
    await phone.close()


async def test_bad_input_gets_a_reason_never_a_server_error(
    console: Any, browser_page: Page, sign_in: SignIn
) -> None:
    """Crafted form posts and script calls (no browser form would send these) end in a 4xx
    with the reason, on PostgreSQL too (a NUL or a 64-bit id would fail its queries)."""
    service = await console()
    page = browser_page
    await signed_in(service, page, sign_in)
    await page.goto(f"{console_url(service)}/app/new/lead")
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    base = console_url(service)

    async def post(kind: str, **fields: str) -> tuple[int, str]:
        form = {"_csrf": csrf or "", "action": "save", **fields}
        response = await page.request.post(f"{base}/app/new/{kind}", form=form)
        return response.status, await response.text()

    cases: list[tuple[str, dict[str, str], int, str]] = [
        ("lead", {"title": "a\x00b"}, 422, "title holds control characters"),
        ("lead", {"title": "x" * 201}, 422, "title is longer than 200 characters"),
        ("lead", {"title": "t", "phones": ",".join(["030 1"] * 21)}, 422, "at most 20"),
        (
            "contact",
            {"first_name": "A", "comments": "two\nlines\tfine", "company_q": "\x00"},
            422,
            "no company matches",
        ),
        ("deal", {"title": "d", "contact_id": "99999999999"}, 422, "a deal needs a client"),
        ("deal", {"title": "d", "contact_id": "1", "amount": "1e30"}, 422, "at most 2 decimals"),
        ("deal", {"title": "d", "contact_id": "1", "currency": "EURO"}, 422, "3-letter code"),
        ("lead", {"title": "t", "action": "attach:lead:2147483647"}, 404, "does not exist"),
        ("company", {"title": "c", "member_q": "\x00"}, 422, "no contact matches"),
    ]
    await service.crm.handmade.create_contact(ContactDraft(name="Anna Meier"))
    for kind, fields, status, reason in cases:
        got, text = await post(kind, **fields)
        assert (got, reason in text) == (status, True), (kind, fields, got, text[:2000])
    for path in ("find?kind=contact&q=%00ab", "find?kind=company&q=99999999999999"):
        response = await page.request.get(f"{base}/app/new/{path}")
        assert response.status == 200 and await response.json() == {"results": []}
    response = await page.request.get(f"{base}/app/new/check?phone=%00")
    assert response.status == 422 and "control characters" in (await response.json())["detail"]
    assert (await service.crm.leads.page(ListFilter()))[1] == 0


async def test_a_rep_cannot_attach_to_or_pick_another_reps_records(
    console: Any, browser_page: Page, sign_in: SignIn
) -> None:
    service = await console()
    crm = service.crm
    paul = await crm.reps.add("Paul Other")
    pauls = await crm.handmade.create_contact(
        ContactDraft(name="Petra Paulsen", comms=Comms(phones=("+49307000001",)), owner_id=paul.id)
    )
    page = browser_page
    await signed_in(service, page, sign_in)
    base = console_url(service)
    # The warning says a contact of Paul's holds the number, not which, and offers no attach.
    await fill_contact(page, "Petra", "", "+49 30 7000001")
    await page.click("button:has-text('Save contact')")
    warning = await page.inner_text(".dup-warning")
    assert "phone +49307000001 belongs to a contact of another rep (Paul Other)" in warning
    assert "Paulsen" not in await page.content()
    assert await page.locator("button[value^='attach:']").count() == 0
    assert await page.input_value("input[name=first_name]") == "Petra"
    # An attach sent by hand is refused with the service's reason.
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    form = {"_csrf": csrf or "", "first_name": "Petra", "phones": "+49 30 7000001"}
    forged = await page.request.post(
        f"{base}/app/new/contact", form=form | {"action": f"attach:contact:{pauls.id}"}
    )
    assert forged.status == 403
    assert f"contact #{pauls.id} belongs to another rep" in await forged.text()
    # Pickers find only what the rep may see, by name and by number.
    for query in ("Petra", f"#{pauls.id}"):
        found = f"{base}/app/new/find?kind=contact&q={quote(query)}"
        assert await (await page.request.get(found)).json() == {"results": []}
    await crm.handmade.create_contact(ContactDraft(name="Petra Own", comms=Comms()))
    found = f"{base}/app/new/find?kind=contact&q={quote('#' + str(pauls.id + 1))}"
    assert await (await page.request.get(found)).json() == {
        "results": [{"id": pauls.id + 1, "label": f"Petra Own #{pauls.id + 1}"}]
    }
    assert (await crm.records.get_contact(pauls.id)).first_name is None  # unchanged
