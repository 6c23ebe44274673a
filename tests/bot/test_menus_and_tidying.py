"""What strangers and reps see in the command menu of a bot shared with customers, a
company's deal card, and the periodic tidying of the bot's old state rows — through the fake
Bot API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crm.models import KeyValue
from crm.services.handmade import DealDraft
from tests.bot.conftest import World, email

RITA, SUE, ADA, ANNA = 1001, 1002, 3001, 5001
REP_MENU = ["leads", "lead", "deals", "find", "today", "web", "stats", "history", "help"]


async def test_customers_see_no_rep_commands_and_each_rep_sees_their_roles(world: Any) -> None:
    w: World = await world(telegram={"admins": [ADA]})
    await w.rep("Rita", RITA)
    await w.rep("Sue", SUE, role="supervisor")

    async def registered() -> bool:
        return w.tg.menu(RITA) == REP_MENU and "team" in w.tg.menu(SUE)

    await w.wait_until(registered)
    assert w.tg.menu(ANNA) == ["start"]  # a customer (or stranger) sees only /start
    assert w.tg.menu(ADA)[-2:] == ["exceptions", "settings"]
    assert "exceptions" not in w.tg.menu(SUE)
    default = [c for c in w.tg.calls("setMyCommands") if "scope" not in c.params]
    assert [c["command"] for c in default[-1].params["commands"]] == ["start"]


async def test_a_deactivated_rep_loses_the_menu_at_once(world: Any) -> None:
    # Duties (and the menus' periodic sync) every 30 s: only the change itself can be this fast.
    w: World = await world(telegram={"duties_interval": 30})
    rita = await w.rep("Rita", RITA)
    sue = await w.rep("Sue", SUE)

    async def menus_are(rita_menu: list[str], sue_menu: list[str]) -> bool:
        return w.tg.menu(RITA) == rita_menu and w.tg.menu(SUE) == sue_menu

    await w.wait_until(lambda: menus_are(REP_MENU, REP_MENU))
    await w.crm.reps.deactivate(rita.id)
    await w.wait_until(lambda: menus_are(["start"], REP_MENU), timeout=2)
    deleted = w.tg.calls("deleteMyCommands")
    assert [c.params["scope"] for c in deleted] == [{"type": "chat", "chat_id": RITA}]
    await w.crm.reps.set_role(sue.id, "supervisor")  # a role change is at once too
    await w.wait_until(lambda: menus_are(["start"], [*REP_MENU[:3], "team", *REP_MENU[3:]]), 2)


async def test_a_deal_of_a_company_alone_shows_the_company_as_client(world: Any) -> None:
    w: World = await world()
    rita = await w.rep("Rita", RITA)
    company = await w.crm.records.create_company(
        "Bob & Sons <GmbH>",
        phones=("+49 30 1234567",),
        emails=("office@bobsons.example",),
        responsible_id=rita.id,
    )
    saved = await w.crm.handmade.create_deal(
        DealDraft("New roof", company_id=company.id, owner_id=rita.id)
    )
    await w.settle()
    card = await w.say(RITA, f"/deal {saved.id}")
    lines = card["text"].split("\n")
    assert lines[1:4] == [
        "💼 New roof",
        "🏢 Bob & Sons <GmbH>",  # sent as HTML, escaped
        "📞 +49 30 1234567",
    ]
    assert lines[4].startswith("✉️ office@bobsons.example")
    links = [e["url"] for e in card.get("entities", []) if e["type"] == "text_link"]
    assert links == ["tel:+49301234567"]


async def state_keys(w: World, prefix: str) -> list[str]:
    async with w.crm.db.read() as s:
        rows = await s.scalars(select(KeyValue.key).where(KeyValue.key.startswith(prefix)))
        return list(rows)


async def test_old_card_first_lines_and_prompts_are_tidied_away(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    await w.service.process_now(email(1, "Person", "Question"))
    mid = (await w.card(RITA))["message_id"]
    await w.press_label(RITA, mid, "✋ Take")
    await w.press_label(RITA, mid, "🗑 Junk")
    await w.press_label(RITA, mid, "✍ Other reason…")
    prompt = await w.card(RITA)
    assert prompt["text"].startswith("Why is lead #1 junk?")
    assert await state_keys(w, "card.headline:") == [f"card.headline:{RITA}:{mid}"]
    assert await state_keys(w, "bot.prompt:") == [f"bot.prompt:{RITA}:{prompt['message_id']}"]

    w.advance(days=8)  # the prompt can no longer be answered; the card may still be redrawn

    async def gone(prefix: str) -> bool:
        return await state_keys(w, prefix) == []

    await w.wait_until(lambda: gone("bot.prompt:"))
    assert await state_keys(w, "card.headline:") == [f"card.headline:{RITA}:{mid}"]
    w.advance(days=23)
    await w.wait_until(lambda: gone("card.headline:"))
