"""A record's history in the bot, a deal's amount, snoozing a reminder and the morning digest,
through the fake Bot API as a rep and a supervisor see them."""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.reminders import Duties
from bot.settings import TelegramSettings
from crm.dto import Actor
from tests.bot.conftest import World, buttons, email
from tests.bot.test_actions import form, labels

RITA, SAM, BOSS = 1001, 1002, 2001
BERLIN = ZoneInfo("Europe/Berlin")


async def test_history_is_paged_escaped_and_private(world: Any) -> None:
    w: World = await world()
    rita = await w.rep("Rita", RITA)
    await w.rep("Sam", SAM)
    await w.service.process_now(email(1, "Anna", text="Preis für <b>10</b> Stück?"))
    card = await w.card(RITA)
    mid = card["message_id"]
    await w.say(RITA, "Called, wants <i>a quote</i> & more", reply_to=mid)
    await w.press_label(RITA, mid, "✋ Take")
    await w.press_label(RITA, mid, "📊 Status")
    await w.press_label(RITA, mid, "Processed")

    await w.press_label(RITA, mid, "🕘 History")
    shown = await w.card(RITA)  # a new message; the card stays
    text = shown["text"]
    lines = text.split("\n")
    assert lines[0] == "🕘 History of lead #1"
    assert "Status: In progress → Processed · Rita" in lines[1]
    assert "Taken · Rita" in text
    assert "Comment · Rita" in text and "Called, wants <i>a quote</i> & more" in text
    assert "Anfrage 1" in text and "Preis für <b>10</b> Stück?" in text  # the e-mail itself
    assert "Why: " in text  # the decision on the inbound e-mail
    raw = w.tg.calls("sendMessage")[-1].params["text"]
    assert "&lt;b&gt;10&lt;/b&gt;" in raw and "&lt;i&gt;a quote&lt;/i&gt; &amp; more" in raw
    assert [t for t, _ in buttons(shown)] == ["Open lead #1"]
    assert "🕘 History" in await labels(w, RITA, mid)

    # Older items page in place.
    for n in range(8):
        await w.crm.activities.comment("lead", 1, f"note {n}", Actor(rita.id, "rep"))
    first = await w.say(RITA, "/history lead 1")
    assert first["text"].startswith("🕘 History of lead #1 · page 1")
    assert "note 7" in first["text"] and "note 1" not in first["text"]
    assert [t for t, _ in buttons(first)] == ["Older ▶", "Open lead #1"]
    await w.press_label(RITA, first["message_id"], "Older ▶")
    second = w.current(RITA, first["message_id"])
    assert second["text"].startswith("🕘 History of lead #1 · page 2")
    assert "note 1" in second["text"] and "note 7" not in second["text"]
    assert next(t for t, _ in buttons(second)) == "◀ Newer"
    await w.press_label(RITA, first["message_id"], "◀ Newer")
    assert "note 7" in w.current(RITA, first["message_id"])["text"]

    # Another rep sees nothing of it, by command or by a forged button.
    refused = await w.say(SAM, "/history lead 1")
    assert refused["text"] == "Lead #1 belongs to another rep."
    answer = await w.press(SAM, refused["message_id"], "1:hi:l1:1")
    assert answer["text"] == "Lead #1 belongs to another rep." and answer["show_alert"]
    assert (await w.say(RITA, "/history"))["text"].startswith("Usage: /history lead 12")


async def test_amount_when_converting_and_later(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    await w.rep("Boss", BOSS, role="supervisor")
    await w.service.process_now(form(1))
    mid = (await w.card(RITA))["message_id"]
    await w.press_label(RITA, mid, "🔄 Convert")
    assert "💼 Deal + amount…" in await labels(w, RITA, mid)
    await w.press_label(RITA, mid, "💼 Deal + amount…")
    prompt = await w.card(RITA)
    assert prompt["text"].startswith("How much is deal #1 worth? Reply with the amount, e.g.")
    wrong = await w.say(RITA, "a lot", reply_to=prompt["message_id"])
    assert wrong["text"].startswith("I did not understand “a lot” as an amount; e.g. 1 200,50 EUR")
    odd = await w.say(RITA, "12 XYZ", reply_to=prompt["message_id"])
    assert odd["text"].startswith("I do not know the currency “XYZ”")
    ok = await w.say(RITA, "1 200,50 EUR", reply_to=prompt["message_id"])
    assert ok["text"] == "💶 Deal #1: 1,200.50 EUR"
    await w.wait_until(lambda: _shows(w, RITA, mid, "· 💶 1,200.50 EUR"))  # redrawn after
    card = w.current(RITA, mid)
    assert card["text"].split("\n")[0] == "✅ Lead #1 converted into deal #1"
    assert "· 💶 1,200.50 EUR" in card["text"]
    deal = await w.crm.deals.get(1)
    assert str(deal.amount) == "1200.50" and deal.currency == "EUR"

    await w.press_label(RITA, mid, "💶 Amount")
    again = await w.card(RITA)
    assert "(now 1,200.50 EUR)" in again["text"]
    assert (await w.say(RITA, "$300", reply_to=again["message_id"]))["text"] == (
        "💶 Deal #1: 300.00 USD"
    )
    await w.wait_until(lambda: _shows(w, RITA, mid, "· 💶 300.00 USD"))
    assert "300.00 USD" in (await w.say(RITA, "/deals"))["text"]
    history = (await w.say(RITA, "/history deal 1"))["text"]
    assert "Amount changed: 300" in history


async def test_snooze_the_reminder(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    await w.rep("Sam", SAM)
    await w.service.process_now(form(1))
    mid = (await w.card(RITA))["message_id"]
    await w.press_label(RITA, mid, "⏰ Call back")
    await w.press_label(RITA, mid, "In 15 min")
    assert not any(t.startswith("😴") for t in await labels(w, RITA, mid))  # not due yet
    w.advance(minutes=15)
    reminder = await w.card(RITA)
    assert reminder["text"].startswith("⏰ Call-back due")
    snoozes = [t for t, _ in buttons(reminder) if t.startswith("😴")]
    assert snoozes == ["😴 15 min", "😴 1 hour", "😴 Tomorrow 9:00"]

    own = await w.say(SAM, "/help")  # a message in Sam's chat to press a forged button on
    refused = await w.press(SAM, own["message_id"], "1:sz:a2:60")
    assert refused["text"] == "This task belongs to another rep."
    answer = await w.press_label(RITA, reminder["message_id"], "😴 1 hour")
    assert answer["text"].startswith("😴 I will remind you again at ")
    shown = w.current(RITA, reminder["message_id"])
    assert shown["text"].startswith("⏰ Call-back due")  # the headline stays
    assert not any(t.startswith("😴") for t, _ in buttons(shown))
    w.advance(minutes=59)
    await w.settle()
    before = len(w.tg.sent_messages(RITA))
    w.advance(minutes=2)
    second = await w.card(RITA)
    assert len(w.tg.sent_messages(RITA)) == before + 1
    assert second["text"].startswith("⏰ Call-back due")
    await w.press_label(RITA, second["message_id"], "😴 Tomorrow 9:00")
    task = await w.crm.activities.get(2)
    assert task.due_at is not None
    local = task.due_at.astimezone(BERLIN)
    assert (local.hour, local.minute) == (9, 0)
    assert local.date() == (w.clock.now().astimezone(BERLIN) + timedelta(days=1)).date()
    history = (await w.say(RITA, "/history lead 1"))["text"]
    assert "Reminder snoozed to " in history


def test_digest_time_is_configurable() -> None:
    assert TelegramSettings().digest_at == time(8, 30)
    assert TelegramSettings(digest_at="07:15").digest_at == time(7, 15)  # type: ignore[arg-type]
    assert TelegramSettings(digest_at="off").digest_at is None  # type: ignore[arg-type]


async def digests_of(w: World, chat: int) -> list[dict[str, Any]]:
    return [m for m in w.tg.sent_messages(chat) if m.get("text", "").startswith("☀️")]


async def test_morning_digest_once_a_day_per_rep(world: Any) -> None:
    w: World = await world()
    rita = await w.rep("Rita Rep", RITA)
    await w.rep("Boss", BOSS, role="supervisor")
    for n in (1, 2):
        await w.service.process_now(email(n, "Person"))
    await w.crm.leads.assign(1, rita.id)
    await w.crm.leads.assign(2, rita.id)
    await w.crm.leads.take(2, Actor(rita.id, "rep"))
    due = w.clock.now() - timedelta(hours=2)
    await w.crm.activities.schedule(
        "lead", 2, due_at=due, subject="Call back", kind="call", actor=Actor(rita.id, "rep")
    )
    await w.settle()

    w.bot.duties.digest_at = time(0, 0)  # the morning has come
    await w.wait_until(lambda: _has(w, RITA, 1))
    await w.wait_until(lambda: _has(w, BOSS, 1))
    digest = (await digests_of(w, RITA))[0]
    lines = digest["text"].split("\n")
    assert lines[0].startswith("☀️ Your day, Rita — ")
    assert "⚠️ Overdue: 1" in lines and "✋ Not taken yet: 1" in lines
    assert any(line.startswith("⏰ Call-backs today: ") for line in lines)
    assert "#1 Person 1 · New" in lines
    assert [t for t, _ in buttons(digest)] == ["Lead #2", "Lead #1"]
    boss = (await digests_of(w, BOSS))[0]["text"]
    assert "👥 Queue (nobody's): 0 leads — /team" in boss

    # Another process (or this one restarted) finds today's digests sent.
    other = Duties(
        w.crm.followups,
        w.clock,
        interval=1,
        escalate_after=timedelta(minutes=15),
        max_escalations=0,
        team=w.crm.team,
        digest_at=time(0, 0),
        tz=BERLIN,
    )
    assert await other.digests() == 0
    await w.settle()
    assert len(await digests_of(w, RITA)) == 1
    # Two processes racing for the next day: each rep's digest is claimed once.
    tomorrow = w.clock.now().astimezone(BERLIN).date() + timedelta(days=1)
    now = datetime.now(BERLIN)
    both = await asyncio.gather(*(w.crm.team.claim_digests(tomorrow, now) for _ in range(2)))
    assert sorted(both[0] + both[1]) == sorted([rita.id, (await _boss(w))])
    await w.wait_until(lambda: _has(w, RITA, 2))
    await w.settle()
    assert len(await digests_of(w, RITA)) == 2


async def _boss(w: World) -> int:
    rep = await w.crm.reps.by_telegram(BOSS)
    assert rep is not None
    return int(rep.id)


async def _has(w: World, chat: int, count: int) -> bool:
    return len(await digests_of(w, chat)) >= count


async def _shows(w: World, chat: int, message_id: int, text: str) -> bool:
    return text in w.current(chat, message_id)["text"]
