"""Twilio SMS end to end over real HTTP: a signed incoming message makes a lead and a rep card,
a known number's message lands on the same lead, a replay changes nothing, and the rep's
💬 Reply goes out through the (fake) Twilio REST API and is recorded."""

from __future__ import annotations

import json
from base64 import b64encode
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from channels.sms.routes import PATH, sms_component
from crm.services.listing import ListFilter
from tests.bot.conftest import World
from tests.fakes.twilio_rest import FakeTwilioRest

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "smsAuthToken-test-4kQ9"
OURS = "+4930555000"
PUBLIC = "https://crm.example.com"
RITA = 1001
ANNA = "+491711234567"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilioRest]:
    async with FakeTwilioRest(ACCOUNT, TOKEN) as server:
        yield server


def sms_section(twilio: FakeTwilioRest) -> dict[str, Any]:
    return {"account_sid": ACCOUNT, "auth_token": TOKEN, "from_number": OURS,
            "public_url": PUBLIC, "api_base_url": twilio.url, "regions": {OURS: "DE"}}  # fmt: skip


async def sms_world(world: Any, twilio: FakeTwilioRest) -> World:
    w: World = await world(extra=[sms_component], sms=sms_section(twilio))
    await w.rep("Rita", RITA)
    return w


def incoming(sid: str, sender: str, body: str, **extra: str) -> dict[str, str]:
    return {"MessageSid": sid, "SmsSid": sid, "AccountSid": ACCOUNT, "From": sender, "To": OURS,
            "Body": body, "NumMedia": "0", "NumSegments": "1", "FromCountry": "DE",
            "ApiVersion": "2010-04-01", **extra}  # fmt: skip


async def post(
    w: World, params: dict[str, str], signature: str | None = None
) -> tuple[int, str, str]:
    """POST the form as Twilio would, signed for the public URL unless told otherwise."""
    sig = signature or RequestValidator(TOKEN).compute_signature(PUBLIC + PATH, params)
    headers = {"X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"}
    url = f"http://127.0.0.1:{w.service.port}{PATH}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=urlencode(params), headers=headers) as resp,
    ):
        return resp.status, resp.content_type, await resp.text()


def sid(n: int) -> str:
    return f"SM{n:032x}"


async def test_an_sms_makes_a_lead_a_known_number_attaches_and_the_rep_answers_by_sms(
    world: Any, twilio: FakeTwilioRest
) -> None:
    w = await sms_world(world, twilio)
    status, kind, body = await post(w, incoming(sid(1), ANNA, "Hallo, was kostet das Paket?"))
    assert (status, kind) == (200, "text/xml") and body.endswith("<Response/>")
    card = await w.card(RITA)
    assert card["text"].startswith("🆕 New lead")
    assert "Hallo, was kostet das Paket?" in card["text"] and "source SMS" in card["text"]
    leads, total = await w.crm.leads.page(ListFilter())
    assert total == 1 and leads[0].title == f"SMS: {ANNA}" and leads[0].source == "SMS"

    # Twilio delivers the same message again: nothing new.
    assert (await post(w, incoming(sid(1), ANNA, "Hallo, was kostet das Paket?")))[0] == 200
    # The same number written the national way: the same person, the same lead.
    assert (await post(w, incoming(sid(2), "0171 1234567", "Und die Lieferung?")))[0] == 200
    news = await w.card(RITA)
    assert news["text"].startswith(f"💬 New message on lead #{leads[0].id}")
    await w.settle()
    assert (await w.crm.leads.page(ListFilter()))[1] == 1
    acts = await w.crm.activities.of_record("lead", leads[0].id)
    assert [(a.kind, a.channel, a.body) for a in acts] == [
        ("message", "sms", "Hallo, was kostet das Paket?"),
        ("message", "sms", "Und die Lieferung?"),
    ]

    answer = "Guten Tag! Das Paket kostet 100 € & die Lieferung ist frei."
    told = await w.reply(RITA, "the customer", "SMS", answer, card=news)
    assert told == "✉️ Sent to the customer via SMS."
    [sent] = twilio.sent
    assert sent.form == {"To": ANNA, "From": OURS, "Body": answer}
    assert sent.account == ACCOUNT
    assert sent.authorization == "Basic " + b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    acts = await w.crm.activities.of_record("lead", leads[0].id)
    out = [a for a in acts if a.direction == "outgoing"]
    assert [(a.kind, a.channel, a.body, a.counterparty) for a in out] == [
        ("message", "sms", answer, ANNA)
    ]
    assert out[0].meta["message_sid"] == sent.sid


async def test_the_answer_goes_out_from_the_number_the_customer_wrote_to(
    world: Any, twilio: FakeTwilioRest
) -> None:
    w = await sms_world(world, twilio)
    other = "+4940777000"  # a second number of ours on the same account
    assert (await post(w, incoming(sid(5), ANNA, "Hallo Hamburg", To=other)))[0] == 200
    card = await w.card(RITA)
    told = await w.reply(RITA, "the customer", "SMS", "Moin!", card=card)
    assert told == "✉️ Sent to the customer via SMS."
    assert twilio.sent[-1].form == {"To": ANNA, "From": other, "Body": "Moin!"}
    # She writes to the main number next: the next answer comes from there.
    assert (await post(w, incoming(sid(6), ANNA, "Und Berlin?")))[0] == 200
    card = await w.card(RITA)
    await w.reply(RITA, "the customer", "SMS", "Auch.", card=card)
    assert twilio.sent[-1].form == {"To": ANNA, "From": OURS, "Body": "Auch."}
    leads, _ = await w.crm.leads.page(ListFilter())
    acts = await w.crm.activities.of_record("lead", leads[0].id)
    assert [a.meta["from"] for a in acts if a.direction == "outgoing"] == [other, OURS]


async def test_twilio_refusing_the_reply_is_told_to_the_rep_and_nothing_is_recorded(
    world: Any, twilio: FakeTwilioRest
) -> None:
    w = await sms_world(world, twilio)
    twilio.refuse[ANNA] = (21610, "Attempt to send to unsubscribed recipient")
    assert (await post(w, incoming(sid(3), ANNA, "STOP? Nein, Angebot bitte")))[0] == 200
    card = await w.card(RITA)
    await w.press_label(RITA, card["message_id"], "💬 Reply")
    await w.card(RITA)
    w.tg.user_message(RITA, "Gern!")
    told = await w.card(RITA)
    assert "unsubscribed recipient" in told["text"] and "21610" in told["text"]
    leads, _ = await w.crm.leads.page(ListFilter())
    acts = await w.crm.activities.of_record("lead", leads[0].id)
    assert [a for a in acts if a.direction == "outgoing"] == []


async def test_forged_and_unreadable_requests_are_refused_with_a_json_reason(
    world: Any, twilio: FakeTwilioRest
) -> None:
    w = await sms_world(world, twilio)
    good = incoming(sid(4), ANNA, "Hallo")
    status, kind, body = await post(w, good, signature="bm90IHRoZSBzaWduYXR1cmU=")
    assert (status, kind, json.loads(body)["error"]) == (403, "application/json", "bad_signature")
    tampered = RequestValidator(TOKEN).compute_signature(PUBLIC + PATH, good)
    status, _, _ = await post(w, {**good, "Body": "Hallo, anders"}, signature=tampered)
    assert status == 403
    for bad in ({k: v for k, v in good.items() if k != "From"},
                {**good, "From": "whatsapp:+491711234567"},
                {**good, "MessageSid": "CA" + "0" * 32},
                {**good, "NumMedia": "lots"}):  # fmt: skip
        status, kind, body = await post(w, bad)
        assert (status, kind) == (400, "application/json"), bad
        assert json.loads(body)["detail"]
    url = f"http://127.0.0.1:{w.service.port}{PATH}"
    async with aiohttp.ClientSession() as http, http.post(url, json=good) as resp:
        assert resp.status == 400
    await w.settle()
    assert (await w.crm.leads.page(ListFilter()))[1] == 0
