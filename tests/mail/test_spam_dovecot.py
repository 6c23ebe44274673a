"""Spam through the real interfaces: Dovecot IMAP, a real spamd, /metrics and the
`leadbot mail release` command line. Spam lands in the spam folder, is counted, never becomes a
record; a released mail comes back and becomes a lead."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
import zipfile
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from channels.mail.spamguard import RELEASED_KEYWORD, SPAM_KEYWORD

from .dovecot import Dovecot
from .spamd import GTUBE
from .support import (
    count_is,
    customer_mail,
    event_count,
    eventually,
    leads,
    message_id,
    uids_in,
    watching,
    worker_of,
)

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"])]

Start = Callable[..., Awaitable[Any]]
SPAM = "Leadbot-Spam"
_RUN = "import sys\nfrom leadbot import cli\nsys.exit(cli.main(sys.argv[1:]))\n"


async def _metrics(port: int) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as r,
    ):
        return await r.text()


async def _release(dovecot: Dovecot, tmp_path: Path, which: str) -> tuple[int, str, str]:
    """`leadbot mail release sales WHICH` in a child process, as an operator runs it."""
    config = tmp_path / "leadbot.toml"
    config.write_text(
        f'[[mailboxes]]\nname = "sales"\nhost = "{dovecot.host}"\nport = {dovecot.port}\n'
        f'security = "none"\nuser = "{dovecot.user}"\npassword = "{dovecot.password}"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _RUN,
        "--config",
        str(config),
        "mail",
        "release",
        "sales",
        which,
        env={**os.environ, "LEADBOT_CONFIG": ""},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def _with_attachment(sender: str, filename: str, data: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "info@beispiel-shop.de"
    msg["Subject"] = "Ihre Rechnung"
    msg["Message-ID"] = f"<{filename}@rechnung.example>"
    msg.set_content("Im Anhang Ihre Rechnung.")
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    return msg.as_bytes()


async def test_gtube_goes_to_the_spam_folder_and_a_release_makes_it_a_lead(
    start_service: Start, dovecot: Dovecot, spamd_port: int, tmp_path: Path
) -> None:
    service = await watching(
        start_service, dovecot, spamd_host="127.0.0.1", spamd_port=spamd_port, spamd_timeout=30
    )
    spam = customer_mail("angebot@kunde.example", subject="Anfrage", body=f"Hallo\n{GTUBE}\n")
    spam_uid = await dovecot.append(spam)
    await dovecot.append(customer_mail("anna@gartenbau-schmidt.de"))
    # Mail is handled in order: once Anna's lead is there, the GTUBE mail was judged.
    await eventually(lambda: count_is(service, 1), timeout=30, what="Anna's mail")

    [lead] = await leads(service.db)
    assert spam_uid not in await dovecot.uids("INBOX")
    [in_spam] = await eventually(lambda: uids_in(dovecot, SPAM), what="the spam folder")
    assert SPAM_KEYWORD in await dovecot.flags(SPAM, in_spam)
    assert worker_of(service).stats.spam == {"scanner": 1}
    metrics = await _metrics(service.port)
    assert 'leadbot_mail_spam_total{layer="scanner",mailbox="sales"} 1.0' in metrics
    assert 'leadbot_mail_unscanned_total{mailbox="sales"} 0.0' in metrics

    # A rep says it was a customer after all: released by its Message-ID.
    code, out, err = await _release(dovecot, tmp_path, message_id(spam))
    assert code == 0, err
    assert f"released UID {in_spam} from {SPAM} to INBOX" in out
    await eventually(lambda: count_is(service, 2), timeout=30, what="the released mail")
    found = await leads(service.db)
    assert len(found) == 2 and found[0].id == lead.id
    assert await uids_in(dovecot, SPAM) == []
    [back] = [
        u
        for u in await dovecot.uids("INBOX")
        if RELEASED_KEYWORD in await dovecot.flags("INBOX", u)
    ]
    assert SPAM_KEYWORD not in await dovecot.flags("INBOX", back)
    assert worker_of(service).stats.spam == {"scanner": 1}  # not judged again

    # Releasing what is not (or no longer) there says so.
    code, _, err = await _release(dovecot, tmp_path, str(in_spam))
    assert code == 2 and f"no mail {in_spam} in {SPAM}" in err


async def test_phishing_shapes_are_kept_out_without_a_scanner(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("Rechnung_2026.pdf.js", b"WScript.Shell")
    phishing = [
        customer_mail('"service@paypal.com" <konto@verify-account.example>', subject="Konto"),
        _with_attachment("buchhaltung@lieferant.example", "Rechnung.pdf.exe", b"MZ"),
        _with_attachment("buchhaltung@lieferant.example", "Rechnung.zip", archive.getvalue()),
    ]
    flagged = EmailMessage()
    flagged["From"] = "gewinn@lotto.example"
    flagged["To"] = "info@beispiel-shop.de"
    flagged["Subject"] = "Sie haben gewonnen"
    flagged["X-Spam-Flag"] = "YES"
    flagged["X-Spam-Status"] = "Yes, score=12.1 required=5.0"
    flagged.set_content("Jetzt abholen")
    for raw in [*phishing, flagged.as_bytes()]:
        await dovecot.append(raw)
    await dovecot.append(customer_mail("anna@gartenbau-schmidt.de"))

    await eventually(lambda: count_is(service, 1), timeout=20, what="Anna's mail")
    assert [lead.title for lead in await leads(service.db)] == ["Anfrage Pflanzkübel"]
    assert len(await uids_in(dovecot, SPAM)) == 4
    assert worker_of(service).stats.spam == {"markers": 3, "headers": 1}
    metrics = await _metrics(service.port)
    assert 'leadbot_mail_spam_total{layer="markers",mailbox="sales"} 3.0' in metrics
    assert "leadbot_mail_unscanned_total{" not in metrics  # no scanner configured


async def test_moving_spam_back_by_hand_releases_it(
    start_service: Start, dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="channels.mail.worker")
    service = await watching(start_service, dovecot)
    raw = customer_mail("einkauf@firma.example", subject="Bestellung", body="Geheime Preise")
    flagged = raw.replace(b"Subject:", b"X-Spam-Flag: YES\nSubject:", 1)
    await dovecot.append(flagged)
    [uid] = await eventually(lambda: uids_in(dovecot, SPAM), what="the spam folder")
    assert await leads(service.db) == []
    [line] = [r.getMessage() for r in caplog.records if "spam folder" in r.getMessage()]
    assert f"from einkauf@firma.example goes to spam folder {SPAM}: X-Spam-Flag: YES" in line
    assert "Geheime" not in line  # the reason, never the body

    await dovecot.move(uid, SPAM, "INBOX")  # a rep drags it back in the mail client

    [lead] = await eventually(lambda: leads(service.db), what="the released mail's lead")
    assert lead.title == "Bestellung"
    assert await uids_in(dovecot, SPAM) == []
    assert worker_of(service).stats.spam == {"headers": 1}


async def test_a_scanner_that_is_down_loses_no_mail(
    start_service: Start, dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.servers import free_port

    caplog.set_level(logging.WARNING, logger="channels.mail.spamguard")
    service = await watching(start_service, dovecot, spamd_host="127.0.0.1", spamd_port=free_port())
    await dovecot.append(customer_mail("anna@gartenbau-schmidt.de"))
    await dovecot.append(customer_mail("bernd@koch.example"))

    await eventually(lambda: count_is(service, 2), timeout=20, what="both mails")
    assert len(await leads(service.db)) == 2 and await event_count(service.db) == 2
    assert worker_of(service).spam_guard.unscanned == 2
    assert 'leadbot_mail_unscanned_total{mailbox="sales"} 2.0' in await _metrics(service.port)
    # Logged once for the outage, not once per mail.
    down = [r for r in caplog.records if "spam scanner unavailable" in r.getMessage()]
    assert len(down) == 1


async def test_the_command_line_releases_by_uid_without_a_running_service(
    backend: str, dovecot: Dovecot, tmp_path: Path
) -> None:
    """`leadbot mail release` alone (the GTUBE test above needs spamd): the mail is back in the
    watched folder with the keywords swapped."""
    await dovecot.create_folder(SPAM)
    uid = await dovecot.append(customer_mail("kunde@firma.example"), SPAM, flags=SPAM_KEYWORD)
    code, out, err = await _release(dovecot, tmp_path, str(uid))
    assert code == 0, err
    assert out.strip() == f"released UID {uid} from {SPAM} to INBOX"
    [back] = await dovecot.uids("INBOX")
    flags = await dovecot.flags("INBOX", back)
    assert RELEASED_KEYWORD in flags and SPAM_KEYWORD not in flags
    assert await uids_in(dovecot, SPAM) == []
