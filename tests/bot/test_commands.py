"""Slash commands: lists with filters and pages, search, today, admin-only lists and settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.bot.conftest import World, button, buttons, email

RITA, BOB, ADMIN = 1001, 1002, 3001


async def test_command_menu_is_registered(world: Any) -> None:
    w: World = await world(telegram={"admins": [ADMIN]})
    await w.rep("Rita", RITA)

    async def registered() -> bool:
        return "leads" in w.tg.menu(RITA)

    await w.wait_until(registered)
    names = w.tg.menu(RITA)
    assert names == ["leads", "lead", "deals", "find", "today", "web", "stats", "history", "help"]
    assert w.tg.menu(ADMIN)[-2:] == ["exceptions", "settings"]
    assert w.tg.menu(BOB) == ["start"]  # not a rep: the customer's menu of a shared bot


async def test_leads_mine_filtered_and_paged(world: Any) -> None:
    w: World = await world()
    rita = await w.rep("Rita", RITA)
    for n in range(12):
        await w.service.process_now(email(n, "Person", "Question"))
    await w.new_messages(RITA, 12)
    await w.crm.leads.change_status(3, "PROCESSED")
    listing = await w.say(RITA, "/leads")
    lines = listing["text"].split("\n")
    assert lines[0] == "Leads 1–10 of 12"
    assert lines[1] == "#12 Person 11 · New · EMAIL"
    await w.press(RITA, listing["message_id"], button(listing, "▶"))
    page2 = w.current(RITA, listing["message_id"])
    assert page2["text"].split("\n")[0] == "Leads 11–12 of 12"
    assert [label for label, _ in buttons(page2)] == ["#2", "#1", "◀"]

    processed = await w.say(RITA, "/leads processed")
    assert processed["text"].split("\n")[1:] == ["#3 Person 2 · Processed · EMAIL"]
    assert (await w.say(RITA, "/leads new"))["text"].startswith("Leads (new) 1–10 of 11")
    assert (await w.say(RITA, "/leads repeat"))["text"] == "No leads (repeat)."
    assert (await w.say(RITA, "/leads call"))["text"] == "No leads (call)."
    long = await w.say(RITA, "/leads " + "ü" * 30)
    assert long["text"] == "That filter is too long; use one or two words."
    bad = await w.say(RITA, "/leads yesterday")
    assert bad["text"].startswith("Unknown filter “yesterday”")
    opened = await w.press(RITA, listing["message_id"], button(page2, "#2"))
    assert opened.get("text") is None
    card = await w.card(RITA)
    assert card["text"].startswith("Lead #2") and "Person 1" in card["text"]
    assert rita.id == 1


async def test_lead_deals_find_and_today(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    await w.rep("Bob", BOB)
    await w.service.process_now(
        email(1, "Person", "Question", phones=("+49 30 999 111",))
    )  # Rita (queue order)
    await w.service.process_now(email(2, "Person", "Question", display_name="Person Two"))  # Bob
    await w.card(RITA)
    await w.card(BOB)
    assert (await w.say(RITA, "/lead x"))["text"] == "Usage: /lead N (the lead number)."
    assert (await w.say(RITA, "/lead 7"))["text"] == "Lead #7 does not exist."

    found = await w.say(RITA, "/find 030 999111")
    assert found["text"].split("\n")[:2] == ["Found for “030 999111”", "Lead #1 Person 1 · New"]
    hidden = await w.say(RITA, "/find Person Two")  # Bob's lead: not in Rita's results
    assert hidden["text"] == "Nothing found for “Person Two”."

    conversion = await w.crm.leads.convert(1, into=("contact", "deal"))
    assert conversion.deal is not None
    deals = await w.say(RITA, "/deals")
    assert deals["text"].split("\n")[1] == f"#{conversion.deal.id} Question 1 · New"

    assert (await w.say(RITA, "/today"))["text"] == "Nothing due today. 🎉"
    now = w.clock.now()
    await w.crm.activities.schedule(
        "deal", conversion.deal.id, due_at=now - timedelta(minutes=5), subject="Send offer"
    )
    today = await w.say(RITA, "/today")
    assert today["text"].split("\n")[1].startswith("⚠️ ")
    assert today["text"].split("\n")[1].endswith(f"Send offer · deal #{conversion.deal.id}")
    await w.press_label(RITA, today["message_id"], "✅")
    assert w.current(RITA, today["message_id"])["text"] == "Nothing due today. 🎉"


async def test_exceptions_and_settings_are_for_admins(world: Any) -> None:
    w: World = await world(telegram={"admins": [ADMIN]})
    await w.rep("Rita", RITA)
    refused = await w.say(RITA, "/exceptions")
    assert refused["text"] == "Only an admin can manage the exception list."
    assert (await w.say(RITA, "/settings"))["text"] == "Only an admin can change the CRM settings."

    added = await w.say(ADMIN, "/exceptions add +49 30 1111111 our own office")
    assert added["text"] == "Added phone +49301111111 to the exception list."
    twice = await w.say(ADMIN, "/exceptions add 030 1111111")
    assert twice["text"] == "+49301111111 is on the exception list already."
    bad = await w.say(ADMIN, "/exceptions add nobody")
    assert bad["text"] == "'nobody' is neither an email address nor a phone number."
    usage = await w.say(ADMIN, "/exceptions drop")
    assert usage["text"].startswith("Usage: /exceptions [list | add PHONE-OR-EMAIL")
    listing = await w.say(ADMIN, "/exceptions")
    assert "phone +49301111111 — our own office" in listing["text"]
    removed = await w.say(ADMIN, "/exceptions remove +49301111111")
    assert removed["text"] == "Removed +49301111111 from the exception list."
    assert (await w.say(ADMIN, "/exceptions"))["text"].startswith("The exception list is empty.")

    settings = await w.say(ADMIN, "/settings")
    assert settings["text"].split("\n")[1:] == [
        "CRM mode: classic",
        "Repeat sales: on",
        "Traditional lead mode: off",
    ]
    await w.press_label(ADMIN, settings["message_id"], "Mode → simple")
    await w.press_label(ADMIN, settings["message_id"], "Repeat sales → off")
    await w.press_label(ADMIN, settings["message_id"], "Traditional mode → on")
    current = await w.crm.settings.get()
    assert (current.crm_mode.value, current.repeat_sales, current.traditional_mode) == (
        "simple",
        False,
        True,
    )
    # A rep pressing an admin's settings button (forged) is refused.
    help_message = await w.say(RITA, "/help")
    answer = await w.press(RITA, help_message["message_id"], "1:se:m:classic")
    assert answer["text"] == "Only an admin can change the CRM settings."
    assert (await w.crm.settings.get()).crm_mode.value == "simple"


async def test_unknown_text_from_a_rep_gets_a_hint(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    assert (await w.say(RITA, "hello?"))["text"].startswith("Use the buttons on a card")
    assert (await w.say(RITA, "/whatever"))["text"].startswith("Use the buttons on a card")
    help_text = await w.say(RITA, "/help")
    assert "/leads" in help_text["text"] and "/settings" not in help_text["text"]
