"""The quarantine page (/app/quarantine) against a real Dovecot and in a real Chromium: spam the
mail worker filed shows with its reason, a release puts it back where the running worker takes
it as new mail, reps are refused by the service, and a server that is down or never answers
gets a polite message in its own section instead of an error page or a long wait."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from channels.mail.component import mail_component
from channels.mail.spamguard import RELEASED_KEYWORD, SPAM_KEYWORD
from crm.dto import Actor
from crm.errors import Forbidden
from tests.console.conftest import Shot, SignIn, console_url
from tests.mail.conftest import dovecot
from tests.mail.dovecot import Dovecot
from tests.mail.support import (
    count_is,
    customer_mail,
    eventually,
    holds,
    leads,
    mailbox,
    uids_in,
    worker_of,
)

__all__ = ["dovecot"]

# The page talks to IMAP, not to the database: one backend is enough here (the notes it reads
# are tested on both in tests/mail/test_mailstate.py).
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"])]

SPAM = "Leadbot-Spam"
NAME = "Vertrieb / Sales"  # a mailbox name a URL path could not carry


def _flagged_without_message_id() -> bytes:
    """Spam the upstream server flagged, with markup in its subject and no Message-ID."""
    msg = EmailMessage()
    msg["From"] = "Gewinnspiel <gewinn@lotto.example>"
    msg["To"] = "info@beispiel-shop.de"
    msg["Subject"] = '<b>Gewonnen</b> & "mehr"'
    msg["X-Spam-Flag"] = "YES"
    msg.set_content("Jetzt abholen")
    return msg.as_bytes()


@dataclass
class Connection:
    """One client's connection to the silent server: the commands it sent, and whether it
    closed the connection."""

    commands: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Silent:
    port: int
    greets: bool  # answers the greeting, CAPABILITY and LOGIN: silent from the listing on
    connections: list[Connection]


@pytest.fixture(params=["before its greeting", "after the login"])
async def silent_imap(request: pytest.FixtureRequest) -> AsyncIterator[Silent]:
    """An IMAP server that accepts connections and then never answers: before its greeting,
    or once a client logged in (greeting, CAPABILITY and LOGIN answered, nothing after)."""
    connections: list[Connection] = []
    greets = request.param == "after the login"
    open_ones: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        here = Connection()
        connections.append(here)
        me = asyncio.current_task()
        assert me is not None
        open_ones[me] = writer
        try:
            if greets:
                writer.write(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
            while line := await reader.readline():
                tag, command = [*line.split(maxsplit=2), b""][:2]
                here.commands.append(command.upper())
                if greets and command.upper() in (b"CAPABILITY", b"LOGIN"):
                    if command.upper() == b"CAPABILITY":
                        writer.write(b"* CAPABILITY IMAP4rev1\r\n")
                    writer.write(tag + b" OK done\r\n")
        except ConnectionError:
            pass
        here.closed.set()
        writer.close()
        del open_ones[me]

    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    yield Silent(server.sockets[0].getsockname()[1], greets, connections)
    server.close()
    # A connection the client left open (a failed test) ends here, not with the loop.
    for writer in open_ones.values():
        writer.close()
    if open_ones:
        await asyncio.wait(set(open_ones), timeout=5)


async def _rows(page: Page) -> list[str]:
    return [await row.inner_text() for row in await page.locator("table.held tbody tr").all()]


async def test_an_admin_sees_why_and_releases_spam_that_then_becomes_a_lead(
    console: Any, dovecot: Dovecot, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    service = await console(extra=[mail_component], mailboxes=[mailbox(dovecot)])
    await eventually(lambda: holds(worker_of(service).stats.waiting), what="worker waiting")
    await dovecot.append(_flagged_without_message_id())
    spoof = customer_mail('"service@paypal.com" <konto@verify-account.example>', subject="Konto")
    await dovecot.append(spoof)
    await dovecot.append(customer_mail("anna@gartenbau-schmidt.de"))
    # Mail is handled in order: once Anna's lead is there, both spam mails were filed.
    await eventually(lambda: count_is(service, 1), timeout=20, what="Anna's mail")
    # Moved there by a person (no keyword): not Leadbot's, not listed.
    await dovecot.append(customer_mail("privat@example.org"), SPAM)

    admin = await service.crm.reps.add("Ada Admin", role="admin")
    page = browser_page
    await sign_in(page, service, admin)
    await page.click("nav >> text=Quarantine")
    assert page.url.endswith("/app/quarantine")
    assert await page.inner_text("section.quarantine h2") == "sales 2 in Leadbot-Spam"
    spoofed, flagged = await _rows(page)  # newest first
    for row in (spoofed, flagged):  # when the server received it, in the team's time
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d\s", row), row
    assert "konto@verify-account.example" in spoofed and "Konto" in spoofed
    assert "markers 5 ≥ 5: display name is another address" in spoofed
    # The subject is text, never markup; the reason was found without a Message-ID.
    assert '<b>Gewonnen</b> & "mehr"' in flagged
    assert await page.locator("table.held b").count() == 0
    assert "Gewinnspiel <gewinn@lotto.example>" in flagged
    assert "X-Spam-Flag: YES" in flagged
    layers = page.locator("table.held td.why")
    assert await layers.evaluate_all("cells => cells.map(c => c.dataset.layer)") == [
        "markers",
        "headers",
    ]
    await shot(page, "quarantine")

    [_, flagged_uid] = [
        int(u)
        for u in await page.locator("table.held tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.uid)"
        )
    ]
    await page.click(f"tr[data-uid='{flagged_uid}'] >> text=Release")
    assert f"Released UID {flagged_uid} of sales: it is back in INBOX" in await page.inner_text(
        "#flashes"
    )
    [left] = await _rows(page)
    assert "Konto" in left

    # The running worker takes it as new mail, not as spam again.
    await eventually(lambda: count_is(service, 2), timeout=20, what="the released mail")
    found = await leads(service.db)
    assert len(found) == 2 and found[-1].title == '<b>Gewonnen</b> & "mehr"'
    released = [
        u
        for u in await dovecot.uids("INBOX")
        if RELEASED_KEYWORD in await dovecot.flags("INBOX", u)
    ]
    assert len(released) == 1
    assert SPAM_KEYWORD not in await dovecot.flags("INBOX", released[0])
    assert worker_of(service).stats.spam == {"headers": 1, "markers": 1}

    # The same button on a stale page: the mail is gone, and the page says so.
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    answer = await page.request.post(
        f"{console_url(service)}/app/quarantine/release",
        form={"_csrf": csrf or "", "mailbox": "sales", "uid": str(flagged_uid)},
    )
    assert answer.status == 200  # the list again, after the redirect
    assert answer.url.endswith("/app/quarantine?mailbox=sales")
    assert f"Not released: no mail {flagged_uid} in {SPAM} of mailbox sales" in (
        await answer.text()
    )


async def test_reps_are_refused_and_a_server_that_is_down_gets_a_polite_message(
    console: Any, dovecot: Dovecot, browser_page: Page, sign_in: SignIn, shot: Shot
) -> None:
    # No mail worker: the page works on the configured mailboxes alone.
    service = await console(mailboxes=[mailbox(dovecot, name=NAME)])
    await dovecot.create_folder(SPAM)
    uid = await dovecot.append(customer_mail("kunde@firma.example"), SPAM, flags=SPAM_KEYWORD)
    crm = service.crm
    rep = await crm.reps.add("Rita Rep")
    page = browser_page

    await sign_in(page, service, rep)
    assert await page.locator("nav >> text=Quarantine").count() == 0
    response = await page.goto(f"{console_url(service)}/app/quarantine")
    assert response is not None and response.status == 403
    assert "the quarantine is for supervisors and admins" in await page.inner_text("main")
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    release = f"{console_url(service)}/app/quarantine/release"
    forged = await page.request.post(
        release, form={"_csrf": csrf or "", "mailbox": NAME, "uid": str(uid)}
    )
    assert forged.status == 403
    for call in (
        crm.quarantine.held(NAME, Actor(rep.id, "rep")),
        crm.quarantine.release(NAME, uid, Actor(rep.id, "rep")),
    ):
        with pytest.raises(Forbidden):
            await call
    # A supervisor may: the mail is any rep's customer, and a release is what intake does.
    sam = await crm.reps.add("Sam Supervisor", role="supervisor")
    await sign_in(page, service, sam)
    await page.click("nav >> text=Quarantine")
    [row] = await _rows(page)
    assert "kunde@firma.example" in row and "not recorded" in row
    # Without the form's CSRF token even a supervisor's release is refused.
    tokenless = await page.request.post(release, form={"mailbox": NAME, "uid": str(uid)})
    assert tokenless.status == 403 and "security token" in await tokenless.text()

    assert await uids_in(dovecot, SPAM) == [uid]  # none of that moved it

    await dovecot.stop()
    response = await page.reload()
    assert response is not None and response.status == 200
    alert = await page.inner_text("section.quarantine [role=alert]")
    assert f"The spam folder cannot be read right now: mailbox {NAME}:" in alert
    assert "the IMAP server does not answer" in alert
    await shot(page, "quarantine-down")

    # The button of a page loaded before the outage: a message, not a server error.
    await dovecot.start()
    await page.reload()
    await dovecot.stop()
    await page.click(f"tr[data-uid='{uid}'] >> text=Release")
    flash = await page.inner_text("#flashes .flash.error")
    assert flash.startswith(f"Not released: mailbox {NAME}: the IMAP server does not answer")
    await dovecot.start()
    assert await uids_in(dovecot, SPAM) == [uid]

    # The server renumbered the folder after the page was read: the old UID may name another
    # mail now, so nothing is released.
    await page.reload()
    await dovecot.change_uidvalidity(SPAM)
    await page.click(f"tr[data-uid='{uid}'] >> text=Release")
    flash = await page.inner_text("#flashes .flash.error")
    assert flash == f"Not released: {SPAM} of mailbox {NAME} was renumbered since it was read"
    [uid] = await uids_in(dovecot, SPAM)

    # Released, whatever characters the mailbox's name holds.
    await page.click(f"tr[data-uid='{uid}'] >> text=Release")
    assert f"Released UID {uid} of {NAME}" in await page.inner_text("#flashes")
    assert await uids_in(dovecot, SPAM) == []


async def test_a_mailbox_whose_server_never_answers_shows_as_unreachable_within_the_timeout(
    console: Any,
    dovecot: Dovecot,
    silent_imap: Silent,
    browser_page: Page,
    sign_in: SignIn,
    tmp_path: Path,
) -> None:
    garbled = tmp_path / "imap-password"
    garbled.write_bytes(b"\xff\xfe\n")  # not UTF-8 text
    service = await console(
        mailboxes=[
            mailbox(dovecot),
            mailbox(dovecot, name="silent", port=silent_imap.port),
            mailbox(dovecot, name="garbled", password=None, password_file=str(garbled)),
        ],
        console={"quarantine_timeout": 1.0},
    )
    await dovecot.create_folder(SPAM)
    await dovecot.append(customer_mail("kunde@firma.example"), SPAM, flags=SPAM_KEYWORD)
    sam = await service.crm.reps.add("Sam Supervisor", role="supervisor")
    page = browser_page
    await sign_in(page, service, sam)

    started = time.monotonic()
    response = await page.goto(f"{console_url(service)}/app/quarantine")
    took = time.monotonic() - started
    assert response is not None and response.status == 200
    # The silent server costs the page its timeout (1 s): not an IMAP command's timeout (5 s
    # here, 10 s at most), nor 2 s more for a polite LOGOUT the server would not answer either.
    assert took < 2.5, took
    sales, silent, broken = await page.locator("section.quarantine").all()
    # Dovecot's mailbox is listed as ever, beside the one that did not answer.
    assert await sales.locator("h2").inner_text() == "sales 1 in Leadbot-Spam"
    [row] = await sales.locator("table.held tbody tr").all_inner_texts()
    assert "kunde@firma.example" in row
    alert = await silent.locator("[role=alert]").inner_text()
    assert alert.startswith(
        "The spam folder cannot be read right now: mailbox silent: "
        "the IMAP server did not answer within 1 s."
    ), alert
    assert await silent.locator("table").count() == 0
    # Whatever else goes wrong with one mailbox, it stays in its own section too.
    alert = await broken.locator("[role=alert]").inner_text()
    assert f"mailbox garbled: password_file {garbled} is not UTF-8 text" in alert, alert
    # The page let go of the server: nothing stays connected to it.
    [connection] = silent_imap.connections
    await eventually(lambda: holds(connection.closed.is_set()), what="the connection closed")
    # Logged in, the listing's first command got no answer; else nothing was sent.
    assert connection.commands[-1:] == ([b"SELECT"] if silent_imap.greets else [])

    # Try again: that mailbox alone, with the same answer in the same time.
    started = time.monotonic()
    await silent.locator("text=Try again").click()
    await page.wait_for_url(re.compile(r"/app/quarantine\?mailbox=silent$"))
    assert time.monotonic() - started < 2.5
    assert await page.locator("section.quarantine").count() == 1
    assert "did not answer within 1 s" in await page.inner_text("section.quarantine [role=alert]")
