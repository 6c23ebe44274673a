"""The pure spam layers (verdict headers, cheap markers) and the spamd wire format, on
hand-made mails; the real spamd answers GTUBE."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from email.message import EmailMessage

import pytest

from channels.mail import parse_message
from channels.mail.spam import SpamLayer, SpamPolicy, SpamVerdict, judge
from channels.mail.spamd import SpamdClient, SpamdError, parse_answer
from channels.mail.spamguard import RETRY_SCANNER_SECONDS, SpamConfig, SpamGuard, spam_id

from .spamd import GTUBE
from .support import customer_mail


def mail(
    sender: str = "Anna Schmidt <anna@gartenbau-schmidt.de>",
    *,
    headers: dict[str, str] | None = None,
    reply_to: str | None = None,
    attachments: dict[str, bytes] | None = None,
    body: str = "Guten Tag,\nbitte ein Angebot für 40 Pflanzkübel.\nGruß Anna",
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "info@beispiel-shop.de"
    msg["Subject"] = "Anfrage"
    msg["Message-ID"] = "<spam-test@example.org>"
    if reply_to:
        msg["Reply-To"] = reply_to
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    for filename, data in (attachments or {}).items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    return msg.as_bytes()


def verdict(raw: bytes, policy: SpamPolicy | None = None) -> SpamVerdict | None:
    return judge(raw, parse_message(raw), policy or SpamPolicy())


def zipped(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, b"MZ fake")
    return buffer.getvalue()


def test_an_ordinary_customer_mail_is_no_spam() -> None:
    assert verdict(mail()) is None
    assert verdict(customer_mail("anna@gmail.com", name="Anna")) is None
    with_pdf = mail(attachments={"Grundriss.pdf": b"%PDF-1.4", "fotos.zip": zipped("a.jpg")})
    assert verdict(with_pdf) is None


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("X-Spam-Flag", "YES", "X-Spam-Flag: YES"),
        (
            "X-Spam-Status",
            "Yes, score=7.3 required=5.0 tests=HTML_MESSAGE,URIBL_BLACK",
            "score=7.3",
        ),
        ("X-Spam", "Yes", "X-Spam: Yes"),
        ("X-Rspamd-Action", "add header", "X-Rspamd-Action: add header"),
        ("X-Rspamd-Action", "rewrite  subject", "rewrite subject"),
        ("X-Rspamd-Action", "reject", "reject"),
        ("X-Spamd-Result", "default: True [16.20 / 15.00]; R_SPF_FAIL(1.00)[-all]", "16.20"),
        (
            "Authentication-Results",
            "mx.beispiel-shop.de; dkim=none; spf=softfail smtp.mailfrom=evil.example; "
            "dmarc=fail (p=REJECT sp=REJECT dis=NONE) header.from=paypal.com",
            "dmarc=fail, policy reject",
        ),
        (
            "Authentication-Results",
            'mx.beispiel-shop.de; dmarc=fail reason="No valid SPF, No valid DKIM" '
            "header.from=sparkasse.de (policy=quarantine)",
            "policy quarantine",
        ),
        (
            "Authentication-Results",
            "spf=fail smtp.mailfrom=dhl.com; dmarc=fail action=quarantine header.from=dhl.com",
            "policy quarantine",
        ),
    ],
)
def test_the_upstream_servers_verdict_is_honoured(header: str, value: str, reason: str) -> None:
    found = verdict(mail(headers={header: value}))
    assert found is not None and found.layer is SpamLayer.HEADERS
    assert reason in found.reason
    assert "URIBL_BLACK" not in found.reason  # the verdict, not the long list of tests
    # An operator whose server adds no such headers (anyone could forge them) turns it off.
    assert verdict(mail(headers={header: value}), SpamPolicy(trust_headers=False)) is None


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Spam-Flag", "NO"),
        ("X-Spam-Status", "No, score=1.2 required=5.0 tests=HTML_MESSAGE"),
        ("X-Rspamd-Action", "no action"),
        ("X-Rspamd-Action", "greylist"),
        ("X-Spamd-Result", "default: False [2.10 / 15.00]"),
        ("Authentication-Results", "mx.example; dmarc=pass header.from=gartenbau-schmidt.de"),
        # A failing domain that asks for nothing (p=none) is the owner's test phase.
        ("Authentication-Results", "mx.example; dmarc=fail (p=NONE dis=NONE) header.from=x.de"),
    ],
)
def test_clean_verdicts_and_soft_dmarc_pass(header: str, value: str) -> None:
    assert verdict(mail(headers={header: value})) is None


def test_a_display_name_showing_another_domains_address_is_phishing() -> None:
    found = verdict(mail('"support@paypal.com" <service@konto-check.example>'))
    assert found is not None and found.layer is SpamLayer.MARKERS
    assert "support@paypal.com shown, sent from konto-check.example" in found.reason
    # Encoded words do not hide it.
    encoded = mail("=?utf-8?q?kundenservice=40sparkasse=2Ede?= <x@mailer.example>")
    assert verdict(encoded) is not None
    # Outlook's habit of naming a sender by his own address (or a colleague's) is fine.
    assert verdict(mail('"anna@gartenbau-schmidt.de" <anna@gartenbau-schmidt.de>')) is None
    assert verdict(mail('"info@gartenbau-schmidt.de" <anna@mail.gartenbau-schmidt.de>')) is None


def test_reply_to_elsewhere_with_a_free_mail_side_needs_company() -> None:
    advance_fee = mail("Dr. James Brown <j.brown.un@gmail.com>", reply_to="claims@un-fund.example")
    assert verdict(advance_fee) is None  # alone: customers do write from Gmail to work
    with_page = mail(
        "Dr. James Brown <j.brown.un@gmail.com>",
        reply_to="claims@un-fund.example",
        attachments={"Formular.html": b"<form action=https://evil.example>"},
    )
    found = verdict(with_page)
    assert found is not None
    assert "Reply-To on un-fund.example, From on gmail.com" in found.reason
    assert "web page attachment Formular.html" in found.reason
    # A lower threshold lets the reply-to alone count.
    assert verdict(advance_fee, SpamPolicy(marker_score=3)) is not None
    # Reply-To on the sender's own domain, or neither side free mail: no marker.
    own = mail("anna@gmail.com", reply_to="anna.schmidt@gmail.com")
    firm = mail("anna@gartenbau-schmidt.de", reply_to="einkauf@schmidt-holding.de")
    assert verdict(own, SpamPolicy(marker_score=1)) is None
    assert verdict(firm, SpamPolicy(marker_score=1)) is None


def test_a_form_robots_reply_to_is_no_trick() -> None:
    form = mail("WordPress <wordpress@beispiel-shop.de>", reply_to="lukas@gmail.com")
    loose = SpamPolicy(marker_score=3)
    assert judge(form, parse_message(form), loose, robot=True) is None
    assert judge(form, parse_message(form), loose) is not None


def test_spam_settings_reach_the_worker_config_and_are_checked() -> None:
    from channels.mail.component import mailbox_config
    from crm.config import ConfigError
    from leadbot.settings import MailboxSettings

    base = {"name": "sales", "host": "imap.example.org", "user": "info@shop.de", "password": "x"}
    box = MailboxSettings(**base, spam_folder="Junk", spamd_host="spam.lan", spam_markers=False)
    config = mailbox_config(box, "x", frozenset(), "DE")
    assert config.spam.folder == "Junk" and not config.spam.policy.markers
    assert config.spam.spamd is not None and config.spam.spamd.port == 783
    assert mailbox_config(MailboxSettings(**base), "x", frozenset(), "DE").spam.spamd is None
    with pytest.raises(ConfigError, match="spam folders must differ"):
        mailbox_config(MailboxSettings(**base, spam_folder="INBOX"), "x", frozenset(), "DE")


@pytest.mark.parametrize(
    "filename", ["Rechnung.pdf.exe", "invoice.SCR", "scan.js", "Lieferschein.iso", "setup.msi"]
)
def test_executable_attachments_are_spam(filename: str) -> None:
    found = verdict(mail(attachments={filename: b"MZ"}))
    assert found is not None and filename in found.reason


def test_archives_are_looked_into() -> None:
    found = verdict(mail(attachments={"Rechnung.zip": zipped("Rechnung_0815.pdf.vbs")}))
    assert found is not None and "Rechnung.zip holds Rechnung_0815.pdf.vbs" in found.reason
    assert verdict(mail(attachments={"Fotos.zip": zipped("a.jpg", "b.png")})) is None
    # A broken zip or an archive that cannot be listed is judged by its name.
    assert verdict(mail(attachments={"x.zip": b"not a zip"})) is None
    assert verdict(mail(attachments={"x.rar": b"Rar!"})) is None  # weight 2 alone
    assert verdict(mail(attachments={"x.rar": b"Rar!"}), SpamPolicy(marker_score=2)) is not None


def test_markers_can_be_turned_off() -> None:
    raw = mail(attachments={"Rechnung.exe": b"MZ"})
    assert verdict(raw, SpamPolicy(markers=False)) is None
    with pytest.raises(ValueError, match="positive"):
        SpamPolicy(marker_score=0)


# --- spamd -----------------------------------------------------------------------------------


def test_spamd_answers_are_read() -> None:
    answer = parse_answer(
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 27\r\nSpam: True ; 1002.7 / 5.0\r\n\r\n"
        b"GTUBE,MISSING_DATE,NO_RELAYS"
    )
    assert (answer.spam, answer.score, answer.threshold) == (True, 1002.7, 5.0)
    assert answer.symbols == ("GTUBE", "MISSING_DATE", "NO_RELAYS")
    clean = parse_answer(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; -0.1 / 5.0\r\n\r\n")
    assert (clean.spam, clean.score, clean.symbols) == (False, -0.1, ())
    for bad in (
        b"",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"SPAMD/1.0 76 Bad header line: (EOF)\r\n",
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n",
    ):
        with pytest.raises(SpamdError):
            parse_answer(bad)


async def test_real_spamd_catches_gtube_and_passes_a_customer(spamd_port: int) -> None:
    client = SpamdClient("127.0.0.1", spamd_port, timeout=30)
    spam = await client.symbols(customer_mail("x@example.org", body=f"Hallo\n{GTUBE}\n"))
    assert spam.spam and "GTUBE" in spam.symbols
    ham = await client.symbols(customer_mail("anna@gartenbau-schmidt.de"))
    assert not ham.spam


async def test_spamd_down_is_a_clear_error() -> None:
    from tests.servers import free_port

    with pytest.raises(SpamdError, match=r"spamd at 127\.0\.0\.1"):
        await SpamdClient("127.0.0.1", free_port(), timeout=2).symbols(b"x")


async def test_a_hanging_scanner_costs_one_timeout_then_mail_goes_on_unscanned() -> None:
    """spamd accepts but never answers: the first mail waits the timeout, the next ones go on
    at once until the retry time; then the scanner is asked again."""
    connections: list[asyncio.StreamWriter] = []

    async def hang(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    now = [1000.0]
    config = SpamConfig(spamd=SpamdClient("127.0.0.1", port, timeout=0.3))
    guard = SpamGuard(config, "sales", clock=lambda: now[0])
    raw = customer_mail("anna@gartenbau-schmidt.de")
    try:
        started = time.monotonic()
        assert await guard.check(raw, parse_message(raw), robot=False) is None
        assert await guard.check(raw, parse_message(raw), robot=False) is None
        assert time.monotonic() - started < 1.0  # one timeout, not two
        assert (guard.unscanned, len(connections)) == (2, 1)
        now[0] += RETRY_SCANNER_SECONDS
        assert await guard.check(raw, parse_message(raw), robot=False) is None
        assert (guard.unscanned, len(connections)) == (3, 2)  # asked again
        # Header and marker layers still work while the scanner is away.
        exe = mail(attachments={"setup.exe": b"MZ"})
        found = await guard.check(exe, parse_message(exe), robot=False)
        assert found is not None and found.layer is SpamLayer.MARKERS
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


def test_a_spam_note_is_keyed_by_message_id_or_else_by_the_header_section() -> None:
    """The worker keys a note from the whole mail, the quarantine page from the header section
    it fetched: both must give the same key, whatever the line endings."""
    raw = b"From: a@x.example\r\nSubject: Gewinn\r\n\r\nJetzt abholen\r\n"
    header = b"From: a@x.example\nSubject: Gewinn\n\n"
    assert spam_id(None, raw) == spam_id(None, header)
    assert spam_id(None, raw).endswith("@header.leadbot>")
    assert spam_id(None, raw) != spam_id(None, raw.replace(b"a@x", b"b@x"))
    assert spam_id("<m@x.example>", raw) == "<m@x.example>"
