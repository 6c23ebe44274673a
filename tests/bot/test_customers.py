"""Customers in Telegram, end to end through the fake Bot API on SQLite and PostgreSQL: the
phone question, held messages joining the record with that phone, files as metadata, and reps
answering from the card."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.customers import ASK, NOT_NOW, SHARE, THANKS_NO_PHONE, THANKS_PHONE
from bot.lists import (
    STRANGER,
)
from crm.services.listing import ListFilter
from tests.bot.conftest import TOKEN, World, button
from tests.bot.token_router import TokenRouter
from tests.fakes.telegram_api import FakeTelegram

RITA = 1001
ANNA = 5001
BERT = 5002
JsonDict = dict[str, Any]


def keyboard_sent(tg: FakeTelegram, chat: int) -> JsonDict:
    """The reply_markup of the last message the bot sent to `chat` (reply keyboards are not
    stored with the message, so this reads the request)."""
    sent = [c for c in tg.calls("sendMessage") if c.params.get("chat_id") == chat]
    return dict(sent[-1].params.get("reply_markup") or {})


async def leads(w: World) -> list[Any]:
    found, _ = await w.crm.leads.page(ListFilter())
    return list(found)


async def one_lead(w: World) -> Any:
    async def exists() -> bool:
        return len(await leads(w)) == 1

    await w.wait_until(exists)
    return (await leads(w))[0]


async def test_a_customer_is_asked_once_and_reps_answer_from_the_card(world: Any) -> None:
    w: World = await world()
    rita = await w.rep("Rita", RITA)
    w.tg.user(ANNA, "Anna", "anna_m")
    asked = await w.say(ANNA, "Hallo, was kostet <b>das</b> Paket?")
    assert asked["text"] == ASK
    markup = keyboard_sent(w.tg, ANNA)
    assert markup["keyboard"][0][0] == {"text": SHARE, "request_contact": True}
    assert markup["keyboard"][1][0]["text"] == NOT_NOW and markup["one_time_keyboard"] is True
    assert await leads(w) == []  # held until the phone question is answered

    w.tg.user_message(ANNA, "Und liefern Sie auch?")  # the question stays open: no second ask
    w.tg.shared_contact(ANNA, "49301234567", contact_user_id=ANNA)
    thanks = await w.card(ANNA)
    assert thanks["text"] == THANKS_PHONE
    assert keyboard_sent(w.tg, ANNA) == {"remove_keyboard": True}

    new, news = await w.new_messages(RITA, 2)
    assert new["text"].startswith("🆕 New lead")
    assert "+49301234567" in new["text"] and "telegram @anna_m" in new["text"]
    assert "was kostet <b>das</b> Paket?" in new["text"]  # shown literally
    assert "channel telegram · source TELEGRAM" in new["text"]
    assert news["text"].startswith("💬 New message on lead #")
    lead = await one_lead(w)
    assert lead.responsible_id == rita.id and lead.name == "Anna"
    assert {(c.kind, c.value) for c in lead.comms} == {
        ("phone", "+49301234567"),
        ("telegram", str(ANNA)),
    }
    acts = await w.crm.activities.of_record("lead", lead.id)
    assert [(a.kind, a.direction, a.body) for a in acts] == [
        ("message", "incoming", "Hallo, was kostet <b>das</b> Paket?"),
        ("message", "incoming", "Und liefern Sie auch?"),
    ]

    # Reply: the rep's next message goes to the customer, as typed.
    answer = "Guten Tag! Das Paket kostet <100 € & die Lieferung ist frei."
    told = await w.reply(RITA, "Anna", "Telegram", answer, card=new)
    assert told == "✉️ Sent to Anna via Telegram."
    relayed = await w.card(ANNA)
    assert relayed["text"] == answer
    acts = await w.crm.activities.of_record("lead", lead.id)
    out = [a for a in acts if a.direction == "outgoing"]
    assert [(a.kind, a.body, a.author_id, a.channel) for a in out] == [
        ("message", answer, rita.id, "telegram")
    ]

    # The customer writes back: same lead, a card for Rita, never a second phone question.
    w.tg.user_message(ANNA, "Super, danke!")
    card = await w.card(RITA)
    assert card["text"].startswith(f"💬 New message on lead #{lead.id}")
    assert "Super, danke!" in card["text"]
    assert len(await leads(w)) == 1
    assert [m["text"] for m in w.tg.sent_messages(ANNA)] == [ASK, THANKS_PHONE, answer]


async def test_not_now_and_no_answer_let_held_messages_go_on(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    await w.say(ANNA, "Frage 1")
    assert (await w.say(ANNA, NOT_NOW))["text"] == THANKS_NO_PHONE
    assert keyboard_sent(w.tg, ANNA) == {"remove_keyboard": True}
    lead = await one_lead(w)
    assert [c.kind for c in lead.comms] == ["telegram"]
    await w.card(RITA)

    # A phone shared later still lands on the same lead, without a second question.
    w.tg.shared_contact(ANNA, "+49 30 7654321", contact_user_id=ANNA)
    assert (await w.card(ANNA))["text"] == THANKS_PHONE
    await w.card(RITA)
    lead = await w.crm.leads.get(lead.id)
    assert ("phone", "+49307654321") in {(c.kind, c.value) for c in lead.comms}

    # Nobody answers the question: after the wait the message goes on as it is.
    await w.say(BERT, "Hallo?")
    w.advance(minutes=3)

    async def two() -> bool:
        return len(await leads(w)) == 2

    await w.wait_until(two)
    card = await w.card(RITA)
    assert card["text"].startswith("🆕 New lead") and "Hallo?" in card["text"]


async def test_start_greets_and_asks_while_reps_keep_their_bot(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    greeting = await w.say(ANNA, "/start")
    assert greeting["text"].startswith("Hello! Write us your question here")
    assert keyboard_sent(w.tg, ANNA)["keyboard"][0][0]["request_contact"] is True
    # A phone before any message: the contact itself is the news.
    w.tg.shared_contact(ANNA, "+49 30 1234567", contact_user_id=ANNA)
    assert (await w.card(ANNA))["text"] == THANKS_PHONE
    card = await w.card(RITA)
    assert "Shared their phone number +49 30 1234567" in card["text"]
    # Reps are still reps: their messages are never customer events.
    assert (await w.say(RITA, "/help"))["text"].startswith("Leadbot")
    await w.settle()
    assert len(await leads(w)) == 1


def _incoming(tg: FakeTelegram, user: int, message_id: int, **content: Any) -> None:
    sender = tg.user(user)
    chat = {"id": user, "type": "private", "first_name": sender["first_name"]}
    message = {"message_id": message_id, "from": sender, "chat": chat, "date": int(time.time())}
    tg.inject_update({"message": {**message, **content}})


async def test_files_and_other_peoples_contacts_are_metadata(world: Any) -> None:
    w: World = await world(telegram={"ask_phone": False})
    await w.rep("Rita", RITA)
    w.tg.user(ANNA, "Anna")
    photo = [
        {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90, "file_size": 900},
        {"file_id": "big", "file_unique_id": "b", "width": 800, "height": 800, "file_size": 64000},
    ]
    _incoming(w.tg, ANNA, 901, photo=photo, caption="Unser Lager <3")
    first = await w.card(RITA)
    assert "Unser Lager <3" in first["text"] and "📎 photo.jpg (image/jpeg, 62 KB)" in first["text"]
    doc = {"file_id": "d1", "file_unique_id": "d", "file_name": "Anfrage & Maße.pdf",
           "mime_type": "application/pdf", "file_size": 2_500_000}  # fmt: skip
    _incoming(w.tg, ANNA, 902, document=doc)
    assert "📎 Anfrage & Maße.pdf (application/pdf, 2.4 MB)" in (await w.card(RITA))["text"]
    voice = {"file_id": "v1", "file_unique_id": "v", "duration": 7, "file_size": 5000}
    _incoming(w.tg, ANNA, 903, voice=voice)
    assert "📎 voice.ogg (audio/ogg, 5 KB)" in (await w.card(RITA))["text"]
    w.tg.shared_contact(ANNA, "+49 30 999999", contact_user_id=777, first_name="Bob")
    assert "📎 contact card: Bob +49 30 999999" in (await w.card(RITA))["text"]

    lead = await one_lead(w)
    assert [c.kind for c in lead.comms] == ["telegram"]  # someone else's number is not hers
    acts = await w.crm.activities.of_record("lead", lead.id)
    assert [a.meta["attachments"] for a in acts] == [
        [{"name": "photo.jpg", "content_type": "image/jpeg", "size": 64000}],
        [{"name": "Anfrage & Maße.pdf", "content_type": "application/pdf", "size": 2_500_000}],
        [{"name": "voice.ogg", "content_type": "audio/ogg", "size": 5000}],
        [{"name": "contact card: Bob +49 30 999999", "content_type": "text/vcard", "size": 0}],
    ]
    assert acts[0].meta["telegram_files"] == ["big"] and acts[2].meta["duration"] == 7


CUSTOMER_TOKEN = "654321:CUSTOMER-TOKEN"


@pytest.fixture
async def customer_tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(bot_id=7000000002, bot_username="acme_help_bot") as server:
        yield server


@pytest.fixture
async def router(tg: FakeTelegram, customer_tg: FakeTelegram) -> AsyncIterator[TokenRouter]:
    async with TokenRouter({TOKEN: tg, CUSTOMER_TOKEN: customer_tg}) as server:
        yield server


async def test_a_second_bot_serves_customers(
    customer_tg: FakeTelegram, router: TokenRouter, world: Callable[..., Any]
) -> None:
    # The router is set up before the service, so it outlives it.
    telegram = {"base_url": router.base_url, "customer_token": CUSTOMER_TOKEN, "ask_phone": False}
    w: World = await world(telegram=telegram)
    await w.rep("Rita", RITA)
    customer_tg.user(ANNA, "Anna")
    customer_tg.user_message(ANNA, "Hallo vom Kundenbot")
    card = await w.card(RITA)  # on the rep bot
    assert "Hallo vom Kundenbot" in card["text"]
    await w.press(RITA, card["message_id"], button(card, "💬 Reply"))
    await w.card(RITA)
    w.tg.user_message(RITA, "Antwort")
    await customer_tg.wait_for("sendMessage", predicate=lambda c: c.params["chat_id"] == ANNA)
    assert [m["text"] for m in customer_tg.sent_messages(ANNA)] == ["Antwort"]
    assert (await w.card(RITA))["text"] == "✉️ Sent to Anna via Telegram."
    # On the rep bot a stranger is still only told who the bot is for.
    assert (await w.say(BERT, "Hallo?"))["text"] == STRANGER
    await w.settle()
    assert len(await leads(w)) == 1


async def test_a_second_bot_offers_customers_only_start(
    customer_tg: FakeTelegram, router: TokenRouter, world: Callable[..., Any]
) -> None:
    telegram = {"base_url": router.base_url, "customer_token": CUSTOMER_TOKEN}
    w: World = await world(telegram=telegram)
    await w.rep("Rita", RITA)

    async def registered() -> bool:
        return "leads" in w.tg.menu(RITA) and bool(customer_tg.menu(ANNA))

    await w.wait_until(registered)
    assert customer_tg.menu(ANNA) == ["start"]
    assert customer_tg.menu(RITA) == ["start"]  # a rep writing to the customer bot is a customer
    # The rep bot is for reps only: a stranger sees /start (to join), never the reps' commands.
    assert w.tg.menu(BERT) == ["start"] and "leads" in w.tg.menu(RITA)
