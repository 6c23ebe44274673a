"""The admin pages (/app/admin/…): admins only, by link and by URL; reps (invite, role,
deactivate), the exception list (and intake following it), API tokens (and /api/v1 refusing a
revoked one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page

from channels.mail.component import mail_component
from channels.webform.routes import forms_component
from crm.dto import Actor
from crm.errors import Forbidden
from crm.queue import RawInput
from crm.services.listing import ListFilter
from leadbot.api.component import api_component
from matching.event import Channel
from matching.model import Outcome
from tests.conftest import make_event
from tests.console.conftest import Shot, SignIn, console_url
from tests.mail.support import eventually
from tests.servers import free_port

ADMIN_PAGES = ("reps", "exceptions", "tokens", "health", "settings")
ADMIN = Actor(None, "admin")


async def _admin(service: Any) -> Any:
    return await service.crm.reps.add("Ada Admin", role="admin")


async def test_a_rep_has_no_admin_link_and_is_refused_by_url(
    console: Any, browser_page: Page, sign_in: SignIn
) -> None:
    service = await console()
    rep = await service.crm.reps.add("Rita Rep")
    sam = await service.crm.reps.add("Sam Supervisor", role="supervisor")
    page = browser_page
    for who in (rep, sam):
        await sign_in(page, service, who)
        assert await page.locator("nav >> text=Admin").count() == 0
        for name in ADMIN_PAGES:
            response = await page.goto(f"{console_url(service)}/app/admin/{name}")
            assert response is not None and response.status == 403, name
            assert "the admin pages are for admins" in await page.inner_text("main")
    # A forged form post (with a valid CSRF token) is refused too, and changes nothing.
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    answer = await page.request.post(
        f"{console_url(service)}/app/admin/reps/{rep.id}/role",
        form={"_csrf": csrf or "", "role": "admin"},
    )
    assert answer.status == 403
    assert (await service.crm.reps.get(rep.id)).role == "rep"


async def test_the_services_refuse_non_admins_too(console: Any) -> None:
    service = await console()
    crm = service.crm
    rep = await crm.reps.add("Rita Rep")
    sam = Actor(rep.id, "supervisor")
    for call in (
        crm.reps.set_role(rep.id, "admin", sam),
        crm.reps.deactivate(rep.id, sam),
        crm.reps.create_invite(rep.id, sam),
        crm.reps.add("Someone", actor=sam),
        crm.tokens.create("t", actor=sam),
        crm.tokens.revoke(1, sam),
        crm.tokens.all(sam),
    ):
        try:
            await call
        except Forbidden as err:
            assert "only an admin can" in str(err)
        else:
            raise AssertionError("a supervisor administered")


async def test_an_admin_invites_changes_a_role_and_deactivates(
    console: Any, browser: Browser, sign_in: SignIn, shot: Shot
) -> None:
    service = await console(telegram={"bot_username": "acme_leads_bot"})
    admin = await _admin(service)
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await sign_in(page, service, admin)
    await page.click("nav >> text=Admin")
    assert page.url.endswith("/app/admin/reps")

    await page.fill("input[name=name]", "Nina New")
    await page.select_option("form.stack select[name=role]", "rep")
    await page.click("text=Add and invite")
    invite = await page.inner_text("section.secret")
    assert "Invite for Nina New" in invite
    assert "https://t.me/acme_leads_bot?start=" in invite
    code = invite.split("?start=")[1].split()[0]
    nina = next(r for r in await service.crm.reps.all() if r.name == "Nina New")
    # The code is the real invite: the bot's /start with it links a Telegram account.
    linked = await service.crm.reps.redeem_invite(code, 777001)
    assert linked.id == nina.id
    await shot(page, "admin-reps")

    # Nina signs in to the console in her own browser.
    nina_page = await (await browser.new_context()).new_page()
    await sign_in(nina_page, service, nina)

    row = page.locator(f"tr[data-rep='{nina.id}']")
    await row.locator("select[name=role]").select_option("supervisor")
    await row.locator("text=Change role").click()
    assert "Nina New is now supervisor." in await page.inner_text("#flashes")
    assert (await service.crm.reps.get(nina.id)).role == "supervisor"

    row = page.locator(f"tr[data-rep='{nina.id}']")
    await row.locator("text=Deactivate").click()
    assert "Nina New is deactivated and signed out everywhere." in await page.inner_text("#flashes")
    assert "deactivated" in await page.locator(f"tr[data-rep='{nina.id}']").inner_text()
    # Her session ended: the next page she opens asks her to sign in.
    await nina_page.reload()
    assert nina_page.url.endswith("/app/signin")

    # An admin cannot lock themselves out; the reason is shown.
    mine = page.locator(f"tr[data-rep='{admin.id}']")
    await mine.locator("select[name=role]").select_option("rep")
    await mine.locator("text=Change role").click()
    assert "you cannot take away your own admin role" in await page.inner_text("main")
    await context.close()


async def test_the_exception_list_is_kept_and_followed_by_intake(
    console: Any, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    service = await console()
    await service.crm.reps.add("Rita Rep")
    page = browser_page
    await sign_in(page, service, await _admin(service))
    await page.goto(f"{console_url(service)}/app/admin/exceptions")
    assert "The exception list is empty." in await page.inner_text("main")

    await page.fill("form.stack input[name=value]", "030 9876543")
    await page.fill("form.stack input[name=comment]", "Our own office line")
    await page.click("text=Add to the list")
    assert "+49309876543 is on the exception list." in await page.inner_text("#flashes")
    table = await page.inner_text("table.grid")
    assert "+49309876543" in table and "Our own office line" in table
    await shot(page, "admin-exceptions")

    # A call from that number enters nothing.
    ignored = await service.crm.intake.process(
        make_event(channel=Channel.CALL, phones=("+49 30 9876543",))
    )
    assert ignored.outcome == Outcome.IGNORED

    # A typo is refused with the reason.
    await page.fill("form.stack input[name=value]", "not a phone")
    await page.click("text=Add to the list")
    assert "is neither an email address nor a phone number" in await page.inner_text("main")

    await page.goto(f"{console_url(service)}/app/admin/exceptions")
    await page.click("button[aria-label='Remove +49309876543']")
    assert "+49309876543 is off the exception list." in await page.inner_text("#flashes")
    assert "The exception list is empty." in await page.inner_text("main")
    # Now a call from it opens a lead.
    lead = await service.crm.intake.process(
        make_event(channel=Channel.CALL, phones=("+49 30 9876543",))
    )
    assert lead.outcome == Outcome.NEW_LEAD


async def test_an_admin_creates_and_revokes_an_api_token(
    console: Any, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    service = await console(extra=[api_component])
    rita = await service.crm.reps.add("Rita Rep")
    page = browser_page
    await sign_in(page, service, await _admin(service))
    await page.goto(f"{console_url(service)}/app/admin/tokens")
    # A read-only token (the default scope) acting as Rita, with her rights.
    await page.fill("input[name=name]", "Accounting export")
    await page.select_option("select[name=rep]", str(rita.id))
    await page.click("text=Create token")
    token = (await page.inner_text("#new-token")).strip()
    assert token.startswith("lb_")
    assert "it is shown only once" in await page.inner_text("section.secret")
    row = await page.locator("tr:has-text('Accounting export')").inner_text()
    assert "read" in row and "write" not in row and "Rita Rep" in row
    await shot(page, "admin-tokens")

    async def api(method: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                method,
                f"{console_url(service)}/api/v1/leads",
                headers={"Authorization": f"Bearer {token}"},
                json={"title": "From the export"},
            ) as r,
        ):
            return r.status, await r.text()

    assert (await api("GET"))[0] == 200
    status, body = await api("POST")
    assert status == 403 and "insufficient_scope" in body  # read only
    # The list shows it by name, never the token again.
    await page.goto(f"{console_url(service)}/app/admin/tokens")
    assert token not in await page.content()
    row_of = page.locator("tr:has-text('Accounting export')")
    await row_of.locator("text=Revoke").click()
    assert "the API refuses it from now on" in await page.inner_text("#flashes")
    assert "revoked" in await page.locator("tr:has-text('Accounting export')").inner_text()
    assert (await api("GET"))[0] == 401

    # A write token: both scopes ticked.
    await page.fill("input[name=name]", "Web shop")
    await page.check("input[name=scope][value=write]")
    await page.click("text=Create token")
    token = (await page.inner_text("#new-token")).strip()
    assert "read, write" in await page.locator("tr:has-text('Web shop')").inner_text()
    assert (await api("POST"))[0] == 201
    # No scope at all is refused with the service's reason.
    await page.fill("input[name=name]", "Nothing")
    await page.uncheck("input[name=scope][value=read]")
    await page.click("text=Create token")
    assert "scopes must be some of read, write" in await page.inner_text("main")


MARKERS = {
    "telegram": {
        "token": "123456:MARKER-telegram-token-aaaaaaaaaaaaaaaaaaaa",
        "webhook_secret": "MARKER-tg-webhook",
    },
    "phone": {"webhook_secret": "MARKER-phone-webhook", "twilio_auth_token": "MARKER-twilio"},
    "whatsapp": {
        "verify_token": "MARKER-wa-verify",
        "app_secret": "MARKER-wa-app",
        "access_token": "MARKER-wa-access",
    },
}


async def test_channel_health_shows_errors_and_refusals_and_retries_dead_letters(
    console: Any, browser_page: Page, sign_in: SignIn, shot: Shot, tmp_path: Path
) -> None:
    closed = free_port()  # nothing listens: the mailbox cannot connect
    service = await console(
        extra=[forms_component, mail_component],
        forms=[{"key": "web"}],
        mailboxes=[
            {
                "name": "sales",
                "host": "127.0.0.1",
                "port": closed,
                "security": "none",
                "user": "info@shop.example",
                "password": "MARKER-mail-password",
            }
        ],
        queue={"journal_dir": str(tmp_path / "journal"), "max_failures": 2, "retry_delay": 0.05},
        **MARKERS,
    )
    crm = service.crm
    base = console_url(service)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/forms/web", data={"name": "Ann", "phone": "030 1234567"}):
            pass
        async with http.post(f"{base}/forms/old-key", data={"name": "Bob"}) as r:
            assert r.status == 404
    # An item no converter reads: after two tries it is a dead letter.
    await service.submit_raw(
        Channel.CALL, RawInput("test.kind", 1.0, {"id": "1", "phone": "+49 30 7770001"})
    )
    await eventually(lambda: crm.health.dead_letters(ADMIN), timeout=20, what="a dead letter")
    await eventually(lambda: crm.health.mailboxes(ADMIN), timeout=20, what="the mailbox error")

    page = browser_page
    await sign_in(page, service, await _admin(service))
    await page.goto(f"{base}/app/admin/health")
    mailboxes = await page.inner_text("#mailboxes")
    assert "sales" in mailboxes and "never" in mailboxes  # never synced
    assert str(closed) in mailboxes or "refused" in mailboxes.lower(), mailboxes
    assert "MARKER" not in mailboxes
    hooks = await page.inner_text("#webhooks")
    assert "/forms/{form_key}" in hooks and "404: " in hooks and "form" in hooks
    letters = await page.inner_text("#dead-letters")
    assert "no converter for 'test.kind'" in letters
    await shot(page, "admin-health")

    # The channel is fixed: the retried item makes its lead.
    service.converters["test.kind"] = lambda raw: make_event(
        external_id=f"k-{raw.doc['id']}", phones=(raw.doc["phone"],)
    )
    await page.click("#dead-letters >> text=Retry")
    assert "is back in the queue" in await page.inner_text("#flashes")
    assert "No dead letters." in await page.inner_text("#dead-letters")

    async def the_lead() -> list[Any]:
        return [x for x in (await crm.leads.page(ListFilter()))[0] if "7770001" in x.title]

    await eventually(the_lead, timeout=20, what="the retried item's lead")


async def test_the_settings_page_masks_every_secret(
    console: Any, browser_page: Page, sign_in: SignIn
) -> None:
    service = await console(**MARKERS)
    page = browser_page
    await sign_in(page, service, await _admin(service))
    await page.goto(f"{console_url(service)}/app/admin/settings")
    text = await page.inner_text("#settings")
    assert "telegram.token\t***" in text and "phone.twilio_auth_token\t***" in text
    assert f"http.port\t{service.port}" in text
    assert "MARKER" not in await page.content()
