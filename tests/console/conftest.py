"""The web console under test: a running service with it, a real headless Chromium driven by
Playwright (the Debian `chromium` package, never a downloaded browser), and helpers the page
tests share.

    async def test_x(console, browser_page, sign_in, shot):
        service = await console()                  # the service, console on a free port
        rep = await service.crm.reps.add("Rita", role="rep")
        await sign_in(browser_page, service, rep)  # a one-time link, opened: now on My work
        await shot(browser_page, "my-work")        # docs/console/img/my-work.png with
                                                   # LEADBOT_DOCS_SHOTS=1, else a tmp file

`console_url(service)` is the service's base URL; `console(extra=[...], **sections)` takes
more component factories (the bot: `bot_component`) and settings sections like
`start_service`. `world` / `tg` (the bot with the fake Bot API) come from tests/bot.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from console.component import console_component
from crm.dto import RepView
from tests.bot.conftest import tg, world  # the bot's fixtures, reused by the /web tests
from tests.servers import free_port

__all__ = ["tg", "world"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console" / "img"

Shot = Callable[[Page, str], Awaitable[Path]]
SignIn = Callable[[Page, Any, RepView], Awaitable[None]]


def console_url(service: Any) -> str:
    return f"http://127.0.0.1:{service.port}"


def console_sections(port: int, **sections: Any) -> dict[str, Any]:
    """Settings with HTTP on `port` and the public URL pointing there (links the bot and
    the CLI print must open)."""
    http = {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}"}
    sections["http"] = {**http, **sections.get("http", {})}
    return sections


@pytest.fixture
async def console(
    start_service: Callable[..., Awaitable[Any]],
) -> Callable[..., Awaitable[Any]]:
    async def _start(extra: Sequence[Callable[[Any], Any]] = (), **sections: Any) -> Any:
        return await start_service(
            components=[console_component, *extra], **console_sections(free_port(), **sections)
        )

    return _start


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def browser_page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page in its own browser context (own cookies), phone-friendly width."""
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    page = await context.new_page()
    try:
        yield page
    finally:
        await context.close()


async def open_link(page: Page, service: Any, rep: RepView) -> str:
    """A new one-time link for `rep` from the crm service (as /web makes), opened."""
    token = await service.crm.web_sessions.create_link(rep.id)
    url = f"{console_url(service)}/app/login/{token}"
    await page.goto(url)
    return url


@pytest.fixture
def sign_in() -> SignIn:
    async def _sign_in(page: Page, service: Any, rep: RepView) -> None:
        await open_link(page, service, rep)
        assert page.url == f"{console_url(service)}/app/", page.url

    return _sign_in


@pytest.fixture
def shot(tmp_path: Path) -> Shot:
    async def _shot(page: Page, name: str) -> Path:
        to_docs = os.environ.get("LEADBOT_DOCS_SHOTS") == "1"
        where = DOCS_SHOTS if to_docs else tmp_path
        where.mkdir(parents=True, exist_ok=True)
        path = where / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return _shot
