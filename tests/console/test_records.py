"""Record pages (/app/lead/N, /app/contact/N, /app/company/N, /app/deal/N) in a real Chromium:
the record, its links and its history fed through intake; the actions as a rep uses them;
refusals with the service's reason; rights and CSRF."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from playwright.async_api import Page

from console.records import Reach, reach
from crm.dto import Actor, CommView, RepView
from crm.services.leads import LeadInput
from crm.services.records import ContactInput
from matching.event import Attachment, Channel, Handle
from tests.conftest import make_event
from tests.console.conftest import Shot, SignIn, console_url

RECORDING = "https://pbx.example/rec/anna-1.mp3"
CALL = {
    "call_id": "call-anna-1",
    "stage": "ended",
    "disposition": "answered",
    "duration": 125,
    "recording_url": RECORDING,
}


RitaConsole = tuple[Any, RepView]


@pytest.fixture
async def rita_console(console: Any) -> RitaConsole:
    """A running console and its first rep, Rita."""
    service = await console()
    return service, await service.crm.reps.add("Rita Rep")


async def _anna(service: Any) -> int:
    """Anna's lead as intake makes it: a recorded call, then a mail with an attachment."""
    crm = service.crm
    call = await crm.intake.process(
        make_event(phones=("030 1234567",), display_name="Anna Berg", meta=CALL)
    )
    await crm.intake.process(
        make_event(
            channel=Channel.EMAIL,
            phones=("030 1234567",),
            emails=("anna@example.org",),
            display_name="Anna Berg",
            subject="Our floor plan",
            text="See the plan attached. Three windows, south side.",
            attachments=(Attachment("floor-plan.pdf", "application/pdf", 12000),),
        )
    )
    await crm.intake.process(
        make_event(
            channel=Channel.WHATSAPP,
            phones=("+49 30 1234567",),
            handles=(Handle("whatsapp", "49301234567"),),
            text="Do you deliver on Sunday?",
        )
    )
    assert call.lead_id is not None
    return call.lead_id


async def _open(page: Page, service: Any, path: str) -> str:
    await page.goto(f"{console_url(service)}{path}")
    return await page.inner_text("main")


async def _submit(page: Page, action: str, **fields: str) -> str:
    """Fill the record page's form for `action` (opening its section) and send it; the text of
    the page it lands on."""
    form = page.locator(f"form[action$='/{action}']")
    await form.evaluate("f => { const d = f.closest('details'); if (d) d.open = true; }")
    for name, value in fields.items():
        field = form.locator(f"[name={name}]")
        if await field.evaluate("e => e.tagName") == "SELECT":
            await field.select_option(value)
        else:
            await field.fill(value)
    await form.locator("button[type=submit]").click()
    return await page.inner_text("main")


async def _lead_of(service: Any, rep: RepView, lead_id: int) -> None:
    await service.crm.leads.assign(lead_id, rep.id)


async def test_a_lead_page_shows_the_record_and_its_whole_history(
    rita_console: RitaConsole, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    service, rita = rita_console
    lead_id = await _anna(service)
    await _lead_of(service, rita, lead_id)
    page = browser_page
    await sign_in(page, service, rita)
    page.set_default_timeout(10_000)
    await page.click(f"a.card[href='/app/lead/{lead_id}']")
    assert page.url == f"{console_url(service)}/app/lead/{lead_id}"

    # A comment and a status change, made on the page itself.
    assert "Comment added." in await _submit(page, "comment", text="Wants a quote by Friday")
    text = await _submit(page, "status", status="PROCESSED")
    assert f"Lead #{lead_id}" in text and "Processed" in text and "Rita Rep" in text
    # Identities: the phone as a tel: link, the email as mailto:.
    assert await page.get_attribute("a[href^='tel:']", "href") == "tel:+49301234567"
    assert await page.get_attribute("a[href^='mailto:']", "href") == "mailto:anna@example.org"
    assert await page.get_attribute("a[href^='https://wa.me/']", "href") == (
        "https://wa.me/49301234567"
    )
    history = await page.inner_text("#history")
    for seen in (
        "Incoming call, 2:05",
        "Why here: no match → new lead",  # the decision reason of the inbound call
        "Our floor plan",
        "See the plan attached.",
        "floor-plan.pdf",
        "WhatsApp message",
        "Do you deliver on Sunday?",
        "Wants a quote by Friday",
        "Status: New → Processed",
        "Assigned: Rita Rep",
    ):
        assert seen in history, seen
    # Newest first: the comment and the change above the call.
    assert history.index("Wants a quote") < history.index("Incoming call")
    # The recording plays in the page.
    assert await page.get_attribute("#history audio[controls]", "src") == RECORDING
    await shot(page, "record-lead")
    await page.set_viewport_size({"width": 390, "height": 844})
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await shot(page, "record-lead-phone")


async def test_converting_a_lead_makes_contact_company_and_deal_linked_both_ways(
    rita_console: RitaConsole, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    service, rita = rita_console
    lead = await service.crm.leads.create(
        LeadInput(
            "Quote for 3 windows",
            source="EMAIL",
            name="Anna Berg",
            company_title="Berg Bau",
            phones=("030 7654321",),
            responsible_id=rita.id,
        )
    )
    page = browser_page
    await sign_in(page, service, rita)
    await _open(page, service, f"/app/lead/{lead.id}")
    text = await _submit(page, "convert", into="all", amount="1.500 €")
    assert "converted into deal" in text
    assert "/app/deal/" in page.url
    assert "1500.00 EUR" in text and "Quote for 3 windows" in text
    links = await page.inner_text(".links")
    assert "Company" in links and "Berg Bau" in links
    assert "Contact" in links and "Anna Berg" in links
    assert f"Lead #{lead.id} Quote for 3 windows" in links and "came from" in links
    await shot(page, "record-deal-converted")

    # The contact lists its company and the deal; its history holds the lead's.
    await page.click(".links a:has-text('Anna Berg')")
    contact = await page.inner_text("main")
    assert "Berg Bau" in contact and "Quote for 3 windows" in contact
    assert await page.get_attribute("a[href^='tel:']", "href") == "tel:+49307654321"
    await page.click(".links a:has-text('Berg Bau')")
    company = await page.inner_text("main")
    assert "Company #" in company and "Anna Berg" in company
    # The lead now says it is converted and offers no more conversion.
    await _open(page, service, f"/app/lead/{lead.id}")
    assert "Converted" in await page.inner_text(".record-state")
    assert await page.locator("button:has-text('Convert')").count() == 0


async def test_winning_a_deal_with_an_amount_and_losing_one_with_a_reason(
    rita_console: RitaConsole, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    service, rita = rita_console
    won = await service.crm.deals.create("Garden house", responsible_id=rita.id)
    lost = await service.crm.deals.create("Garage door", responsible_id=rita.id)
    other = await service.crm.deals.create("Fence", responsible_id=rita.id)
    page = browser_page
    await sign_in(page, service, rita)

    await _open(page, service, f"/app/deal/{won.id}")
    text = await _submit(page, "win", amount="4200.50", currency="chf")
    assert f"Deal #{won.id}: Won — 4200.50 CHF." in text
    assert "Won" in await page.inner_text(".record-state")
    assert "4200.50 CHF" in await page.inner_text(".facts")
    assert "Won" in await page.inner_text("#history")
    await shot(page, "record-deal-won")

    # Lost with no reason: refused, with the reason why.
    await _open(page, service, f"/app/deal/{lost.id}")
    assert "say why the deal was lost" in await _submit(page, "lose")
    await page.go_back()
    assert f"Deal #{lost.id}: Lost — Competitor." in await _submit(
        page, "lose", reason="Competitor"
    )
    assert "Competitor" in await page.inner_text(".record-state")

    # Other, typed.
    await _open(page, service, f"/app/deal/{other.id}")
    text = await _submit(page, "lose", reason="__other__", other="Bought a used one")
    assert "Lost — Bought a used one" in text
    assert (await service.crm.deals.get(other.id)).lost_reason == "Bought a used one"


async def test_take_reminder_junk_and_edits_on_a_lead_and_a_contact(
    rita_console: RitaConsole, browser_page: Page, sign_in: SignIn
) -> None:
    service, rita = rita_console
    queue = await service.crm.leads.create(
        LeadInput("Unassigned question", phones=("030 5550001",))
    )
    page = browser_page
    await sign_in(page, service, rita)
    await _open(page, service, f"/app/lead/{queue.id}")
    await page.click("button:has-text('Take')")
    assert "The lead is yours." in await page.inner_text("#flashes")
    assert "Rita Rep" in await page.inner_text(".facts")

    # A call-back reminder for tomorrow 09:30, team time.
    tz = ZoneInfo(service.crm.config.timezone)
    due = (datetime.now(tz) + timedelta(days=1)).replace(hour=9, minute=30)
    text = await _submit(page, "remind", due=due.strftime("%Y-%m-%dT%H:%M"))
    assert f"Call-back reminder set for {due:%Y-%m-%d} 09:30" in text
    assert f"Due {due:%Y-%m-%d} 09:30 · open" in await page.inner_text("#history")
    [task] = await service.crm.activities.of_record("lead", queue.id, open_only=True)
    assert task.kind == "call" and task.subject == "Call back"
    await page.click("form[action$='/done'] button")
    assert f"Due {due:%Y-%m-%d} 09:30 · done: called back" in await page.inner_text("#history")

    # Junk with a reason.
    await _submit(page, "junk", reason="Wrong number")
    state = await page.inner_text(".record-state")
    assert "Junk" in state and "Wrong number" in state
    await page.click("button:has-text('Reopen')")
    assert "Reopened." in await page.inner_text("#flashes")

    # A contact: names, a phone added, then removed.
    contact = await service.crm.records.create_contact(
        ContactInput(name="Bob", responsible_id=rita.id, emails=("bob@example.org",))
    )
    await _open(page, service, f"/app/contact/{contact.id}")
    await _submit(page, "edit", first_name="Bob", last_name="Builder", phones="030 9998877")
    assert "Bob Builder" in await page.inner_text("h1")
    assert await page.get_attribute("a[href^='tel:']", "href") == "tel:+49309998877"
    await page.click("button[title^='Remove'][title$='9998877']")
    assert "Removed +49309998877" in await page.inner_text("#flashes")
    assert await page.locator("a[href^='tel:']").count() == 0
    assert (await service.crm.records.get_contact(contact.id)).phones == []


async def test_editing_a_lead_and_a_deal(
    rita_console: RitaConsole, browser_page: Page, sign_in: SignIn
) -> None:
    service, rita = rita_console
    lead = await service.crm.leads.create(LeadInput("Call from 030", responsible_id=rita.id))
    deal = await service.crm.deals.create("Chairs", responsible_id=rita.id)
    page = browser_page
    await sign_in(page, service, rita)
    await _open(page, service, f"/app/lead/{lead.id}")
    await _submit(
        page,
        "edit",
        title="Quote for a terrace",
        name="Dora Klein",
        company_title="Klein GmbH",
        phones="030 2223344, 0151 12345678",
        emails="dora@example.org",
    )
    assert "Saved." in await page.inner_text("#flashes")
    assert "Quote for a terrace" in await page.inner_text("h1")
    facts = await page.inner_text(".facts")
    assert "Dora Klein" in facts and "Klein GmbH" in facts
    tels = await page.eval_on_selector_all("a[href^='tel:']", "els => els.map(e => e.href)")
    assert tels == ["tel:+49302223344", "tel:+4915112345678"]
    await page.click("button[title$='dora@example.org']")
    assert await page.locator("a[href^='mailto:']").count() == 0
    edited = await page.inner_text("#history")
    assert "title: Quote for a terrace" in edited and "removed: email dora@example.org" in edited

    await _open(page, service, f"/app/deal/{deal.id}")
    await _submit(page, "edit", title="Office chairs", amount="12 500,50", currency="usd")
    assert "Office chairs" in await page.inner_text("h1")
    assert "12500.50 USD" in await page.inner_text(".facts")
    text = await _submit(page, "edit", amount="lots")
    assert "did not understand “lots” as an amount" in text


async def test_a_supervisor_assigns_and_a_rep_cannot_open_another_reps_record(
    console: Any, browser: Any, sign_in: SignIn, shot: Shot
) -> None:
    service = await console()
    crm = service.crm
    rita = await crm.reps.add("Rita Rep")
    paul = await crm.reps.add("Paul Other", telegram_user_id=5551)
    sam = await crm.reps.add("Sam Supervisor", role="supervisor")
    lead = await crm.leads.create(
        LeadInput("Secret roof deal", name="Carla Private", phones=("030 4443322",))
    )
    deal = await crm.deals.create("Secret garage", responsible_id=paul.id)

    boss = await (await browser.new_context()).new_page()
    await sign_in(boss, service, sam)
    await _open(boss, service, f"/app/lead/{lead.id}")
    await _submit(boss, "assign", rep_id=str(paul.id))
    assert "Assigned to Paul Other." in await boss.inner_text("#flashes")
    assert "Paul Other" in await boss.inner_text(".facts")
    # Paul hears it in Telegram (the bot's outbox).
    # Paul hears it in Telegram (the bot's outbox) ...
    [assigned] = await crm.outbox.due(datetime.now(UTC) + timedelta(days=1))
    assert (assigned.kind, assigned.rep_id) == ("assigned", paul.id)
    await crm.outbox.mark_sent(assigned.id, [])
    # ... and what Sam does to his lead next, as after the bot's buttons.
    assert "Comment added." in await _submit(boss, "comment", text="Call her before noon")
    [changed] = await crm.outbox.due(datetime.now(UTC) + timedelta(days=1))
    assert (changed.kind, changed.rep_id) == ("changed", paul.id)
    assert changed.payload == {
        "lead_id": lead.id,
        "by_rep_id": sam.id,
        "what": "💬 Call her before noon",
    }

    page = await (await browser.new_context()).new_page()
    await sign_in(page, service, rita)
    for path, what in ((f"/app/lead/{lead.id}", "lead"), (f"/app/deal/{deal.id}", "deal")):
        response = await page.goto(f"{console_url(service)}{path}")
        assert response is not None and response.status == 403
        text = await page.inner_text("main")
        assert f"{what} #" in text and "belongs to another rep" in text
        for secret in ("Secret", "Carla", "4443322", "Paul"):
            assert secret not in text
    await shot(page, "record-forbidden")
    # Nor by a form post.
    response = await page.goto(f"{console_url(service)}/app/lead/{lead.id}/comment")
    assert response is not None and response.status == 405
    missing = await page.goto(f"{console_url(service)}/app/lead/999999")
    assert missing is not None and missing.status == 404
    assert "lead #999999 does not exist" in await page.inner_text("main")


async def test_a_post_without_the_csrf_token_is_refused(console: Any) -> None:
    service = await console()
    crm = service.crm
    rita = await crm.reps.add("Rita Rep")
    lead = await crm.leads.create(LeadInput("Quote", responsible_id=rita.id))
    signed = await crm.web_sessions.redeem(await crm.web_sessions.create_link(rita.id))
    cookies = {"leadbot_session": signed.session_token}
    base = f"{console_url(service)}/app/lead/{lead.id}"
    async with aiohttp.ClientSession(cookies=cookies) as http:
        async with http.post(f"{base}/comment", data={"text": "sneaky"}) as r:
            assert r.status == 403 and "security token" in await r.text()
        async with http.post(
            f"{base}/junk", data={"reason": "Spam", "_csrf": "forged"}, allow_redirects=False
        ) as r:
            assert r.status == 403
        # With the token it goes through, and refusals carry the service's reason.
        async with http.post(
            f"{base}/comment",
            data={"text": "fine", "_csrf": signed.csrf_token},
            allow_redirects=False,
        ) as r:
            assert r.status == 303 and r.headers["Location"] == f"/app/lead/{lead.id}"
        async with http.post(
            f"{base}/remind", data={"due": "2001-01-01T10:00", "_csrf": signed.csrf_token}
        ) as r:
            assert r.status == 422 and "is past" in await r.text()
        async with http.post(
            f"{base}/convert", data={"into": "x", "_csrf": signed.csrf_token}
        ) as r:
            assert r.status == 422 and "choose what to convert into" in await r.text()
        # What the database could not hold is refused with why, never a server error.
        deal = await crm.deals.create("Big one", responsible_id=rita.id)
        for path, form, why in (
            (f"{base}/edit", {"title": "x" * 301}, "title is too long"),
            (f"{base}/edit", {"phones": "1" * 321}, "at most 320 characters"),
            (f"/app/deal/{deal.id}/win", {"amount": "99999999999999999"}, "too large"),
            (f"/app/deal/{deal.id}/edit", {"amount": "1,505.125"}, "two decimals at most"),
            (f"/app/deal/{deal.id}/win", {"amount": "5", "currency": "XYZ"}, "the currency"),
            (f"/app/lead/{lead.id}/convert", {"into": "all", "amount": "lots"}, "amount"),
        ):
            url = path if path.startswith("http") else f"{console_url(service)}{path}"
            async with http.post(url, data={**form, "_csrf": signed.csrf_token}) as r:
                assert r.status == 422 and why in await r.text(), (path, form)
        assert (await crm.deals.get(deal.id)).is_open
    comments = [a.body for a in await crm.activities.of_record("lead", lead.id)]
    assert comments == ["fine"]
    assert (await crm.leads.get(lead.id)).is_open


async def test_refused_actions_show_the_reason(
    rita_console: RitaConsole, browser_page: Page, sign_in: SignIn
) -> None:
    service, rita = rita_console
    lead = await service.crm.leads.create(LeadInput("Quote", responsible_id=rita.id))
    page = browser_page
    await sign_in(page, service, rita)
    await _open(page, service, f"/app/lead/{lead.id}")
    # Meanwhile the lead is junked elsewhere (the bot): converting is refused with why.
    await service.crm.leads.junk(lead.id, "Spam", Actor(rita.id, "rep"))
    await page.click("button:has-text('Convert')")
    text = await page.inner_text("main")
    assert f"lead #{lead.id} is already closed" in text


async def test_long_histories_page_older_in_place_and_fit_a_phone(
    rita_console: RitaConsole, browser: Any, sign_in: SignIn
) -> None:
    service, rita = rita_console
    deal = await service.crm.deals.create(
        "Office chairs", amount=Decimal("900"), responsible_id=rita.id
    )
    me = Actor(rita.id, "rep")
    for n in range(30):
        await service.crm.activities.comment("deal", deal.id, f"note number {n}", me)
    phone = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await phone.new_page()
    await sign_in(page, service, rita)
    await _open(page, service, f"/app/deal/{deal.id}")
    assert await page.locator("#history-items > li.item").count() == 25
    assert "note number 29" in await page.inner_text("#history")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await page.click("#history-older")
    await page.wait_for_selector("text=note number 0")
    assert await page.locator("#history-items > li.item").count() == 31  # 30 notes, created
    assert await page.locator("#history-older").count() == 0
    assert page.url.endswith(f"/app/deal/{deal.id}")  # appended in place
    await phone.close()


def test_messenger_ids_link_to_their_apps() -> None:
    tg = CommView("telegram", "anna_b", "123456", label="anna_b")
    assert reach(tg) == Reach("Telegram", "@anna_b", "https://t.me/anna_b", "123456")
    bare = CommView("telegram", "123456", "123456")
    assert reach(bare).href == "tg://user?id=123456"
    odd = CommView("whatsapp", "BR.abc", "BR.abc")
    assert reach(odd).href is None  # a business-scoped id, not a number: no wa.me link


async def test_customer_text_is_escaped_and_only_web_recordings_play(console: Any) -> None:
    service = await console()
    crm = service.crm
    sam = await crm.reps.add("Sam Supervisor", role="supervisor")
    forged = {**CALL, "call_id": "forged", "recording_url": "javascript:alert(1)"}
    call = await crm.intake.process(
        make_event(
            phones=("030 6667778",), display_name="<img src=x onerror=alert(2)>", meta=forged
        )
    )
    signed = await crm.web_sessions.redeem(await crm.web_sessions.create_link(sam.id))
    async with (
        aiohttp.ClientSession(cookies={"leadbot_session": signed.session_token}) as http,
        http.get(f"{console_url(service)}/app/lead/{call.lead_id}") as r,
    ):
        body = await r.text()
    assert r.status == 200 and "Incoming call, 2:05" in body
    assert "javascript:" not in body and "<audio" not in body
    assert "<img src=x" not in body and "&lt;img src=x onerror=alert(2)&gt;" in body
