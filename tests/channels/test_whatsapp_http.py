"""The WhatsApp webhook over real HTTP: subscription check, signed deliveries, forgeries."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import aiohttp
import pytest

from channels.whatsapp.routes import whatsapp_component
from crm.models import Activity, InboundEventLog, Lead
from leadbot.app import Service
from tests.channels.service_helpers import count, processed

TOKEN = "verify-me-123"
SECRET = "app-secret-xyz"
SECTION = {"verify_token": TOKEN, "app_secret": SECRET}


def message(wa_id: str, msg_id: str, text: str) -> dict[str, Any]:
    return {
        "from": wa_id,
        "id": msg_id,
        "timestamp": "1717000000",
        "type": "text",
        "text": {"body": text},
    }


def payload(*values: dict[str, Any]) -> bytes:
    """A webhook body as Meta sends it: one entry per value, non-ASCII escaped."""
    entries = [
        {"id": f"WABA-{i}", "changes": [{"field": "messages", "value": value}]}
        for i, value in enumerate(values)
    ]
    body = {"object": "whatsapp_business_account", "entry": entries}
    return json.dumps(body, ensure_ascii=True).encode()


def value(messages: list[dict[str, Any]], names: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "4930999888", "phone_number_id": "PNID-1"},
        "contacts": [{"profile": {"name": n}, "wa_id": w} for w, n in names.items()],
        "messages": messages,
        **extra,
    }


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post(service: Service, body: bytes, signature: str | None) -> aiohttp.ClientResponse:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{service.port}/hooks/whatsapp"
        async with http.post(url, data=body, headers=headers) as response:
            await response.read()
            return response


async def whatsapp_service(start_service: Any, **section: Any) -> Service:
    service: Service = await start_service(
        components=[whatsapp_component], whatsapp={**SECTION, **section}
    )
    return service


async def test_subscription_check_echoes_the_challenge_only_for_our_token(
    start_service: Any,
) -> None:
    service = await whatsapp_service(start_service)
    url = f"http://127.0.0.1:{service.port}/hooks/whatsapp"
    good = {"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "1158201444"}
    async with aiohttp.ClientSession() as http:
        async with http.get(url, params=good) as r:
            assert r.status == 200 and await r.text() == "1158201444"
        for bad in (
            {**good, "hub.verify_token": "guess"},
            {**good, "hub.mode": "unsubscribe"},
            {"hub.mode": "subscribe", "hub.verify_token": TOKEN},
        ):
            async with http.get(url, params=bad) as r:
                assert r.status == 403
                assert (await r.json())["error"] == "verification_failed"


async def test_signed_batch_becomes_leads_and_redelivery_changes_nothing(
    start_service: Any,
) -> None:
    service = await whatsapp_service(start_service)
    rep = await service.crm.reps.add("Rita")
    body = payload(
        value(
            [
                message("491711234567", "wamid.A1", "Grüße, ich brauche ein Angebot"),
                message("79161234567", "wamid.A2", "Привет"),
            ],
            {"491711234567": "Jürgen Müller", "79161234567": "Иван"},
            statuses=[{"id": "wamid.OUT", "status": "read", "recipient_id": "491711234567"}],
        ),
        value([message("491711234567", "wamid.B1", "Noch eine Frage")], {}),
    )
    response = await post(service, body, sign(body))
    assert response.status == 200
    first = await processed(service.crm, "whatsapp", "wamid.A1")
    await processed(service.crm, "whatsapp", "wamid.A2")
    follow_up = await processed(service.crm, "whatsapp", "wamid.B1")
    assert first.outcome == "new_lead"
    assert follow_up.outcome == "attached_lead" and follow_up.lead_id == first.lead_id

    lead = await service.crm.leads.get(first.lead_id or 0)
    assert lead.title == "WhatsApp: Jürgen Müller" and lead.source == "WHATSAPP"
    assert lead.responsible_id == rep.id
    assert {(c.kind, c.value) for c in lead.comms} == {
        ("phone", "+491711234567"),
        ("whatsapp", "491711234567"),
    }
    acts = await service.crm.activities.of_record("lead", lead.id)
    assert [(a.kind, a.body) for a in acts] == [
        ("message", "Grüße, ich brauche ein Angebot"),
        ("message", "Noch eine Frage"),
    ]

    # Meta delivers the same batch again: answered 200, nothing new.
    again = await post(service, body, sign(body))
    assert again.status == 200
    marker = payload(value([message("4915112345678", "wamid.C1", "hi")], {}))
    assert (await post(service, marker, sign(marker))).status == 200
    await processed(service.crm, "whatsapp", "wamid.C1")  # the queue is first in, first out
    assert await count(service.crm, Lead) == 3
    assert await count(service.crm, Activity) == 4
    assert await count(service.crm, InboundEventLog) == 4


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "sha256=" + "0" * 64,
        "sha1=abc",
        "signed-with-another-secret",
    ],
)
async def test_forged_or_missing_signature_gets_401_and_creates_nothing(
    start_service: Any, signature: str | None
) -> None:
    service = await whatsapp_service(start_service)
    body = payload(value([message("491711234567", "wamid.F1", "forged")], {}))
    if signature == "signed-with-another-secret":
        signature = sign(body, "not-the-app-secret")
    response = await post(service, body, signature)
    assert response.status == 401
    # The body was signed for another body: also refused.
    tampered = body.replace(b"forged", b"faked!")
    assert (await post(service, tampered, sign(body))).status == 401
    marker = payload(value([message("4915112345678", "wamid.OK", "real")], {}))
    assert (await post(service, marker, sign(marker))).status == 200
    await processed(service.crm, "whatsapp", "wamid.OK")
    assert await service.crm.events.get("whatsapp", "wamid.F1") is None
    assert await count(service.crm, Lead) == 1


async def test_statuses_only_and_unreadable_signed_bodies_are_acknowledged(
    start_service: Any,
) -> None:
    service = await whatsapp_service(start_service)
    statuses = payload(
        value([], {}, statuses=[{"id": "wamid.OUT", "status": "delivered", "recipient_id": "1"}])
    )
    assert (await post(service, statuses, sign(statuses))).status == 200
    for junk in (b"not json", b'{"object":"page","entry":[]}', b'{"entry":[{"changes":7}]}'):
        assert (await post(service, junk, sign(junk))).status == 200
    marker = payload(value([message("4915112345678", "wamid.OK", "real")], {}))
    await post(service, marker, sign(marker))
    await processed(service.crm, "whatsapp", "wamid.OK")
    assert await count(service.crm, InboundEventLog) == 1


async def metric(service: Service, line_start: str) -> str:
    url = f"http://127.0.0.1:{service.port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        text = await r.text()
    return next((line for line in text.splitlines() if line.startswith(line_start)), "")


LENA = "DE.13491208655302741918"  # a business-scoped user id (BSUID)


async def test_username_senders_and_bad_messages_do_not_cost_the_others_of_a_post(
    start_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """2026 payloads: a user who adopted a username comes without `from`, keyed by the
    business-scoped user id; a broken message in the same POST is logged, counted, dropped."""
    service = await whatsapp_service(start_service)
    username_only = {
        "from_user_id": LENA,
        "id": "wamid.U1",
        "timestamp": "1780000000",
        "type": "text",
        "text": {"body": "Ich heiße Lena, bitte um Rückruf"},
    }
    no_sender = {**message("1", "wamid.BAD", "lost?"), "from": ""}
    body = payload(
        {
            **value([message("491711234567", "wamid.P1", "Hallo"), no_sender, username_only], {}),
            "contacts": [
                {"profile": {"name": "Peter"}, "wa_id": "491711234567"},
                {
                    "profile": {"name": "Lena K.", "username": "lena.k"},
                    "user_id": LENA,
                },
            ],
        }
    )
    response = await post(service, body, sign(body))
    assert response.status == 200
    peter = await processed(service.crm, "whatsapp", "wamid.P1")
    lena = await processed(service.crm, "whatsapp", "wamid.U1")
    assert peter.outcome == lena.outcome == "new_lead" and peter.lead_id != lena.lead_id
    assert await service.crm.events.get("whatsapp", "wamid.BAD") is None
    assert any("wamid.BAD" in r.getMessage() and "sender" in r.getMessage() for r in caplog.records)
    rejected = await metric(service, "leadbot_inbound_rejected_total{")
    assert rejected == 'leadbot_inbound_rejected_total{channel="whatsapp"} 1.0'

    lead = await service.crm.leads.get(lena.lead_id or 0)
    assert lead.title == "WhatsApp: Lena K."
    assert {(c.kind, c.value) for c in lead.comms} == {("whatsapp", LENA)}

    # Later Meta knows her number too (she wrote from it, or it is in the contact book): the
    # same lead, now with the phone.
    later = payload(
        value(
            [{**message("491609876543", "wamid.U2", "Noch da?"), "from_user_id": LENA}],
            {},
            contacts=[
                {
                    "profile": {"name": "Lena K.", "username": "lena.k"},
                    "wa_id": "491609876543",
                    "user_id": LENA,
                }
            ],
        )
    )
    assert (await post(service, later, sign(later))).status == 200
    again = await processed(service.crm, "whatsapp", "wamid.U2")
    assert again.outcome == "attached_lead" and again.lead_id == lena.lead_id
    lead = await service.crm.leads.get(lena.lead_id or 0)
    assert {(c.kind, c.value) for c in lead.comms} == {
        ("whatsapp", LENA),
        ("whatsapp", "491609876543"),
        ("phone", "+491609876543"),
    }
    assert await count(service.crm, Lead) == 2


async def test_new_whatsapp_leads_go_round_robin_through_the_configured_queue(
    start_service: Any,
) -> None:
    service = await whatsapp_service(start_service, queue=[2, 3])
    reps = [await service.crm.reps.add(name) for name in ("Anna", "Ben", "Cem")]
    assert [r.id for r in reps] == [1, 2, 3]
    body = payload(
        value([message(f"49171123456{i}", f"wamid.Q{i}", "hallo") for i in range(3)], {})
    )
    await post(service, body, sign(body))
    owners = [(await processed(service.crm, "whatsapp", f"wamid.Q{i}")).lead_id for i in range(3)]
    responsible = [(await service.crm.leads.get(lead or 0)).responsible_id for lead in owners]
    assert responsible in ([2, 3, 2], [3, 2, 3])


def test_unconfigured_whatsapp_is_off_and_half_configured_is_an_error() -> None:
    from leadbot.settings import ConfigError, Settings

    class Fake:
        def __init__(self, **section: Any) -> None:
            self.settings = Settings(whatsapp=section)

    assert whatsapp_component(Fake()) is None  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"whatsapp\.app_secret"):
        whatsapp_component(Fake(verify_token="t"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"whatsapp\.verify_token"):
        whatsapp_component(Fake(app_secret="s"))  # type: ignore[arg-type]
