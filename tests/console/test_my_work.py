"""My work (/app/): a rep sees their own open leads and deals, a supervisor everyone's."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from playwright.async_api import Page

from crm.services.leads import LeadInput
from tests.console.conftest import Shot, SignIn, console_url


async def _team(service: Any) -> dict[str, Any]:
    crm = service.crm
    rita = await crm.reps.add("Rita Rep")
    paul = await crm.reps.add("Paul Other")
    sam = await crm.reps.add("Sam Supervisor", role="supervisor")
    await crm.leads.create(
        LeadInput("Quote for 3 windows", source="EMAIL", name="Anna Berg", responsible_id=rita.id)
    )
    await crm.leads.create(LeadInput("Roof repair", source="CALL", responsible_id=paul.id))
    closed = await crm.leads.create(LeadInput("Old question", responsible_id=rita.id))
    await crm.leads.junk(closed.id, "Spam")
    await crm.deals.create("Garden house", amount=Decimal("4200"), responsible_id=rita.id)
    await crm.deals.create("Garage door", responsible_id=paul.id)
    return {"rita": rita, "paul": paul, "sam": sam}


async def test_a_rep_sees_only_their_own_open_records(
    console: Any, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    service = await console()
    team = await _team(service)
    page = browser_page
    await sign_in(page, service, team["rita"])
    text = await page.inner_text("main")
    assert "Quote for 3 windows" in text and "Garden house" in text
    assert "Roof repair" not in text and "Garage door" not in text
    assert "Old question" not in text  # junk is not open work
    assert await page.locator("nav >> text=Admin").count() == 0  # not an admin
    # Cards lead to the record pages.
    href = await page.get_attribute("a.card:has-text('Quote for 3 windows')", "href")
    assert href is not None and href.startswith("/app/lead/")
    await shot(page, "my-work")


async def test_a_supervisor_sees_everyones_open_records(
    console: Any, browser_page: Page, sign_in: SignIn
) -> None:
    service = await console()
    team = await _team(service)
    await sign_in(browser_page, service, team["sam"])
    text = await browser_page.inner_text("main")
    for title in ("Quote for 3 windows", "Roof repair", "Garden house", "Garage door"):
        assert title in text
    # Newest first.
    assert text.index("Roof repair") < text.index("Quote for 3 windows")


async def test_admins_get_the_admin_link_and_pages_fit_a_phone(
    console: Any, browser: Any, sign_in: SignIn, shot: Shot
) -> None:
    service = await console()
    team = await _team(service)
    admin = await service.crm.reps.add("Ada Admin", role="admin")
    phone = await browser.new_context(viewport={"width": 390, "height": 800})
    page = await phone.new_page()
    await sign_in(page, service, admin)
    assert await page.locator("nav >> text=Admin").count() == 1
    # No sideways scrolling on a phone.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await shot(page, "my-work-phone")
    await phone.close()
    assert team  # the records are there to fill the page


async def test_my_work_pages_older_records(
    console: Any, browser_page: Page, sign_in: SignIn
) -> None:
    service = await console()
    rep = await service.crm.reps.add("Rita Rep")
    for n in range(30):
        await service.crm.leads.create(LeadInput(f"Lead number {n}", responsible_id=rep.id))
    await sign_in(browser_page, service, rep)
    first = await browser_page.inner_text("main")
    assert "Lead number 29" in first and "Lead number 0\n" not in first
    await browser_page.click("text=Older")
    assert browser_page.url == f"{console_url(service)}/app/?page=2"
    second = await browser_page.inner_text("main")
    assert "Lead number 0" in second and "Lead number 29" not in second
