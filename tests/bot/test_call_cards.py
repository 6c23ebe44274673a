"""The call card: a PBX speaking Bitrix24 telephony REST pops it up for the rep on the call
(register with SHOW, show) and takes it away (hide, finish), through the fake Bot API, on SQLite
and PostgreSQL."""

from __future__ import annotations

from typing import Any
from unittest.mock import ANY

import aiohttp
from sqlalchemy import select

from channels.phone.component import phone_component
from crm.models import OutboxMessage
from crm.services.records import ContactInput
from tests.bot.conftest import World, button, buttons
from tests.bot.test_card_faults import BUTTONS_REFUSED, metric, outbox_notes

ANNA, BEN, BOSS = 1001, 1002, 2001
PARSE_ERROR = "Bad Request: can't parse entities: Unsupported start tag at byte offset 3"
TOKEN = "b24secret"
CALLER = "+4930123456"


async def _bitrix(w: World, method: str, **params: Any) -> Any:
    """One Bitrix24 REST call (POST JSON, as b24pysdk sends it); its result."""
    url = f"http://127.0.0.1:{w.service.port}/rest/1/{TOKEN}/{method}"
    async with aiohttp.ClientSession() as http, http.post(url, json=params) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["result"]


async def test_call_card_pops_up_and_goes_away(world: Any) -> None:
    w: World = await world(extra=[phone_component], phone={"bitrix_token": TOKEN})
    anna = await w.rep("Anna", ANNA)
    ben = await w.rep("Ben", BEN)
    # A name that is not HTML: the fake Bot API refuses a message whose HTML does not parse.
    contact = await w.crm.records.create_contact(
        ContactInput(name="Erika <Muster> & Co", phones=("030 123456",), responsible_id=anna.id)
    )
    registered = await _bitrix(
        w, "telephony.externalcall.register", USER_ID=anna.id, PHONE_NUMBER=CALLER, TYPE=2,
        LINE_NUMBER="+4989111222",
    )  # fmt: skip
    # Intake's "new call" card on the contact, then the call card.
    first, second = await w.new_messages(ANNA, 2)
    assert first["text"].startswith("📞 New call on contact")
    card = second
    assert card["text"].splitlines() == [
        f"📞 Incoming call from {CALLER}",
        "Line +4989111222",
        f"Contact #{contact.id}: Erika <Muster> & Co",
        "Rep: Anna",
    ]
    assert [label for label, _ in buttons(card)] == [f"Contact #{contact.id}"]
    # Its button opens the contact's card.
    await w.press(ANNA, card["message_id"], button(card, "Contact #"))
    opened = await w.card(ANNA)
    assert "Erika <Muster> & Co" in opened["text"]

    # Ben is asked to look too (Bitrix24 shows a card to several users).
    assert await _bitrix(
        w, "telephony.externalcall.show", CALL_ID=registered["CALL_ID"], USER_ID=[ben.id]
    )
    bens = await w.card(BEN)
    assert bens["text"].startswith(f"📞 Incoming call from {CALLER}")

    # The call ends: both cards disappear.
    await _bitrix(
        w, "telephony.externalcall.finish", CALL_ID=registered["CALL_ID"], USER_ID=anna.id,
        DURATION=30,
    )  # fmt: skip
    await w.tg.wait_for("deleteMessage", count=2)
    deleted = {(c.params["chat_id"], c.params["message_id"]) for c in w.tg.calls("deleteMessage")}
    assert deleted == {(ANNA, card["message_id"]), (BEN, bens["message_id"])}
    await w.settle()
    assert w.tg.message(ANNA, opened["message_id"])  # the record's own cards stay


async def test_unknown_number_and_hide_for_one_rep(world: Any) -> None:
    w: World = await world(extra=[phone_component], phone={"bitrix_token": TOKEN})
    anna = await w.rep("Anna", ANNA)
    registered = await _bitrix(
        w, "telephony.externalcall.register", USER_ID=anna.id, PHONE_NUMBER="+4940999888",
        TYPE=1,
    )  # fmt: skip
    card = await w.card(ANNA)  # an outgoing call to nobody known: only the call card
    assert card["text"].splitlines() == [
        "📞 Outgoing call to +4940999888",
        "Not in the CRM yet.",
    ]
    assert buttons(card) == []
    assert await _bitrix(w, "telephony.externalcall.hide", CALL_ID=registered["CALL_ID"])
    await w.tg.wait_for("deleteMessage")
    await w.settle()
    assert len(w.tg.sent_messages(ANNA)) == 1


async def test_a_call_card_goes_out_at_once_not_at_the_next_outbox_poll(world: Any) -> None:
    """`show` writes its card outside intake: it wakes the bot's sender all the same."""
    w: World = await world(
        extra=[phone_component],
        phone={"bitrix_token": TOKEN},
        telegram={"outbox_poll_interval": 60},
    )
    anna = await w.rep("Anna", ANNA)
    ben = await w.rep("Ben", BEN)
    registered = await _bitrix(
        w, "telephony.externalcall.register", USER_ID=anna.id, PHONE_NUMBER="+4940999888",
        TYPE=2, CRM_CREATE=1,
    )  # fmt: skip
    await w.new_messages(ANNA, 2)  # the new lead's card and the call card
    await w.settle()
    assert await _bitrix(
        w, "telephony.externalcall.show", CALL_ID=registered["CALL_ID"], USER_ID=[ben.id]
    )
    card = await w.card(BEN)  # long before the next outbox poll, a minute away
    assert card["text"].startswith("📞 Incoming call from +4940999888")


def is_call_card(params: dict[str, Any]) -> bool:
    return "<b>Incoming call</b>" in str(params.get("text", ""))


async def test_a_refused_call_card_falls_back_and_is_still_taken_away(world: Any) -> None:
    """Refused for its buttons: sent without them; refused for its HTML: sent as plain text.
    Either way the rep has it while the call rings and it goes away when the call ends."""
    w: World = await world(extra=[phone_component], phone={"bitrix_token": TOKEN})
    anna = await w.rep("Anna", ANNA)
    await w.rep("Boss", BOSS, role="supervisor")
    contact = await w.crm.records.create_contact(
        ContactInput(name="Erika & Co", phones=("030 123456",), responsible_id=anna.id)
    )
    w.tg.fail_next("sendMessage", 400, description=BUTTONS_REFUSED, when=is_call_card)
    first = await _bitrix(
        w, "telephony.externalcall.register", USER_ID=anna.id, PHONE_NUMBER=CALLER, TYPE=2,
        EXTERNAL_CALL_ID="pbx-1",
    )  # fmt: skip
    _, card = await w.new_messages(ANNA, 2)  # intake's "new call" card, then the call card
    assert card["text"].splitlines()[1] == f"Contact #{contact.id}: Erika & Co"
    assert buttons(card) == []
    await w.settle()
    assert await metric(w, "leadbot_cards_fallback_total", form="without_buttons") == 1
    assert "got it without buttons (Button_data_invalid)" in str((await outbox_notes(w))[-1])

    w.tg.fail_next("sendMessage", 400, description=PARSE_ERROR, when=is_call_card)
    second = await _bitrix(
        w, "telephony.externalcall.register", USER_ID=anna.id, PHONE_NUMBER=CALLER, TYPE=2,
        EXTERNAL_CALL_ID="pbx-2",
    )  # fmt: skip
    plain = (await w.new_messages(ANNA, 2))[1]
    assert plain["text"].startswith(f"📞 Incoming call from {CALLER}")
    assert "entities" not in plain and buttons(plain) == [(f"Contact #{contact.id}", ANY)]
    await w.settle()
    assert await metric(w, "leadbot_cards_fallback_total", form="plain_text") == 1

    for registered in (first, second):
        await _bitrix(w, "telephony.externalcall.hide", CALL_ID=registered["CALL_ID"])
    await w.tg.wait_for("deleteMessage", count=2)
    deleted = {c.params["message_id"] for c in w.tg.calls("deleteMessage")}
    assert deleted == {card["message_id"], plain["message_id"]}
    # A screen pop is the rep's own: nothing went to the supervisor.
    assert w.tg.sent_messages(BOSS) == []


async def test_a_call_card_refused_in_every_form_is_dropped_not_passed_on(world: Any) -> None:
    w: World = await world(extra=[phone_component], phone={"bitrix_token": TOKEN})
    anna = await w.rep("Anna", ANNA)
    await w.rep("Boss", BOSS, role="supervisor")
    await w.crm.records.create_contact(
        ContactInput(name="Erika", phones=("030 123456",), responsible_id=anna.id)
    )
    w.tg.fail_next("sendMessage", 400, 2, description=BUTTONS_REFUSED, when=is_call_card)
    await _bitrix(
        w, "telephony.externalcall.register", USER_ID=anna.id, PHONE_NUMBER=CALLER, TYPE=2
    )
    await w.tg.wait_for("sendMessage", count=3)
    await w.settle()
    sends = [(is_call_card(c.params), c.status) for c in w.tg.calls("sendMessage")]
    assert sorted(sends) == [(False, 200), (True, 400), (True, 400)]  # with, without buttons
    assert [m["text"].split(" on ")[0] for m in w.tg.sent_messages(ANNA)] == ["📞 New call"]
    assert w.tg.sent_messages(BOSS) == []
    assert await metric(w, "leadbot_cards_undeliverable_total", reason="bad_request") == 1
    assert await metric(w, "leadbot_cards_dropped_total") == 1
    async with w.service.db.read() as s:
        rows = list(await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    assert rows[-1].kind == "call_shown" and rows[-1].last_error == "gave up: Button_data_invalid"
