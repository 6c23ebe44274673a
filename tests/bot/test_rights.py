"""Who may do what: invites, strangers, forged and stale buttons."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bot import callbacks as cb
from bot.customers import COMMANDS_ARE_FOR_THE_TEAM, GREETING, NOT_NOW, THANKS_NO_PHONE
from tests.bot.conftest import World, answered_call, button, buttons

RITA, BOB, BOSS, STRANGER_ID = 1001, 1002, 2001, 9999


async def test_invite_link_binds_the_telegram_account(world: Any) -> None:
    w: World = await world()
    rep = await w.rep("Rita", None)
    code = await w.crm.reps.create_invite(rep.id)
    reply = await w.say(RITA, f"/start {code}")
    assert reply["text"].startswith("Welcome, Rita!")
    assert (await w.crm.reps.get(rep.id)).telegram_user_id == RITA
    # One-time: the same link does not bind a second account.
    again = await w.say(BOB, f"/start {code}")
    assert again["text"] == "This invite link is not valid."
    assert await w.crm.reps.by_telegram(BOB) is None


async def test_strangers_are_customers_and_get_nothing_from_the_crm(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    await w.service.process_now(answered_call(1))
    await w.card(RITA)
    assert (await w.say(STRANGER_ID, "/start"))["text"].startswith(GREETING)
    # Commands get one polite sentence and never become the customer's messages.
    for text in ("/leads", "/lead 1", "/find Anna"):
        assert (await w.say(STRANGER_ID, text))["text"] == COMMANDS_ARE_FOR_THE_TEAM
    w.tg.user_message(STRANGER_ID, "hello")
    assert (await w.say(STRANGER_ID, NOT_NOW))["text"] == THANKS_NO_PHONE
    assert (await w.say(STRANGER_ID, "/lead 1"))["text"] == COMMANDS_ARE_FOR_THE_TEAM
    w.advance(minutes=5)  # past the phone question's wait: nothing held comes out later
    await w.bot.desk.flush_expired()
    await w.settle()
    assert len(w.tg.sent_messages(STRANGER_ID)) == 6
    assert all("reply_markup" not in m for m in w.tg.sent_messages(STRANGER_ID))
    acts = await w.crm.activities.of_record("lead", 2)  # what they wrote is their own lead
    assert [a.body for a in acts] == ["hello"]
    assert len(w.tg.sent_messages(RITA)) == 2  # the call's card and the stranger's "hello"
    # A button payload typed by hand is refused as well.
    message_id = w.tg.sent_messages(STRANGER_ID)[-1]["message_id"]
    answer = await w.press(STRANGER_ID, message_id, cb.encode(cb.TAKE, "l1"))
    assert answer["text"] == "This bot is for our sales team only." and answer["show_alert"]
    assert (await w.crm.leads.get(1)).taken_at is None


async def test_forged_button_for_another_reps_lead_is_refused_and_logged(
    world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    w: World = await world()
    rita = await w.rep("Rita", RITA)
    await w.rep("Bob", BOB)
    result = await w.service.process_now(answered_call(1))
    assert result.responsible_id == rita.id
    await w.card(RITA)
    help_message = await w.say(BOB, "/help")
    with caplog.at_level(logging.WARNING, logger="bot.handlers"):
        for data in (
            cb.encode(cb.TAKE, f"l{result.lead_id}"),
            cb.encode(cb.CONVERT, f"l{result.lead_id}", "d"),
            cb.encode(cb.CALLBACK_MENU, f"l{result.lead_id}"),
        ):
            answer = await w.press(BOB, help_message["message_id"], data)
            assert answer["text"] == f"Lead #{result.lead_id} belongs to another rep."
            assert answer["show_alert"] is True
    lead = await w.crm.leads.get(result.lead_id)
    assert lead.responsible_id == rita.id and lead.taken_at is None and lead.is_open
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 3 and f"Telegram user {BOB}" in refused[0].getMessage()
    # Bob's message was not turned into Rita's card.
    assert w.current(BOB, help_message["message_id"])["text"] == help_message["text"]
    # Commands check the same rights.
    reply = await w.say(BOB, f"/lead {result.lead_id}")
    assert reply["text"] == f"Lead #{result.lead_id} belongs to another rep."


async def test_a_supervisor_acts_on_everyones_leads_and_reassigns(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    bob = await w.rep("Bob", BOB)
    await w.rep("Boss", BOSS, role="supervisor")
    result = await w.service.process_now(answered_call(1))
    card = await w.card(RITA)
    assert "👥 Reassign" not in [label for label, _ in buttons(card)]
    shown = await w.say(BOSS, f"/lead {result.lead_id}")
    await w.press_label(BOSS, shown["message_id"], "👥 Reassign")
    answer = await w.press_label(BOSS, shown["message_id"], "Bob")
    assert answer["text"] == "Reassigned to Bob"
    assert "Responsible: Bob" in w.current(BOSS, shown["message_id"])["text"]
    assert (await w.crm.leads.get(result.lead_id)).responsible_id == bob.id
    assigned = await w.card(BOB)  # Bob is told
    assert assigned["text"].startswith("👥 Assigned to you by Boss")
    # Rita's card says where the lead went, and her old Take button is refused.
    rita_card = w.current(RITA, card["message_id"])
    assert rita_card["text"] == f"Lead #{result.lead_id} is now with Bob — reassigned by Boss."
    assert "reply_markup" not in rita_card
    answer = await w.press(RITA, card["message_id"], button(card, "✋ Take"))
    assert answer["text"] == f"Lead #{result.lead_id} belongs to another rep."
    # A supervisor's assignment counts as the first action: Bob has no Take to press.
    assert "✋ Take" not in [label for label, _ in buttons(assigned)]


async def test_a_reps_forged_reassign_gets_the_polite_refusal_and_changes_nothing(
    world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The bot leaves the rule to `crm.leads.assign`: its refusal is the rep's answer."""
    w: World = await world()
    rita = await w.rep("Rita", RITA)
    bob = await w.rep("Bob", BOB)
    result = await w.service.process_now(answered_call(1))
    card = await w.card(RITA)
    forged = cb.encode(cb.REASSIGN, f"l{result.lead_id}", str(bob.id))
    with caplog.at_level(logging.WARNING, logger="bot.handlers"):
        answer = await w.press(RITA, card["message_id"], forged)
    assert answer["text"] == "Only a supervisor can reassign a lead."
    assert answer["show_alert"] is True
    assert any("refused" in r.getMessage() for r in caplog.records)
    assert (await w.crm.leads.get(result.lead_id)).responsible_id == rita.id
    assert w.current(RITA, card["message_id"])["text"] == card["text"]
    await w.settle()
    assert w.tg.sent_messages(BOB) == []  # nobody is told of an assignment


async def test_stale_and_handled_buttons_get_a_clear_answer(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    result = await w.service.process_now(answered_call(1))
    card = await w.card(RITA)
    take = button(card, "✋ Take")
    await w.press(RITA, card["message_id"], take)
    answer = await w.press(RITA, card["message_id"], take)  # the old keyboard, pressed again
    assert answer["text"] == "You have this lead already."

    old_format = await w.press(RITA, card["message_id"], f"0:take:{result.lead_id}")
    assert old_format["text"].startswith("This button is from an older card.")

    await w.crm.leads.junk(result.lead_id, "spam")
    answer = await w.press(
        RITA, card["message_id"], cb.encode(cb.CONVERT, f"l{result.lead_id}", "d")
    )
    assert answer["text"] == f"Lead #{result.lead_id} is already closed (JUNK)."
    # …and the card is redrawn to show why.
    assert "Junk reason: spam" in w.current(RITA, card["message_id"])["text"]
    gone = await w.press(RITA, card["message_id"], cb.encode(cb.TAKE, "l999"))
    assert gone["text"] == "Lead #999 does not exist."
