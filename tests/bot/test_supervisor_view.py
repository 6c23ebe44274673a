"""A supervisor's view through the fake Bot API: /team, everyone's /leads and /deals, one
rep's lists by name or by the /team buttons, and what a rep may not see of it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from crm.dto import Actor
from tests.bot.conftest import World, button, buttons, email

RITA, SAM, BOSS = 1001, 1002, 2001


async def three_leads(w: World) -> tuple[int, int]:
    """Rita holds lead 1 (taken); Sam lead 2 (not taken, an overdue call) and deal 1."""
    rita = await w.rep("Rita Rep", RITA)
    sam = await w.rep("Sam Sales", SAM)
    await w.rep("Boss", BOSS, role="supervisor")
    for n in (1, 2, 3):
        await w.service.process_now(email(n, "Person"))
    await w.crm.leads.assign(1, rita.id)
    await w.crm.leads.assign(2, sam.id)
    await w.crm.leads.assign(3, sam.id)
    await w.crm.leads.take(1, Actor(rita.id, "rep"))
    await w.crm.leads.convert(3, Actor(sam.id, "rep"), into=("deal",))
    due = w.clock.now() - timedelta(hours=1)
    await w.crm.activities.schedule(
        "lead", 2, due_at=due, subject="Call back", kind="call", actor=Actor(sam.id, "rep")
    )
    await w.settle()
    for chat in (RITA, SAM, BOSS):  # the cards all this sent are read
        w._seen[chat] = len(w.tg.sent_messages(chat))
    return rita.id, sam.id


async def test_team_and_lists_by_rep(world: Any) -> None:
    w: World = await world()
    _rita, sam = await three_leads(w)
    team = await w.say(BOSS, "/team")
    lines = team["text"].split("\n")
    assert lines[0] == "👥 The team now"
    assert lines[1] == "Rita Rep: leads 1 · deals 0"
    assert lines[2] == "Sam Sales: leads 1 (1 not taken) · deals 1 · ⚠️ overdue 1"
    assert lines[3] == "Queue (nobody's): leads 0 · deals 0"
    assert [t for t, _ in buttons(team)] == [
        "Rita Rep: leads",
        "Rita Rep: deals",
        "Sam Sales: leads",
        "Sam Sales: deals",
    ]
    await w.press(BOSS, team["message_id"], button(team, "Sam Sales: leads"))
    shown = w.current(BOSS, team["message_id"])
    assert shown["text"].split("\n") == [
        "Leads (@Sam Sales) 1–1 of 1",
        "#2 Person 2 · New · EMAIL",
    ]
    await w.press(BOSS, team["message_id"], button(team, "Sam Sales: deals"))
    deals = w.current(BOSS, team["message_id"])["text"].split("\n")
    assert deals[0] == "Deals (@Sam Sales) 1–1 of 1" and deals[1].startswith("#1 ")

    # Everyone's, with each one's holder; by name; only the supervisor's own.
    everyone = (await w.say(BOSS, "/leads"))["text"].split("\n")
    assert everyone == [
        "Leads 1–2 of 2",
        "#2 Person 2 · New · EMAIL · Sam Sales",
        "#1 Person 1 · In progress · EMAIL · Rita Rep",
    ]
    assert (await w.say(BOSS, "/leads all"))["text"].startswith("Leads (all) 1–3 of 3")
    by_name = (await w.say(BOSS, "/leads @rita"))["text"].split("\n")
    assert by_name == ["Leads (@Rita Rep) 1–1 of 1", "#1 Person 1 · In progress · EMAIL"]
    assert (await w.say(BOSS, f"/deals #{sam}"))["text"].startswith("Deals (@Sam Sales) 1–1")
    assert (await w.say(BOSS, "/leads mine"))["text"] == "No leads (mine)."
    unknown = await w.say(BOSS, "/leads @nobody")
    assert unknown["text"].startswith("No rep matches “@nobody”; usage: /leads")

    async def boss_menu_has_team() -> bool:
        calls = [
            c
            for c in w.tg.calls("setMyCommands")
            if (c.params.get("scope") or {}).get("chat_id") == BOSS
        ]
        return bool(calls) and "team" in [c["command"] for c in calls[-1].params["commands"]]

    await w.wait_until(boss_menu_has_team)  # the supervisor's command menu offers /team


async def test_a_rep_sees_neither_the_team_nor_anothers_list(world: Any) -> None:
    w: World = await world()
    await three_leads(w)
    assert (await w.say(RITA, "/team"))["text"] == "Only a supervisor or an admin sees the team."
    assert (await w.say(RITA, "/leads @sam"))["text"] == "A rep sees only their own list."
    assert (await w.say(RITA, "/deals @sam"))["text"] == "A rep sees only their own list."
    mine = (await w.say(RITA, "/leads"))["text"].split("\n")
    assert mine == ["Leads 1–1 of 1", "#1 Person 1 · In progress · EMAIL"]  # no holder: all hers
    assert (await w.say(RITA, "/leads @rita"))["text"].startswith("Leads (@Rita Rep) 1–1")
    help_text = (await w.say(RITA, "/help"))["text"]
    assert "/history" in help_text and "/team" not in help_text
    assert "/team" in (await w.say(BOSS, "/help"))["text"]
