"""/stats through the fake Bot API: the summary a rep and a supervisor read, the chart photo,
and the lost-reason step on a deal card that feeds it."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.stats import summary
from crm.services.stats import Funnel, NewVsRepeat, RepNumbers, StatsReport, named_period
from tests.bot.conftest import World, answered_call, email
from tests.bot.test_actions import labels

RITA, SAM, BOSS = 1001, 1002, 2001
DOCS_CHART = Path(__file__).resolve().parents[2] / "docs" / "bot" / "img" / "stats.png"


async def lost_menu_of_a_new_deal(w: World, n: int, who: str) -> int:
    """A new e-mail lead converted into a deal on its card, ✖ Lost pressed; the card."""
    await w.service.process_now(email(n, who, "Question"))
    mid = int((await w.card(RITA))["message_id"])
    await w.press_label(RITA, mid, "🔄 Convert")
    await w.press_label(RITA, mid, "💼 Deal")
    await w.press_label(RITA, mid, "✖ Lost")
    return mid


async def test_lost_asks_why_and_stats_count_it(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    await w.rep("Boss", BOSS, role="supervisor")
    mid = await lost_menu_of_a_new_deal(w, 1, "Person")
    assert await labels(w, RITA, mid) == [
        "Price",
        "Competitor",
        "No budget",
        "No answer",
        "Not interested",
        "✍ Other reason…",
        "« Back",
    ]
    answer = await w.press_label(RITA, mid, "Price")
    assert answer["text"].endswith(": Lost — Price")
    assert await labels(w, RITA, mid) == ["↩ Reopen", "🕘 History"]

    # A second lead, converted and lost with a typed reason.
    m2 = await lost_menu_of_a_new_deal(w, 2, "Other")
    await w.press_label(RITA, m2, "✍ Other reason…")
    prompt = await w.card(RITA)
    assert prompt["text"].startswith("Why was deal #2 lost?")
    await w.say(RITA, "went <quiet>", reply_to=prompt["message_id"])
    deal = await w.crm.deals.get(2)
    assert deal.lost_reason == "went <quiet>"

    mine = await w.say(RITA, "/stats")
    lines = mine["text"].split("\n")
    assert lines[0].startswith("📊 Numbers today (") and lines[0].endswith("), Rita")
    assert lines[1].startswith("New leads: 2 · taken: 2 · time to take: median ")
    assert lines[2] == "Converted: 2 · won: 0 · lost: 2"
    assert lines[3] == "Lost because: Price 1, went <quiet> 1"  # sent as HTML, escaped
    assert "went &lt;quiet&gt;" in w.tg.calls("sendMessage")[-1].params["text"]
    assert lines[4] == "Inbound: 2 (2 new, 0 repeat, 0 on open records) — E-mail 2"
    assert "Per rep" not in mine["text"]
    photo = await w.card(RITA)  # the chart follows the text
    assert photo["caption"] == "Numbers today, Rita" and photo["photo"]
    sent = w.tg.calls("sendPhoto")[-1].params
    assert sent["photo"]["file_name"] == "stats.png"

    refused = await w.say(RITA, "/stats week @boss")
    assert refused["text"] == "A rep sees only their own numbers."

    team = await w.say(BOSS, "/stats week")
    text = team["text"]
    assert ", the team" in text.split("\n")[0] and "Per rep" in text
    assert "Rita: new 2, taken 2, converted 2, won 0, lost 2, overdue 0, takes in " in text
    assert (await w.card(BOSS))["caption"] == "Numbers this week, the team"
    one = await w.say(BOSS, "/stats @rita month")
    assert one["text"].split("\n")[0].endswith("), Rita") and "Per rep" not in one["text"]
    assert (await w.card(BOSS))["caption"] == "Numbers this month, Rita"
    bad = await w.say(BOSS, "/stats year")
    assert bad["text"].startswith("No rep matches “year”; usage: /stats")


async def test_stats_is_in_the_command_menu_and_help(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)

    async def registered() -> bool:
        return "stats" in w.tg.menu(RITA)

    await w.wait_until(registered)
    assert "/stats" in (await w.say(RITA, "/help"))["text"]
    empty = await w.say(RITA, "/stats month")
    assert "New leads: 0 · taken: 0 · time to take: —" in empty["text"]


def test_a_big_team_fits_one_message() -> None:
    period = named_period("week", datetime(2026, 12, 9, 12, tzinfo=UTC), ZoneInfo("Europe/Berlin"))
    reps = tuple(RepNumbers(n, f"Rep {n:02} <x>", 1, 1, 0, 0, 0, 0) for n in range(1, 41))
    report = StatsReport(
        period, None, (), Funnel(40, 0, 0, 0), NewVsRepeat(0, 0, 0), None, (), 0, (), (), reps
    )
    text = summary(report, "Numbers this week", "the team", per_rep=True)
    assert len(text) < 4096
    assert "Rep 30 &lt;x&gt;: new 1, taken 1" in text and "Rep 31" not in text
    assert text.endswith("… and 10 more; one rep's numbers: /stats week @name")


async def test_the_team_chart_as_the_guide_shows_it(world: Any) -> None:
    """A small team's week; the chart /stats sends is docs/bot/img/stats.png (written with
    LEADBOT_DOCS_SHOTS=1)."""
    w: World = await world()
    rita, sam = await w.rep("Rita", RITA), await w.rep("Sam", SAM)
    chats = {rita.id: RITA, sam.id: SAM}
    # (event, what happens on its card after ✋ Take; None: nobody takes it)
    plan = [
        (email(1, "Anna", "Windows"), ["🔄 Convert", "💼 Deal", "🏆 Won"]),
        (answered_call(2), ["🔄 Convert", "💼 Deal", "✖ Lost", "Price"]),
        (email(3, "Bert", "Roof"), ["🔄 Convert", "💼 Deal", "✖ Lost", "Competitor"]),
        (answered_call(4), ["🗑 Junk", "Spam"]),
        (email(5, "Carla", "Doors"), ["🔄 Convert", "💼 Deal"]),
        (answered_call(6), []),
        (email(7, "Dora", "Garden"), None),
    ]
    for event, presses in plan:
        result = await w.service.process_now(event)
        lead = await w.crm.leads.get(result.lead_id)
        chat = chats[lead.responsible_id]
        mid = (await w.card(chat))["message_id"]
        for label in [] if presses is None else ["✋ Take", *presses]:
            await w.press_label(chat, mid, label)
    await w.rep("Boss", BOSS, role="supervisor")
    w.tg.user_message(BOSS, "/stats week")
    # Drawn before the text goes out: the first chart of a process on a busy machine is slow.
    text = (await w.new_messages(BOSS, timeout=30))[0]["text"]
    assert "New leads: 7 · taken: 6" in text and "won: 1" in text and "lost: 2" in text
    assert (await w.card(BOSS))["caption"] == "Numbers this week, the team"
    chart = w.tg.calls("sendPhoto")[-1].params["photo"]
    assert chart["data"].startswith(b"\x89PNG")
    if os.environ.get("LEADBOT_DOCS_SHOTS") == "1":
        DOCS_CHART.parent.mkdir(parents=True, exist_ok=True)
        DOCS_CHART.write_bytes(chart["data"])
