"""Working a lead and a deal from the card: every action edits the card in place."""

from __future__ import annotations

from typing import Any

from matching.event import Channel
from tests.bot.conftest import World, button, buttons
from tests.conftest import make_event

RITA, BOSS = 1001, 2001


def form(n: int, **fields: Any) -> Any:
    base = {
        "channel": Channel.WEBFORM,
        "external_id": f"form-{n}",
        "display_name": f"Kundin {n}",
        "phones": (f"+49 40 777 00{n}",),
        "emails": (f"kundin{n}@example.com",),
        "text": "Rückruf bitte",
        "line": "contact",
    }
    return make_event(**{**base, **fields})


async def labels(w: World, chat: int, message_id: int) -> list[str]:
    return [label for label, _ in buttons(w.current(chat, message_id))]


async def test_status_junk_with_typed_reason_and_comment_by_reply(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    result = await w.service.process_now(form(1))
    card = await w.card(RITA)
    mid = card["message_id"]

    await w.press_label(RITA, mid, "📊 Status")
    assert await labels(w, RITA, mid) == ["In progress", "Processed", "« Back"]
    answer = await w.press_label(RITA, mid, "Processed")
    assert answer["text"] == "Status: Processed"
    assert f"Lead #{result.lead_id} · Processed" in w.current(RITA, mid)["text"]

    reply = await w.say(RITA, "Called, she wants a quote by Friday & <b>asap</b>", reply_to=mid)
    assert reply["text"] == f"💬 Comment added to lead #{result.lead_id}."
    comments = [
        a for a in await w.crm.activities.of_record("lead", result.lead_id) if a.kind == "comment"
    ]
    assert [c.body for c in comments] == ["Called, she wants a quote by Friday & <b>asap</b>"]

    await w.press_label(RITA, mid, "🗑 Junk")
    assert await labels(w, RITA, mid) == [
        "Spam",
        "Wrong number",
        "Duplicate",
        "Not interested",
        "✍ Other reason…",
        "« Back",
    ]
    await w.press_label(RITA, mid, "✍ Other reason…")
    prompt = await w.card(RITA)
    assert prompt["text"].startswith(f"Why is lead #{result.lead_id} junk?")
    done = await w.say(RITA, "Competitor testing our form", reply_to=prompt["message_id"])
    assert done["text"] == "🗑 Junk: Competitor testing our form"
    lead = await w.crm.leads.get(result.lead_id)
    assert lead.status == "JUNK" and lead.junk_reason == "Competitor testing our form"
    shown = w.current(RITA, mid)
    assert "Junk reason: Competitor testing our form" in shown["text"]
    assert await labels(w, RITA, mid) == ["🕘 History"]  # a closed lead: nothing to change


async def test_call_back_at_a_typed_time_and_back_button(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    result = await w.service.process_now(form(1))
    card = await w.card(RITA)
    mid = card["message_id"]
    await w.press_label(RITA, mid, "⏰ Call back")
    await w.press_label(RITA, mid, "« Back")
    assert (await labels(w, RITA, mid))[0] == "✋ Take"

    await w.press_label(RITA, mid, "⏰ Call back")
    await w.press_label(RITA, mid, "✍ Other time…")
    prompt = await w.card(RITA)
    assert "Reply with a time" in prompt["text"]
    wrong = await w.say(RITA, "whenever", reply_to=prompt["message_id"])
    assert wrong["text"].startswith("I did not understand “whenever”.")
    ok = await w.say(RITA, "in 2h", reply_to=prompt["message_id"])  # the prompt still works
    assert ok["text"].startswith("⏰ I will remind you at ")
    acts = await w.crm.activities.of_record("lead", result.lead_id)
    scheduled = [a for a in acts if a.kind == "call" and a.due_at is not None]
    assert len(scheduled) == 1
    assert "⏰ Call back at " in w.current(RITA, mid)["text"]
    w.advance(hours=2)
    reminder = await w.card(RITA)
    assert reminder["text"].startswith("⏰ Call-back due")
    # On time: the reminder is not "overdue" at the minute it fires; later it is.
    assert "⏰ Call back at " in reminder["text"] and "(overdue)" not in reminder["text"]
    assert "Rückruf bitte" in reminder["text"]  # the customer's words stay on the card
    w.advance(minutes=10)
    later = await w.say(RITA, f"/lead {result.lead_id}")
    assert "(overdue)" in later["text"]


async def test_convert_to_contact_and_company_and_work_the_deal(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    first = await w.service.process_now(form(1, company_name="Nord GmbH"))
    card = await w.card(RITA)
    await w.press_label(RITA, card["message_id"], "🔄 Convert")
    assert await labels(w, RITA, card["message_id"]) == [
        "👤 Contact",
        "👤+🏢 Contact + company",
        "💼 Deal",
        "💼 Deal + amount…",
        "« Back",
    ]
    answer = await w.press_label(RITA, card["message_id"], "👤+🏢 Contact + company")
    assert answer["text"] == "Converted: contact #1, company #1"

    second = await w.service.process_now(form(2, emails=("kundin1@example.com",)))
    assert second.outcome == "new_repeat_lead"
    repeat = await w.card(RITA)
    await w.press_label(RITA, repeat["message_id"], "🔄 Convert")
    assert await labels(w, RITA, repeat["message_id"]) == ["💼 Deal", "💼 Deal + amount…", "« Back"]
    await w.press_label(RITA, repeat["message_id"], "💼 Deal")
    deal_card = w.current(RITA, repeat["message_id"])
    assert "Sales: New" in deal_card["text"] and "👤 Kundin 1 · Nord GmbH" in deal_card["text"]

    mid = repeat["message_id"]
    await w.press_label(RITA, mid, "➡ Stage")
    assert await labels(w, RITA, mid) == ["Preparing offer", "Negotiation", "« Back"]
    await w.press_label(RITA, mid, "Negotiation")
    assert "Sales: Negotiation" in w.current(RITA, mid)["text"]
    answer = await w.press_label(RITA, mid, "🏆 Won")
    assert answer["text"].endswith(": Won")
    assert await labels(w, RITA, mid) == ["↩ Reopen", "🕘 History"]
    lost = await w.press(RITA, mid, button(deal_card, "✖ Lost"))  # the old keyboard
    assert lost["text"].endswith("is closed already (Won).")
    await w.press_label(RITA, mid, "↩ Reopen")
    assert "🏆 Won" in await labels(w, RITA, mid)
    assert first.lead_id != second.lead_id


async def test_supervisor_puts_the_sender_on_the_exception_list_without_deleting(
    world: Any,
) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    await w.rep("Boss", BOSS, role="supervisor")
    result = await w.service.process_now(form(1))
    await w.card(RITA)
    shown = await w.say(BOSS, f"/lead {result.lead_id}")
    await w.press_label(BOSS, shown["message_id"], "⛔ Exception")
    answer = await w.press_label(BOSS, shown["message_id"], "⛔ Yes")
    assert answer["text"] == (
        "⛔ Never captured again: kundin1@example.com, +4940777001. The lead stays."
    )
    assert (await w.crm.leads.get(result.lead_id)).is_open  # nothing deleted
    again = await w.service.process_now(form(2, emails=("kundin1@example.com",), phones=()))
    assert again.outcome == "ignored"
