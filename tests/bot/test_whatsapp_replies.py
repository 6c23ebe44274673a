"""A rep answers a WhatsApp customer from the card: the reply goes out through the Cloud API's
send endpoint (a local fake over real HTTP), only within the 24-hour customer-service window,
and a refusal, a server error or a timeout is told to the rep without sending twice."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from channels.whatsapp.routes import whatsapp_component
from channels.whatsapp.sender import WINDOW, window_closed
from crm.dto import ActivityView
from crm.services.listing import ListFilter
from tests.bot.conftest import World
from tests.channels.test_whatsapp_http import SECTION, payload, sign
from tests.fakes.whatsapp_cloud import FakeCloudApi

PNID = "109876543210"
ACCESS = "EAAG-test-access-token"
RITA = 1001
ANNA_WA = "491711234567"
ANNA_BSUID = "DE.13491208655302741918"


@pytest.fixture
async def cloud() -> AsyncIterator[FakeCloudApi]:
    async with FakeCloudApi(PNID, ACCESS) as server:
        yield server


def wa_section(cloud: FakeCloudApi, **extra: Any) -> dict[str, Any]:
    return {**SECTION, "phone_number_id": PNID, "access_token": ACCESS,
            "api_base_url": cloud.url, "api_version": "v23.0", **extra}  # fmt: skip


async def wa_world(world: Any, cloud: FakeCloudApi, **section: Any) -> World:
    w: World = await world(extra=[whatsapp_component], whatsapp=wa_section(cloud, **section))
    await w.rep("Rita", RITA)
    return w


async def incoming(
    w: World, msg_id: str, text: str, *, wa_id: str | None = ANNA_WA, age_hours: float = 0
) -> None:
    """A signed Cloud API webhook with one text message, `age_hours` old."""
    contact: dict[str, Any] = {"profile": {"name": "Anna Schmidt"}, "user_id": ANNA_BSUID}
    message: dict[str, Any] = {"from_user_id": ANNA_BSUID, "id": msg_id, "type": "text",
                               "timestamp": str(int(time.time() - age_hours * 3600)),
                               "text": {"body": text}}  # fmt: skip
    if wa_id is not None:
        contact["wa_id"] = message["from"] = wa_id
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "4930999888", "phone_number_id": PNID},
             "contacts": [contact], "messages": [message]}  # fmt: skip
    body = payload(value)
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}
    assert await w.post("/hooks/whatsapp", body, headers) == 200


async def answer(w: World, text: str) -> str:
    """Press 💬 Reply on the newest card, type `text`; what the rep is told."""
    return await w.reply(RITA, "Anna Schmidt", "WhatsApp", text)


async def outgoing(w: World) -> list[Any]:
    leads, _ = await w.crm.leads.page(ListFilter())
    acts = await w.crm.activities.of_record("lead", leads[0].id)
    return [a for a in acts if a.direction == "outgoing"]


async def test_a_reply_goes_out_by_the_cloud_api_to_the_wa_id_and_is_recorded(
    world: Any, cloud: FakeCloudApi
) -> None:
    w = await wa_world(world, cloud)
    await incoming(w, "wamid.IN1", "Hallo, habt ihr das in Blau?")
    text = "Ja, in Blau ab Montag — 49 € <inkl.> Versand & Steuer."
    assert await answer(w, text) == "✉️ Sent to Anna Schmidt via WhatsApp."
    [sent] = cloud.sent
    assert (sent.version, sent.phone_number_id) == ("v23.0", PNID)
    assert sent.authorization == f"Bearer {ACCESS}"
    assert sent.body == {"messaging_product": "whatsapp", "recipient_type": "individual",
                         "to": ANNA_WA, "type": "text",
                         "text": {"body": text, "preview_url": False}}  # fmt: skip
    [out] = await outgoing(w)
    assert (out.kind, out.channel, out.body, out.author_id) == ("message", "whatsapp", text, 1)
    assert out.meta["wamid"] == sent.wamid


async def test_a_customer_known_only_by_bsuid_is_answered_through_recipient(
    world: Any, cloud: FakeCloudApi
) -> None:
    w = await wa_world(world, cloud)
    await incoming(w, "wamid.IN2", "Hallo, ich bin nur per Username erreichbar", wa_id=None)
    assert await answer(w, "Gern, was brauchen Sie?") == "✉️ Sent to Anna Schmidt via WhatsApp."
    [sent] = cloud.sent
    assert sent.body["recipient"] == ANNA_BSUID and "to" not in sent.body


async def test_outside_the_24_hour_window_the_rep_is_told_before_typing_and_nothing_is_sent(
    world: Any, cloud: FakeCloudApi
) -> None:
    w = await wa_world(world, cloud)
    await incoming(w, "wamid.IN3", "Angebot bitte", age_hours=25)
    card = await w.card(RITA)
    told = (await w.press_label(RITA, card["message_id"], "💬 Reply"))["text"]
    assert told == (
        "WhatsApp allows a free-form reply only within 24 hours of the customer's last message "
        "(they last wrote 25 hours ago). Nothing was sent; call them or wait until they write "
        "again."
    )
    assert len(told) <= 190  # fits Telegram's button answer whole
    assert cloud.requests == 0 and await outgoing(w) == []


def test_the_window_is_24_hours_from_the_customers_last_message() -> None:
    wrote = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    message = ActivityView(
        1, "message", "incoming", None, "hi", None, True, wrote, None, None, None,
        "whatsapp", ANNA_WA, 0, wrote, {}, [], wrote + timedelta(seconds=3),
    )  # fmt: skip
    assert window_closed(message, wrote + timedelta(hours=23, minutes=59)) is None
    assert "(they last wrote 24 hours ago)" in str(window_closed(message, wrote + WINDOW))
    assert "have not written on WhatsApp" in str(window_closed(None, wrote))


async def test_meta_refusing_a_closed_window_reads_the_same(
    world: Any, cloud: FakeCloudApi
) -> None:
    w = await wa_world(world, cloud)
    cloud.refuse[ANNA_WA] = (400, 131047, "Re-engagement message")
    await incoming(w, "wamid.IN4", "Hallo")
    told = await answer(w, "Hallo Anna")
    assert "only within 24 hours" in told and "Nothing was sent" in told
    assert await outgoing(w) == []


@pytest.mark.parametrize("fault", ["refused", "server error", "timeout"])
async def test_api_errors_are_told_and_nothing_is_sent_twice(
    world: Any, cloud: FakeCloudApi, fault: str
) -> None:
    w = await wa_world(world, cloud, timeout=0.5)
    if fault == "refused":
        cloud.refuse[ANNA_WA] = (400, 131026, "Message undeliverable")
    elif fault == "server error":
        cloud.fail_status = 503
    else:
        cloud.delay = 2.0
    await incoming(w, "wamid.IN5", "Hallo")
    told = await answer(w, "Hallo Anna")
    if fault == "refused":
        assert told == "WhatsApp did not send the message: Message undeliverable (error 131026)."
    elif fault == "server error":
        assert "HTTP 503" in told and "may or may not have been sent" in told
    else:
        assert "did not answer" in told and "TimeoutError" in told
    # One request, never retried behind the rep's back; nothing recorded as sent.
    assert cloud.requests == 1 and await outgoing(w) == []
