"""The pipeline board in a real Chromium: live cards from a real call webhook, drag and drop
that persists, a refused drag that comes back with its reason, filters, a rep's own view."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from playwright.async_api import Page, expect

from channels.phone.component import phone_component
from crm.dto import SYSTEM
from crm.services.leads import LeadInput
from crm.services.listing import ListFilter
from tests.console.conftest import Shot, SignIn, console_url
from tests.console.test_my_work import _team as my_work_team
from tests.phone.conftest import PHONE_SETTINGS, PhoneClient


async def _team(service: Any) -> dict[str, Any]:
    """My work's team and records (Rita's and Paul's leads and deals), and an unassigned lead."""
    team = await my_work_team(service)
    await service.crm.leads.create(LeadInput("Fence paint", source="WEBFORM", name="Otto Zaun"))
    return team


def _column(page: Page, code: str) -> Any:
    return page.locator(f".bcol[data-column='{code}']")


async def _open_board(page: Page, service: Any, query: str = "") -> None:
    await page.goto(f"{console_url(service)}/app/board{query}")
    await expect(page.locator("#board-live")).to_have_text("live")


async def _board(
    console: Any, page: Page, sign_in: SignIn, who: str = "sam", query: str = "", **kw: Any
) -> tuple[Any, dict[str, Any]]:
    """A service with the team's records, `who` signed in on the open (live) board."""
    service = await console(**kw)
    team = await _team(service)
    await sign_in(page, service, team[who])
    await _open_board(page, service, query)
    return service, team


async def test_a_new_call_appears_on_the_open_board_without_reload(
    console: Any, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    page = browser_page
    service, _ = await _board(console, page, sign_in, extra=[phone_component], phone=PHONE_SETTINGS)
    new = _column(page, "NEW")
    await expect(new.locator("[data-count]")).to_have_text("3")
    await page.evaluate("window.notReloaded = true")
    async with aiohttp.ClientSession() as http:
        phone = PhoneClient(service, http)
        await phone.missed_call("live-1", "+4930999888")
        await phone.settle()
    card = new.locator(".bcard").first
    await expect(card).to_contain_text("+4930999888")
    await expect(card.locator("a.bcard-phone")).to_have_attribute("href", "tel:+4930999888")
    await expect(new.locator("[data-count]")).to_have_text("4")
    assert await page.evaluate("window.notReloaded") is True  # live, not a reload
    await shot(page, "board")


async def test_dragging_a_lead_to_another_status_persists(
    console: Any, browser_page: Page, sign_in: SignIn
) -> None:
    page = browser_page
    await _board(console, page, sign_in)
    card = page.locator(".bcard", has_text="Roof repair")
    await card.drag_to(_column(page, "IN_PROCESS"))
    await expect(_column(page, "IN_PROCESS").locator(".bcard")).to_contain_text(["Roof repair"])
    await expect(_column(page, "IN_PROCESS").locator("[data-count]")).to_have_text("1")
    await expect(_column(page, "NEW").locator("[data-count]")).to_have_text("2")
    await page.reload()
    await expect(_column(page, "IN_PROCESS")).to_contain_text("Roof repair")
    await expect(_column(page, "NEW")).not_to_contain_text("Roof repair")


async def test_a_final_column_asks_for_the_reason_in_a_dialog(
    console: Any, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    page = browser_page
    service, _ = await _board(console, page, sign_in, query="?kind=deal")
    await page.locator(".bcard", has_text="Garage door").drag_to(_column(page, "LOSE"))
    dialog = page.locator("#move-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Why does it go to Lost?")
    await dialog.locator("input[name=reason]").fill("Competitor")
    await shot(page, "board-lost-reason")
    await dialog.locator("button[value=ok]").click()
    await expect(_column(page, "LOSE")).to_contain_text("Garage door")
    await expect(page.locator(".bcard.pending")).to_have_count(0)  # the server answered
    await expect(_column(page, "LOSE").locator("[data-count]")).to_have_text("1")
    await expect(_column(page, "NEW").locator("[data-sums]")).to_have_text("4,200.00 EUR")
    garage = next(d for d in (await _deals(service)) if d.title == "Garage door")
    assert garage.stage == "LOSE"


async def _leads(service: Any) -> list[Any]:
    leads, _ = await service.crm.leads.page(ListFilter(limit=100), SYSTEM)
    return list(leads)


async def _deals(service: Any) -> list[Any]:
    deals, _ = await service.crm.deals.page(ListFilter(limit=100), SYSTEM)
    return list(deals)


async def test_a_call_back_falling_due_turns_its_card_overdue_without_reload(
    console: Any, browser_page: Page, sign_in: SignIn
) -> None:
    page = browser_page
    service, _ = await _board(console, page, sign_in)
    await page.evaluate("window.notReloaded = true")
    lead = next(lead for lead in await _leads(service) if lead.title == "Roof repair")
    card = page.locator(f"#card-lead-{lead.id}")
    await expect(card.locator(".badge.overdue")).to_have_count(0)

    # Set while the board is open: the card arrives live with its due time, not yet overdue.
    due = datetime.now(UTC) + timedelta(seconds=10)
    await service.crm.activities.schedule(
        "lead", lead.id, due_at=due, subject="Call back", kind="call"
    )
    await expect(card).to_have_attribute("data-due", re.compile(r"^\d{4}-"))
    await expect(card.locator(".badge.overdue")).to_have_count(0)

    # It falls due: nothing is written and no change is sent, yet the badge shows.
    await expect(card.locator(".badge.overdue")).to_be_visible(timeout=30_000)
    assert await page.evaluate("window.notReloaded") is True
    await page.reload()  # and the server agrees
    await expect(page.locator(f"#card-lead-{lead.id} .badge.overdue")).to_be_visible()


async def test_a_refused_drag_shows_its_reason_and_the_card_returns(
    console: Any, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    page = browser_page
    service, _ = await _board(console, page, sign_in)
    done = await service.crm.leads.create(LeadInput("Old order", source="CALL", name="Eva"))
    await service.crm.leads.convert(done.id)
    await page.reload()
    await page.locator(".bcard", has_text="Old order").drag_to(_column(page, "NEW"))
    await expect(page.locator(".flash.error")).to_contain_text(
        f"lead #{done.id} was converted; work its deal instead"
    )
    await expect(_column(page, "CONVERTED")).to_contain_text("Old order")
    await expect(_column(page, "NEW")).not_to_contain_text("Old order")
    await shot(page, "board-refused")


async def test_filters_narrow_the_board_and_stay_in_the_url(
    console: Any, browser_page: Page, sign_in: SignIn
) -> None:
    page = browser_page
    service, _ = await _board(console, page, sign_in)
    await page.select_option("select[name=owner]", "none")
    await page.click(".board-filters button[type=submit]")
    await expect(page.locator("#board")).to_contain_text("Fence paint")
    await expect(page.locator("#board")).not_to_contain_text("Roof repair")
    assert "owner=none" in page.url  # a bookmarkable filtered board
    await page.select_option("select[name=owner]", "")
    await page.fill("input[name=q]", "anna")
    await page.click(".board-filters button[type=submit]")
    await expect(page.locator(".bcard")).to_have_count(1)
    await expect(page.locator(".bcard")).to_contain_text("Quote for 3 windows")
    await page.goto(f"{console_url(service)}/app/board?source=CALL")
    await expect(page.locator(".bcard")).to_have_count(1)
    await expect(page.locator(".bcard")).to_contain_text("Roof repair")


async def test_a_rep_sees_only_own_and_unassigned_cards_and_moves_from_a_phone(
    console: Any, browser: Any, sign_in: SignIn, shot: Shot
) -> None:
    phone = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await phone.new_page()
    service, team = await _board(console, page, sign_in, who="rita")
    board = page.locator("#board")
    await expect(board).to_contain_text("Quote for 3 windows")
    await expect(board).to_contain_text("Fence paint")  # unassigned: Rita may take it
    await expect(board).not_to_contain_text("Roof repair")  # Paul's
    # Another rep's new lead never reaches Rita's open board.
    await service.crm.leads.create(LeadInput("Paul's secret", responsible_id=team["paul"].id))
    await service.crm.leads.create(LeadInput("Walk-in", source="CALL"))
    await expect(board).to_contain_text("Walk-in")
    await expect(board).not_to_contain_text("Paul's secret")
    # The card's "Move to" select on a phone.
    card = page.locator(".bcard", has_text="Quote for 3 windows")
    await card.locator("select[name=to]").select_option("PROCESSED")
    await expect(_column(page, "PROCESSED")).to_contain_text("Quote for 3 windows")
    await expect(page.locator(".bcard.pending")).to_have_count(0)  # the server answered
    quote = next(c for c in (await _leads(service)) if c.title == "Quote for 3 windows")
    assert quote.status == "PROCESSED"
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await shot(page, "board-phone")
    await phone.close()
