"""Cards that stay right (issue 16): the client on a linked record's card, the first line kept,
changes by others told to the holder with who and why, /find labels and rights, strangers'
commands, command menus without a restart, prompts across a restart."""

from __future__ import annotations

from typing import Any

from crm.services.records import ContactInput
from tests.bot.conftest import World, answered_call, button, buttons, email

RITA, SAM, SUE, ADMIN = 1001, 1002, 2001, 3001
ANNA_PHONE = "+49 30 555 001"  # answered_call(1) calls from this number


def lines(message: dict[str, Any]) -> list[str]:
    return str(message["text"]).split("\n")


async def anna(w: World) -> int:
    """A known client with a phone and nothing open: her next call opens a repeat lead."""
    contact = await w.crm.records.create_contact(
        ContactInput(name="Anna Müller", phones=(ANNA_PHONE,), emails=("anna@example.com",))
    )
    return int(contact.id)


async def test_a_repeat_leads_card_shows_the_client_and_a_real_title(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    await anna(w)
    result = await w.service.process_now(answered_call(1))
    lead = await w.crm.leads.get(result.lead_id)
    assert lead.is_return_customer and lead.contact_id is not None
    assert lead.title.startswith("Anna Müller: ")  # not the bare number
    card = await w.card(RITA)
    text = lines(card)
    assert text[0] == "🔁 Repeat lead"
    assert "👤 Anna Müller" in text
    assert "📞 +49 30 555 001" in text and "✉️ anna@example.com" in text
    # The phone is a link: one tap calls the client back.
    links = [e for e in card.get("entities", []) if e.get("type") == "text_link"]
    assert any(e["url"] == "tel:+4930555001" for e in links)


async def test_first_line_and_the_customers_words_survive_call_backs_and_others(
    world: Any,
) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    await w.rep("Sue", SUE, role="supervisor")
    result = await w.service.process_now(email(1, text="Bitte rufen Sie mich an"))
    card = await w.card(RITA)
    mid = card["message_id"]
    assert lines(card)[0] == "🆕 New lead"
    # A call-back in 15 minutes: the card keeps the customer's message.
    await w.press_label(RITA, mid, "⏰ Call back")
    await w.press_label(RITA, mid, "In 15 min")
    shown = w.current(RITA, mid)
    assert "Bitte rufen Sie mich an" in shown["text"] and "⏰ Call back at" in shown["text"]
    # A typed time keeps the first line.
    await w.press_label(RITA, mid, "⏰ Call back")
    await w.press_label(RITA, mid, "✍ Other time…")
    prompt = await w.card(RITA)
    await w.say(RITA, "in 2h", reply_to=prompt["message_id"])
    assert lines(w.current(RITA, mid))[0] == "🆕 New lead"
    # Sue works Rita's lead: Rita's copy is redrawn with its first line, and Rita is told.
    theirs = await w.say(SUE, f"/lead {result.lead_id}")
    await w.press_label(SUE, theirs["message_id"], "📊 Status")
    await w.press_label(SUE, theirs["message_id"], "Processed")
    told = await w.card(RITA)
    assert lines(told)[0] == f"✏️ Sue on your lead #{result.lead_id}: Status: Processed"
    mine = w.current(RITA, mid)
    assert lines(mine)[0] == "🆕 New lead"
    assert f"Lead #{result.lead_id} · Processed" in mine["text"]
    # A comment by Sue is told in its own words.
    await w.say(SUE, "Call her before noon", reply_to=theirs["message_id"])
    told = await w.card(RITA)
    assert lines(told)[0] == f"✏️ Sue on your lead #{result.lead_id}: 💬 Call her before noon"
    # Rita's own changes tell nobody.
    heard = len(w.tg.sent_messages(SUE))
    await w.press_label(RITA, mid, "📊 Status")
    await w.press_label(RITA, mid, "In progress")
    await w.settle()
    assert len(w.tg.sent_messages(SUE)) == heard
    told_rita = [m for m in w.tg.sent_messages(RITA) if str(m.get("text")).startswith("✏️")]
    assert len(told_rita) == 2  # Sue's status and comment, not Rita's own


async def test_a_reminder_is_on_time_not_overdue(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    result = await w.service.process_now(email(1))
    card = await w.card(RITA)
    await w.press_label(RITA, card["message_id"], "⏰ Call back")
    await w.press_label(RITA, card["message_id"], "In 15 min")
    w.advance(minutes=15)
    reminder = await w.card(RITA)
    assert lines(reminder)[0] == "⏰ Call-back due"
    assert "(overdue)" not in reminder["text"]
    assert "⚠️" not in (await w.say(RITA, "/today"))["text"]
    w.advance(minutes=30)
    assert "(overdue)" in (await w.say(RITA, f"/lead {result.lead_id}"))["text"]
    assert "⚠️" in (await w.say(RITA, "/today"))["text"]


async def test_find_tells_leads_deals_and_contacts_apart(world: Any) -> None:
    w: World = await world()
    rita = await w.rep("Rita", RITA)
    result = await w.service.process_now(email(1, "Kunde"))
    card = await w.card(RITA)
    await w.press_label(RITA, card["message_id"], "🔄 Convert")
    await w.press_label(RITA, card["message_id"], "💼 Deal")
    lead = await w.crm.leads.get(result.lead_id)
    assert lead.responsible_id == rita.id
    found = await w.say(RITA, "/find Kunde")
    labels = [label for label, _ in buttons(found)]
    assert labels == ["Lead #1", "Deal #1", "Contact #1"]
    opened = await w.press(RITA, found["message_id"], button(found, "Deal #1"))
    assert opened.get("text") is None
    assert lines(await w.card(RITA))[1].startswith("💼")  # the deal's card, not the lead's


async def test_find_shows_companies_by_the_same_rights_as_everything(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    sam = await w.rep("Sam", SAM)
    await w.rep("Sue", SUE, role="supervisor")
    await w.crm.records.create_company("Bob & Sons GmbH", responsible_id=sam.id)
    assert (await w.say(RITA, "/find Sons"))["text"] == "Nothing found for “Sons”."
    assert "Company #1 Bob & Sons GmbH" in (await w.say(SAM, "/find Sons"))["text"]
    assert "Company #1 Bob & Sons GmbH" in (await w.say(SUE, "/find Sons"))["text"]


async def test_an_admin_who_joins_or_changes_role_gets_the_menu_at_once(world: Any) -> None:
    w: World = await world()
    admin = await w.rep("Ada", None, role="admin")
    code = await w.crm.reps.create_invite(admin.id)
    await w.say(ADMIN, f"/start {code}")

    def menu(chat: int) -> list[str] | None:
        calls = [
            c
            for c in w.tg.calls("setMyCommands")
            if (c.params.get("scope") or {}).get("chat_id") == chat
        ]
        return [c["command"] for c in calls[-1].params["commands"]] if calls else None

    await w.wait_until(lambda: _true(menu(ADMIN) is not None))
    assert (menu(ADMIN) or [])[-2:] == ["exceptions", "settings"]
    await w.crm.reps.set_role(admin.id, "rep")  # e.g. from the CLI, another process
    await w.wait_until(lambda: _true("settings" not in (menu(ADMIN) or ["settings"])))
    assert menu(ADMIN) == [
        "leads", "lead", "deals", "find", "today", "web", "stats", "history", "help"
    ]  # fmt: skip


async def _true(value: bool) -> bool:
    return value


async def test_an_open_prompt_still_works_after_a_restart(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    result = await w.service.process_now(email(1))
    card = await w.card(RITA)
    await w.press_label(RITA, card["message_id"], "🗑 Junk")
    await w.press_label(RITA, card["message_id"], "✍ Other reason…")
    prompt = await w.card(RITA)
    await w.service.stop()

    again: World = await world()
    again._seen = dict(w._seen)
    done = await again.say(RITA, "Competitor testing", reply_to=prompt["message_id"])
    assert done["text"] == "🗑 Junk: Competitor testing"
    lead = await again.crm.leads.get(result.lead_id)
    assert lead.status == "JUNK" and lead.junk_reason == "Competitor testing"
    shown = again.current(RITA, card["message_id"])
    assert lines(shown)[0] == "🆕 New lead" and "Junk reason: Competitor testing" in shown["text"]
