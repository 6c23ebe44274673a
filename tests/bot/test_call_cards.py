"""The call card: a PBX speaking Bitrix24 telephony REST pops it up for the rep on the call
(register with SHOW, show) and takes it away (hide, finish), through the fake Bot API, on SQLite
and PostgreSQL."""

from __future__ import annotations

from typing import Any

import aiohttp

from channels.phone.component import phone_component
from crm.services.records import ContactInput
from tests.bot.conftest import World, button, buttons

ANNA, BEN = 1001, 1002
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
