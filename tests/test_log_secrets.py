"""No secret in any log line: `leadbot serve` at DEBUG with every channel on, driven through
each channel's real interface, and every line it writes searched for every secret.

The secrets are distinctive strings, so a hit is a leak and not a coincidence. Requests with
forged tokens (a Bitrix24 URL, an `lb_` token, a bearer token) are sent too: what a client
sends as a token must not be logged either, even though it is not ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from bot.component import CUSTOMER_HOOK
from channels.phone.signatures import GENERIC_HEADER, sign_generic
from tests.bot.token_router import TokenRouter
from tests.channels.test_whatsapp_http import message, payload, sign, value
from tests.conftest import PG_ADMIN_DSN, _pg_admin, leadbot_process
from tests.fakes.telegram_api import FakeTelegram
from tests.mail.dovecot import DOVECOT, Dovecot

REP_TOKEN = "7301234567:AAFrepBotTokenLogTest_q8Zr3Kx2Vw9Lm4Np"
CUSTOMER_TOKEN = "7309876543:AAGcustomerBotLogTest-h5Tj7Yd1Bc6Qs0"
TG_WEBHOOK_SECRET = "tgHookSecret-LogTest-3kD9"
PHONE_SECRET = "phoneHookSecret-LogTest-8sQ2"
TWILIO_TOKEN = "twilioAuthToken-LogTest-5vR1"
BITRIX_TOKEN = "bitrixRestToken-LogTest-2mW7"
LOOKUP_TOKEN = "lookupBearer-LogTest-6yH4"
WA_VERIFY = "waVerifyToken-LogTest-9pL3"
WA_SECRET = "waAppSecret-LogTest-1cF8"
SMS_TOKEN = "smsAuthToken-LogTest-6tN2"
# IMAP quotes '"' and '\' with a backslash: aioimaplib hides the password as given, not the
# quoted form it sends.
MAIL_PASSWORD = 'mailPass-LogTest"Q\\7-4nB6'
DB_PASSWORD = "dbPassword-LogTest-7gK5"
# Sent, but not configured anywhere: found by their shapes.
FORGED_BITRIX = "forgedBitrixToken-LogTest-0aZ1"
FORGED_API = "lb_forgedApiTokenLogTest0123456789abcdefghij"
FORGED_BEARER = "forgedLookupBearer-LogTest-3eE3"

REP_CHAT = 501
CUSTOMER_CHAT = 777
PUBLIC = "https://crm.example.com"


def _forms(secret: str) -> set[str]:
    """What gives a secret away: the secret as is, URL-quoted, and its distinctive part
    alone (escaped or cut short, a leak still shows that)."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    core = secret.rsplit(":", 1)[-1]  # a bot token's secret half, without the bot id
    if "LogTest" in core:
        forms.add(re.split(r"[-_]?LogTest", core)[0])
    return forms


class Output:
    """Everything a child process writes, collected while it runs (a full pipe would stall
    it), line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.lines: list[str] = []
        self._new = asyncio.Event()
        assert proc.stdout is not None and proc.stderr is not None
        self.tasks = [
            asyncio.create_task(self._drain(proc.stdout)),
            asyncio.create_task(self._drain(proc.stderr)),
        ]

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace"))
            self._new.set()

    async def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    found = regex.search(line)
                    if found:
                        return found
                self._new.clear()
                await self._new.wait()


async def _run(*args: str, env: dict[str, str]) -> tuple[str, str]:
    proc = await leadbot_process(*args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return out.decode(), err.decode()


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database; its URL carries a password (trust auth ignores it)."""
    name = f"leadbot_logs_{uuid.uuid4().hex[:8]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    host = PG_ADMIN_DSN.split("@", 1)[1].rsplit("/", 1)[0]
    user = PG_ADMIN_DSN.split("://", 1)[1].split("@", 1)[0].split(":")[0]
    yield f"postgresql+asyncpg://{user}:{DB_PASSWORD}@{host}/{name}"
    await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def dovecot_server() -> AsyncIterator[Dovecot | None]:
    """A real IMAP server whose password needs IMAP quoting; None where Dovecot is missing."""
    if not DOVECOT.exists():
        yield None
        return
    server = Dovecot()
    server.password = MAIL_PASSWORD
    try:
        await server.start()
        yield server
    finally:
        await server.close()


def _config(path: Path, db_url: str, tg_base: str, dovecot: Dovecot | None) -> None:
    mailbox = ""
    if dovecot is not None:
        mailbox = f"""
[[mailboxes]]
name = "sales"
host = "127.0.0.1"
port = {dovecot.port}
security = "none"
user = "{dovecot.user}"
password_env = "LEADBOT_TEST_MAIL_PASSWORD"
poll_interval = 1
"""
    path.write_text(
        f"""
log_level = "DEBUG"

[http]
host = "127.0.0.1"
port = 0
public_url = "{PUBLIC}"

[database]
url = "{db_url}"
echo = true

[telegram]
token = "{REP_TOKEN}"
customer_token = "{CUSTOMER_TOKEN}"
base_url = "{tg_base}"
mode = "webhook"
webhook_secret = "{TG_WEBHOOK_SECRET}"
outbox_poll_interval = 0.1
duties_interval = 0.5

[phone]
webhook_secret = "{PHONE_SECRET}"
twilio_auth_token = "{TWILIO_TOKEN}"
twilio_public_url = "{PUBLIC}"
bitrix_token = "{BITRIX_TOKEN}"
lookup_token = "{LOOKUP_TOKEN}"
region = "DE"

[whatsapp]
verify_token = "{WA_VERIFY}"
app_secret = "{WA_SECRET}"

[sms]
account_sid = "AC{"0" * 32}"
auth_token = "{SMS_TOKEN}"
from_number = "+4989111333"
public_url = "{PUBLIC}"

[[forms]]
key = "contact"
{mailbox}"""
    )


async def _drive(
    http: aiohttp.ClientSession,
    base: str,
    rep_bot: FakeTelegram,
    customer_bot: FakeTelegram,
    api_token: str,
) -> None:
    """Each channel through its own interface, with good and bad requests."""

    async def send(method: str, path: str, expect: int, **kwargs: Any) -> None:
        async with http.request(method, base + path, **kwargs) as r:
            body = await r.read()
            assert r.status == expect, (method, path[:80], r.status, body[:300])

    # Telegram webhooks, signed and forged; the rep bot answers its rep.
    hook = "/hooks/telegram"
    secret = {"X-Telegram-Bot-Api-Secret-Token": TG_WEBHOOK_SECRET}
    update = rep_bot.user_message(REP_CHAT, "/start")
    await send("POST", hook, 200, json=update, headers=secret)
    await rep_bot.wait_for("sendMessage", predicate=lambda c: c.params["chat_id"] == REP_CHAT)
    forged = {"X-Telegram-Bot-Api-Secret-Token": "not-" + TG_WEBHOOK_SECRET[4:]}
    await send("POST", hook, 403, json=update, headers=forged)
    update = customer_bot.user_message(CUSTOMER_CHAT, "Hallo, ich brauche ein Angebot")
    await send("POST", hook + CUSTOMER_HOOK, 200, json=update, headers=secret)
    await customer_bot.wait_for(
        "sendMessage", predicate=lambda c: c.params["chat_id"] == CUSTOMER_CHAT, timeout=30
    )

    # The generic call webhook, signed and with a signature of a wrong secret.
    doc = {"event": "call.missed", "call_id": "log-1", "direction": "incoming",
           "from": "+4930555111", "to": "+4989111222"}  # fmt: skip
    body = json.dumps(doc).encode()
    signed = {"Content-Type": "application/json", GENERIC_HEADER: ""}
    signed[GENERIC_HEADER] = sign_generic(PHONE_SECRET, int(time.time()), body)
    await send("POST", "/hooks/calls", 202, data=body, headers=signed)
    signed[GENERIC_HEADER] = sign_generic("wrong", int(time.time()), body)
    await send("POST", "/hooks/calls", 401, data=body, headers=signed)

    # Twilio, signed the way Twilio signs (over the public URL).
    form = {"CallSid": "CA" + "1" * 32, "AccountSid": "AC" + "0" * 32, "From": "+4930555222",
            "To": "+4989111222", "CallStatus": "ringing", "Direction": "inbound",
            "ApiVersion": "2010-04-01"}  # fmt: skip
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        PUBLIC + "/hooks/twilio/voice", form
    )
    await send("POST", "/hooks/twilio/voice", 200, data=form,
               headers={"X-Twilio-Signature": signature})  # fmt: skip

    # Bitrix24 REST: good, bad (unparsable body, unknown user, forged token), over-long URL.
    rest = f"/rest/1/{BITRIX_TOKEN}/telephony.externalcall.register"
    good = {"USER_ID": 1, "PHONE_NUMBER": "+4930555333", "TYPE": 2, "CRM_CREATE": 1}
    await send("POST", rest, 200, json=good)
    await send("POST", rest, 400, data=b"{oops", headers={"Content-Type": "application/json"})
    await send("GET", rest + "?USER_ID=99&PHONE_NUMBER=1&TYPE=2", 400)
    await send("GET", rest.replace(BITRIX_TOKEN, FORGED_BITRIX) + "?USER_ID=1", 401)
    with contextlib.suppress(aiohttp.ClientError):  # the server may just hang up
        async with http.get(base + rest + "?PHONE_NUMBER=" + "1" * 20_000) as r:
            assert r.status in (400, 414), r.status

    # Caller lookup, with its bearer token and with a wrong one.
    for token, expect in ((LOOKUP_TOKEN, 200), (FORGED_BEARER, 401)):
        await send("GET", "/hooks/calls/lookup?number=%2B4930555111", expect,
                   headers={"Authorization": f"Bearer {token}"})  # fmt: skip

    # WhatsApp: the subscription check (ours and a wrong token), a signed and a forged POST.
    check = "/hooks/whatsapp?hub.mode=subscribe&hub.challenge=4711&hub.verify_token="
    await send("GET", check + WA_VERIFY, 200)
    await send("GET", check + "wrong-" + WA_VERIFY, 403)
    wa = payload(value([message("4915112345678", "wamid.LOG1", "Hallo")], {"4915112345678": "Ute"}))
    headers = {"Content-Type": "application/json"}
    await send("POST", "/hooks/whatsapp", 200, data=wa,
               headers={**headers, "X-Hub-Signature-256": sign(wa, WA_SECRET)})  # fmt: skip
    await send("POST", "/hooks/whatsapp", 401, data=wa,
               headers={**headers, "X-Hub-Signature-256": sign(wa, "wrong")})  # fmt: skip

    # Twilio SMS, signed over the public URL, and with a signature of a wrong token.
    sms = {"MessageSid": "SM" + "2" * 32, "AccountSid": "AC" + "0" * 32, "From": "+4930555666",
           "To": "+4989111333", "Body": "Hallo per SMS", "NumMedia": "0"}  # fmt: skip
    for token, expect in ((SMS_TOKEN, 200), ("wrong-" + SMS_TOKEN, 403)):
        signature = RequestValidator(token).compute_signature(PUBLIC + "/hooks/twilio/sms", sms)
        await send("POST", "/hooks/twilio/sms", expect, data=sms,
                   headers={"X-Twilio-Signature": signature})  # fmt: skip

    # A web form.
    fields = {"name": "Jana Log", "email": "jana.log@example.de", "phone": "030 5554444"}
    await send("POST", "/forms/contact", 202, json=fields)

    # The REST API with the token `leadbot token create` made, and with a forged one.
    await send("GET", "/api/v1/leads", 200, headers={"Authorization": f"Bearer {api_token}"})
    await send("GET", "/api/v1/leads", 401, headers={"Authorization": f"Bearer {FORGED_API}"})
    await send("GET", "/api/v1/leads?token=" + FORGED_API, 401)


async def _mail_read(dovecot: Dovecot, uid: int) -> None:
    """Wait until the mail channel has logged in and taken the message (it flags it)."""
    for _ in range(200):
        if "\\Seen" in await dovecot.flags("INBOX", uid):
            return
        await asyncio.sleep(0.3)
    raise AssertionError("the mail channel did not take the message")


async def test_no_secret_in_any_log_line_at_debug(
    tmp_path: Path, pg_database: str, dovecot_server: Dovecot | None
) -> None:
    async with (
        FakeTelegram() as rep_bot,
        FakeTelegram(bot_id=7309876543, bot_username="leadbot_customers_bot") as customer_bot,
        TokenRouter({REP_TOKEN: rep_bot, CUSTOMER_TOKEN: customer_bot}) as router,
    ):
        config = tmp_path / "leadbot.toml"
        _config(config, pg_database, router.base_url, dovecot_server)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}
        env.update(LEADBOT_CONFIG=str(config), LEADBOT_TEST_MAIL_PASSWORD=MAIL_PASSWORD)

        lines: list[str] = []
        for args in (("db", "upgrade"), ("rep", "add", "Anna", "--telegram-id", str(REP_CHAT))):
            out, err = await _run(*args, env=env)
            lines += (out + err).splitlines()
        out, err = await _run("token", "create", "ci", env=env)
        api_token = out.strip().splitlines()[-1]  # printed once, on purpose: not a log line
        assert api_token.startswith("lb_")
        lines += err.splitlines()

        mail_uid = None
        if dovecot_server is not None:
            mail = EmailMessage()
            mail["From"] = "Kunde <kunde.log@example.com>"
            mail["To"] = "sales@example.com"
            mail["Subject"] = "Anfrage"
            mail["Date"] = format_datetime(datetime.now(UTC))
            mail["Message-ID"] = "<log-test-1@example.com>"
            mail.set_content("Bitte um ein Angebot.")
            mail_uid = await dovecot_server.append(mail.as_bytes())

        proc = await leadbot_process("serve", env=env)
        output = Output(proc)
        try:
            port = int((await output.wait_for(r"listening on http://127\.0\.0\.1:(\d+)"))[1])
            await output.wait_for(r"Telegram bot @\S+ is running", timeout=60)
            async with aiohttp.ClientSession() as http:
                await _drive(http, f"http://127.0.0.1:{port}", rep_bot, customer_bot, api_token)
            if dovecot_server is not None and mail_uid is not None:
                await _mail_read(dovecot_server, mail_uid)
            # Cards of the new leads reach the rep: Bot API calls with the token in the URL.
            await rep_bot.wait_for(
                "sendMessage", count=3, timeout=30,
                predicate=lambda c: c.params["chat_id"] == REP_CHAT,
            )  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 60)
            await asyncio.gather(*output.tasks)
        assert code == 0, "".join(output.lines[-30:])
        lines += output.lines

    secrets = [REP_TOKEN, CUSTOMER_TOKEN, TG_WEBHOOK_SECRET, PHONE_SECRET, TWILIO_TOKEN,
               BITRIX_TOKEN, LOOKUP_TOKEN, WA_VERIFY, WA_SECRET, SMS_TOKEN, DB_PASSWORD, api_token,
               FORGED_BITRIX, FORGED_API, FORGED_BEARER]  # fmt: skip
    if dovecot_server is not None:
        secrets.append(MAIL_PASSWORD)
    leaks = [
        f"{secret!r} in: {line.strip()[:300]}"
        for line in lines
        for secret in secrets
        if any(form in line for form in _forms(secret))
    ]
    assert not leaks, f"{len(leaks)} leaks:\n" + "\n".join(leaks[:20])
    # The level came from the config, and the chatty libraries did talk (with the tokens
    # redacted).
    assert any(" DEBUG " in line for line in lines)
    assert any(" httpx: HTTP Request: POST" in line for line in lines)
    if dovecot_server is not None:  # aioimaplib logs the LOGIN command at DEBUG
        assert any("LOGIN" in line for line in lines)


async def test_a_rejected_bot_token_is_not_in_the_warning(tmp_path: Path) -> None:
    """python-telegram-bot names the token in its error ("The token `…` was rejected"),
    and the bot logs that error at WARNING while it retries: the default level shows it."""
    async with TokenRouter({}) as router:  # knows no bot: every token gets 401
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}
        env.update(
            LEADBOT_DATABASE__URL=f"sqlite+aiosqlite:///{tmp_path / 'leadbot.db'}",
            LEADBOT_HTTP__PORT="0",
            LEADBOT_TELEGRAM__TOKEN=REP_TOKEN,
            LEADBOT_TELEGRAM__BASE_URL=router.base_url,
        )
        await _run("db", "upgrade", env=env)
        proc = await leadbot_process("serve", env=env)
        output = Output(proc)
        try:
            await output.wait_for(r"Telegram not reachable")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 60)
            await asyncio.gather(*output.tasks)
    assert code == 0, "".join(output.lines[-30:])
    rejected = [line for line in output.lines if "Telegram not reachable" in line]
    assert rejected and all("was rejected" in line for line in rejected)
    leaks = [line for line in output.lines if any(f in line for f in _forms(REP_TOKEN))]
    assert not leaks, leaks
