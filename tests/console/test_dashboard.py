"""The dashboard (/app/dashboard): numbers and charts from contacts fed through intake, period
and owner filters in the URL, and whose numbers each role may see."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from playwright.async_api import Page

from crm.dto import Actor
from crm.services.listing import ListFilter
from matching.event import Channel
from tests.conftest import make_event
from tests.console.conftest import Shot, SignIn, console_url


async def _feed(service: Any) -> dict[str, Any]:
    """Five contacts through intake: three calls and two mails from five people. New leads go
    round robin to the two reps: Rita gets the 1st, 3rd and 5th, Paul the 2nd and 4th."""
    crm = service.crm
    rita = await crm.reps.add("Rita Rep")
    paul = await crm.reps.add("Paul Other")
    sam = await crm.reps.add("Sam Supervisor", role="supervisor")
    events = [
        make_event(channel=Channel.CALL, phones=("030 1111111",)),
        make_event(channel=Channel.CALL, phones=("030 2222222",)),
        make_event(channel=Channel.EMAIL, emails=("anna@example.org",), subject="Windows"),
        make_event(channel=Channel.CALL, phones=("030 3333333",)),
        make_event(channel=Channel.EMAIL, emails=("ben@example.org",), subject="Roof"),
    ]
    for event in events:
        await crm.intake.process(event)
    # Rita takes her first lead, converts it and wins the deal; Paul junks his first.
    as_rita, as_paul = Actor(rita.id, "rep"), Actor(paul.id, "rep")
    first = (await crm.leads.page(ListFilter(), as_rita))[0][-1]
    await crm.leads.take(first.id, as_rita)
    converted = await crm.leads.convert(first.id, as_rita, amount=Decimal("1200"))
    assert converted.deal is not None
    await crm.deals.win(converted.deal.id, as_rita)
    junked = (await crm.leads.page(ListFilter(), as_paul))[0][-1]
    await crm.leads.junk(junked.id, "Wrong number", as_paul)
    return {"rita": rita, "paul": paul, "sam": sam}


async def _signed_in(console: Any, page: Page, sign_in: SignIn, who: str) -> tuple[Any, Any]:
    """A service with `_feed`'s contacts, and `page` signed in as `who` of them."""
    service = await console()
    team = await _feed(service)
    await sign_in(page, service, team[who])
    return service, team


async def _number(page: Page, name: str) -> str:
    return (await page.inner_text(f"[data-number='{name}']")).strip()


async def test_the_dashboard_shows_the_numbers_and_charts_of_what_came_in(
    console: Any, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    page = browser_page
    _, team = await _signed_in(console, page, sign_in, "sam")
    await page.click("nav >> text=Dashboard")
    await page.select_option("select[name=period]", "today")
    await page.click("button:has-text('Show')")
    assert page.url.endswith("/app/dashboard?period=today&from=&to=&owner=")
    assert await _number(page, "inbound") == "5"
    assert await _number(page, "leads") == "5"
    assert await _number(page, "converted") == "1"
    assert await _number(page, "deals") == "1"
    assert await _number(page, "won") == "1"
    text = await page.inner_text("main")
    assert "Phone 3 · E-mail 2" in text
    assert "new person 5 · repeat client 0" in text
    assert "Won amount: 1200.00 EUR (1 deal)" in text
    assert "lead junked: Wrong number 1" in text
    # Every chart is inline SVG with its title and the numbers on its bars.
    assert await page.locator("figure.chart svg").count() == 5
    inbound = await page.inner_text("#chart-inbound")
    assert "Inbound contacts per channel per day" in inbound
    assert "Phone" in inbound and "E-mail" in inbound and "5" in inbound  # the day's total
    funnel = await page.inner_text("#chart-funnel")
    assert "Funnel: lead → deal → won" in funnel and "5" in funnel
    assert "Lead junked: Wrong number" in await page.inner_text("#chart-lost_reasons")
    take = await page.inner_text("#chart-take_time")
    assert "Rita Rep (1)" in take  # one lead taken, by Rita
    # The per-rep table: Rita got three new leads, Paul two.
    rows = await page.inner_text("table.grid")
    assert (
        "Rita Rep\t3\t1\t1\t1\t0" in rows and "Paul Other\t2\t1\t0\t0\t0" in rows
    )  # junking takes it
    await page.set_viewport_size({"width": 1280, "height": 800})
    await shot(page, "dashboard")

    # One rep's numbers: Paul's two calls.
    await page.select_option("select[name=owner]", str(team["paul"].id))
    await page.click("button:has-text('Show')")
    assert f"owner={team['paul'].id}" in page.url
    assert await _number(page, "inbound") == "2"
    assert "Paul Other" in await page.inner_text("h1")

    # A past range had nothing: typing the days makes the period a custom range.
    await page.fill("input[name=from]", "2020-01-01")
    await page.fill("input[name=to]", "2020-01-31")
    assert await page.input_value("select[name=period]") == "custom"
    await page.click("button:has-text('Show')")
    assert "period=custom&from=2020-01-01&to=2020-01-31" in page.url
    assert await _number(page, "inbound") == "0"
    assert "Nothing in this period" in await page.inner_text("#chart-inbound")
    assert "2020-01-01 – 2020-01-31" in await page.inner_text("h1")


async def test_a_rep_sees_their_own_numbers_only(
    console: Any, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    page = browser_page
    service, team = await _signed_in(console, page, sign_in, "rita")
    base = f"{console_url(service)}/app/dashboard"
    await page.goto(f"{base}?period=today")
    assert await _number(page, "inbound") == "3"  # Rita's three, not the team's five
    assert await page.locator("select[name=owner]").count() == 0
    assert "Rita Rep" in await page.inner_text("h1")
    # On a phone the charts shrink to the screen: no sideways scrolling.
    await page.set_viewport_size({"width": 390, "height": 844})
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await shot(page, "dashboard-phone")
    # Asking for Paul's numbers by URL is refused by the stats service.
    response = await page.goto(f"{base}?period=today&owner={team['paul'].id}")
    assert response is not None and response.status == 403
    assert "a rep sees only their own numbers" in await page.inner_text("main")


async def test_bad_filters_are_refused_with_the_reason(
    console: Any, browser_page: Page, sign_in: SignIn
) -> None:
    service = await console()
    sam = await service.crm.reps.add("Sam Supervisor", role="supervisor")
    page = browser_page
    await sign_in(page, service, sam)
    base = f"{console_url(service)}/app/dashboard"
    for query, reason in (
        ("period=year", "unknown period"),
        ("period=custom&from=2026-01-01", "needs a first and a last day"),
        ("period=custom&from=2026-13-01&to=2026-12-01", "must be a date"),
        ("period=custom&from=2026-01-01&to=2026-12-01", "1 to 92 days"),
        ("period=week&owner=abc", "owner must be a rep's number"),
        ("period=week&owner=999", "rep #999 does not exist"),
    ):
        response = await page.goto(f"{base}?{query}")
        assert response is not None and response.status == 422, query
        assert reason in await page.inner_text("main"), query
