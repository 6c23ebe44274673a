"""The issue's main scenario, end to end through the fake Bot API, on SQLite and PostgreSQL:
a missed-call webhook → the responsible rep's card → Take → call back in 15 min → reminder →
done → converted into a deal."""

from __future__ import annotations

from typing import Any

from bot.cards import open_followups
from channels.phone.component import phone_component
from tests.bot.conftest import PHONE_SECRET, World, button, buttons

RITA = 1001


async def test_missed_call_to_deal(world: Any) -> None:
    w: World = await world(extra=[phone_component], phone={"webhook_secret": PHONE_SECRET})
    rita = await w.rep("Rita", RITA)
    await w.missed_call("CA1", "+49 30 1234567")

    card = await w.card(RITA)
    leads, total = await w.crm.leads.page(_all())
    assert total == 1 and leads[0].responsible_id == rita.id
    lead_id = leads[0].id
    text = card["text"]
    assert text.startswith("📵 Missed call — new lead")
    assert "+49 30 1234567" in text and "Responsible: Rita" in text
    assert "Why: no match → new lead" in text
    links = [e["url"] for e in card.get("entities", []) if e["type"] == "text_link"]
    assert "tel:+49301234567" in links
    labels = [label for label, _ in buttons(card)]
    assert labels[0] == "✋ Take" and "✅ Called back" in labels
    # One card for the event, although intake queued a new-lead and a missed-call notice.
    await w.wait_until(lambda: _no_pending(w))
    assert len(w.tg.sent_messages(RITA)) == 1

    answer = await w.press_label(RITA, card["message_id"], "✋ Take")
    assert answer.get("text") == "✋ The lead is yours."
    shown = w.current(RITA, card["message_id"])
    assert shown["text"].startswith("📵 Missed call — new lead")  # edited in place
    assert "Lead #1 · In progress" in shown["text"]
    assert "✋ Take" not in [label for label, _ in buttons(shown)]

    await w.press_label(RITA, card["message_id"], "⏰ Call back")
    menu = w.current(RITA, card["message_id"])
    assert [label for label, _ in buttons(menu)][:3] == ["In 15 min", "In 1 hour", "Tomorrow 9:00"]
    answer = await w.press(RITA, card["message_id"], button(menu, "In 15 min"))
    assert answer["text"].startswith("⏰ I will remind you at ")
    assert "⏰ Call back at " in w.current(RITA, card["message_id"])["text"]

    await w.bot.duties.tick()  # not due yet: nothing is queued
    assert await w.crm.outbox.pending_count() == 0
    w.advance(minutes=15)
    reminder = await w.card(RITA)
    assert reminder["text"].startswith("⏰ Call-back due")
    assert "Lead #1" in reminder["text"]

    await w.press_label(RITA, reminder["message_id"], "✅ Done")
    acts = await w.crm.activities.of_record("lead", lead_id)
    assert open_followups(acts) == ()  # the missed-call task is answered by the same call
    assert [a.result for a in acts if a.due_at is not None] == ["called back"] * 2

    await w.press_label(RITA, reminder["message_id"], "🔄 Convert")
    menu = w.current(RITA, reminder["message_id"])
    await w.press(RITA, reminder["message_id"], button(menu, "💼 Deal"))
    converted = w.current(RITA, reminder["message_id"])
    assert converted["text"].startswith(f"✅ Lead #{lead_id} converted into deal #")
    lead = await w.crm.leads.get(lead_id)
    assert lead.status == "CONVERTED"
    deals, total = await w.crm.deals.page(_all())
    assert total == 1 and deals[0].responsible_id == rita.id and deals[0].lead_id == lead_id
    assert [label for label, _ in buttons(converted)][:2] == ["➡ Stage", "⏰ Call back"]


async def _no_pending(w: World) -> bool:
    return bool(await w.crm.outbox.pending_count() == 0)


def _all() -> Any:
    from crm.services.listing import ListFilter

    return ListFilter()
