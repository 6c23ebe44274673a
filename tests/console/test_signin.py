"""Signing in to the web console in a real Chromium: links from the bot's /web, once only,
expiry, sign-out, cookie flags, CSRF."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import aiohttp
from playwright.async_api import Page

from console.component import console_component
from crm.models import utcnow
from crm.services.websessions import WebSessions
from tests.console.conftest import SignIn, console_sections, console_url, open_link
from tests.servers import free_port

LINK = re.compile(r"http://127\.0\.0\.1:\d+/app/login/[\w-]+")


async def test_sign_in_from_the_link_the_bots_web_command_sends(
    world: Any, browser_page: Page
) -> None:
    w = await world(extra=[console_component], **console_sections(free_port()))
    rep = await w.rep("Rita Rep", telegram_id=501)
    answer = await w.say(501, "/web")
    found = LINK.search(answer["text"])
    assert found, answer["text"]
    # No preview: Telegram fetching the link for one would use it up.
    [sent] = [c for c in w.tg.calls("sendMessage") if c.params.get("chat_id") == 501]
    assert '"is_disabled": true' in str(sent.params["link_preview_options"]).lower().replace(
        "'", '"'
    )

    page = browser_page
    await page.goto(found.group(0))
    assert page.url == f"{console_url(w.service)}/app/"
    assert await page.inner_text(".rep-name") == rep.name
    assert await page.locator("h1").inner_text() == "My work"

    # The same link again, in another browser: refused with a page saying what to do.
    other = await page.context.browser.new_context()  # type: ignore[union-attr]
    again = await other.new_page()
    response = await again.goto(found.group(0))
    assert response is not None and response.status == 403
    assert "/web" in await again.inner_text("main")
    await other.close()


async def test_web_says_so_when_the_console_is_off(world: Any) -> None:
    w = await world(console={"enabled": False})
    await w.rep("Rita Rep", telegram_id=502)
    answer = await w.say(502, "/web")
    assert "not available" in answer["text"] and "/app/login/" not in answer["text"]


async def test_web_says_so_without_a_public_url(world: Any) -> None:
    w = await world(extra=[console_component], http={"port": 0, "public_url": ""})
    await w.rep("Rita Rep", telegram_id=503)
    answer = await w.say(503, "/web")
    assert "http.public_url" in answer["text"] and "/app/login/" not in answer["text"]


async def test_an_expired_link_is_refused(console: Any, browser_page: Page) -> None:
    service = await console()
    rep = await service.crm.reps.add("Rita Rep")
    eleven_minutes_ago = WebSessions(service.db, clock=lambda: utcnow() - timedelta(minutes=11))
    token = await eleven_minutes_ago.create_link(rep.id)
    response = await browser_page.goto(f"{console_url(service)}/app/login/{token}")
    assert response is not None and response.status == 403
    text = await browser_page.inner_text("main")
    assert "expired" in text and "/web" in text
    assert await browser_page.context.cookies() == []


async def test_cookie_flags_and_sign_out_ends_the_session(
    console: Any, browser_page: Page, sign_in: SignIn
) -> None:
    service = await console()
    rep = await service.crm.reps.add("Rita Rep")
    await sign_in(browser_page, service, rep)
    [cookie] = await browser_page.context.cookies()
    assert cookie["name"] == "leadbot_session"
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False and cookie["path"] == "/app"  # http public URL
    # Scripts cannot read it.
    assert "leadbot_session" not in await browser_page.evaluate("document.cookie")

    await browser_page.click("text=Sign out")
    assert browser_page.url == f"{console_url(service)}/app/signin"
    assert "You are signed out." in await browser_page.inner_text("#flashes")
    assert await browser_page.context.cookies() == []

    # The old cookie is refused on the server, not just forgotten by the browser.
    jar = {"leadbot_session": cookie["value"]}
    async with aiohttp.ClientSession(cookies=jar) as http:
        async with http.get(f"{console_url(service)}/app/", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/app/signin"
        headers = {"Accept": "application/json"}
        async with http.get(f"{console_url(service)}/app/", headers=headers) as r:
            assert r.status == 401
            assert (await r.json())["error"] == "unauthenticated"


async def test_the_cookie_is_secure_when_the_public_url_is_https(console: Any) -> None:
    service = await console(http={"public_url": "https://crm.example.com"})
    rep = await service.crm.reps.add("Rita Rep")
    token = await service.crm.web_sessions.create_link(rep.id)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{console_url(service)}/app/login/{token}", allow_redirects=False) as r,
    ):
        assert r.status == 303
        cookie = r.cookies["leadbot_session"]
        assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Lax"


async def test_a_post_without_the_csrf_token_is_refused(
    console: Any, browser_page: Page, sign_in: SignIn
) -> None:
    service = await console()
    rep = await service.crm.reps.add("Rita Rep")
    page = browser_page
    await sign_in(page, service, rep)
    # From a script without the header: JSON 403 with the reason.
    status, body = await page.evaluate(
        """async () => {
            const r = await fetch('/app/logout', {method: 'POST',
                headers: {'Accept': 'application/json'}});
            return [r.status, await r.json()];
        }"""
    )
    assert status == 403 and "security token" in body["detail"]
    # A form without the field: a 403 page.
    await page.evaluate(
        """() => {
            const f = document.createElement('form');
            f.method = 'post'; f.action = '/app/logout';
            document.body.appendChild(f); f.submit();
        }"""
    )
    await page.wait_for_load_state()
    assert "security token" in await page.inner_text("main")
    # Still signed in: nothing happened.
    await page.goto(f"{console_url(service)}/app/")
    assert await page.inner_text(".rep-name") == rep.name
    # csrfFetch sends the token: the same POST goes through.
    await page.evaluate("csrfFetch('/app/logout', {method: 'POST'}).catch(() => null)")
    await page.goto(f"{console_url(service)}/app/")
    assert page.url.endswith("/app/signin")


async def test_a_request_from_another_origin_is_refused(console: Any, browser_page: Page) -> None:
    service = await console()
    rep = await service.crm.reps.add("Rita Rep")
    await open_link(browser_page, service, rep)
    [cookie] = await browser_page.context.cookies()
    csrf = await browser_page.get_attribute('meta[name="csrf-token"]', "content")
    assert csrf
    headers = {"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    async with (
        aiohttp.ClientSession(cookies={"leadbot_session": cookie["value"]}) as http,
        http.post(f"{console_url(service)}/app/logout", headers=headers) as r,
    ):
        assert r.status == 403 and "another site" in (await r.json())["detail"]
    assert await service.crm.web_sessions.resolve(cookie["value"]) is not None
