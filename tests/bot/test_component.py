"""The component: escalation of untaken leads, webhook mode, start-up without Telegram."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import pytest

from bot.component import bot_component
from leadbot.settings import ConfigError
from tests.bot.conftest import World, answered_call, telegram_settings
from tests.conftest import service_settings

RITA, BOB, BOSS = 1001, 1002, 2001


async def test_untaken_lead_moves_to_the_next_rep_and_the_supervisor_is_told(
    world: Any,
) -> None:
    w: World = await world(crm={"escalation_minutes": 15})
    rita = await w.rep("Rita", RITA)
    bob = await w.rep("Bob", BOB)
    await w.rep("Boss", BOSS, role="supervisor")
    first = await w.service.process_now(answered_call(1))
    second = await w.service.process_now(answered_call(2))
    assert (first.responsible_id, second.responsible_id) == (rita.id, bob.id)
    rita_card = await w.card(RITA)
    bob_card = await w.card(BOB)
    # Bob acts on his lead (a comment) before the deadline; Rita does nothing.
    await w.say(BOB, "on it", reply_to=bob_card["message_id"])

    w.advance(minutes=14)
    assert await w.bot.duties.tick() == 0
    w.advance(minutes=2)
    offered = await w.card(BOB)
    assert offered["text"].startswith("⚠️ Not taken within 15 min — now offered to you")
    assert f"Lead #{first.lead_id}" in offered["text"]
    notice = await w.card(BOSS)
    assert notice["text"].startswith(
        f"⚠️ Lead #{first.lead_id} not taken within 15 min — offered to Bob"
    )
    assert (await w.crm.leads.get(first.lead_id)).responsible_id == bob.id
    assert (await w.crm.leads.get(second.lead_id)).responsible_id == bob.id  # acted on: stays
    await w.wait_until(lambda: _redrawn(w, RITA, rita_card["message_id"]))
    assert w.current(RITA, rita_card["message_id"])["text"] == (
        f"Lead #{first.lead_id} is now with Bob — nobody took it in time (escalation)."
    )

    # Bob takes it: escalation stops there.
    await w.press_label(BOB, offered["message_id"], "✋ Take")
    w.advance(minutes=30)
    assert await w.bot.duties.tick() == 0
    assert (await w.crm.leads.get(first.lead_id)).responsible_id == bob.id


async def test_escalation_stops_after_the_configured_number_of_moves(world: Any) -> None:
    # Only the test's own ticks run the duties (no background round racing them).
    quiet = {"escalation_max": 2, "duties_interval": 3600}
    w: World = await world(crm={"escalation_minutes": 5}, telegram=quiet)
    await w.rep("Rita", RITA)
    await w.rep("Bob", BOB)
    result = await w.service.process_now(answered_call(1))
    await w.card(RITA)
    owners = []
    for _ in range(4):
        w.advance(minutes=6)
        await w.bot.duties.tick()
        owners.append((await w.crm.leads.get(result.lead_id)).responsible_id)
    assert owners == [2, 1, 1, 1]


async def _redrawn(w: World, chat: int, message_id: int) -> bool:
    return "edit_date" in w.tg.message(chat, message_id)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_webhook_mode_checks_the_secret_token(world: Any) -> None:
    port = free_port()
    w: World = await world(
        http={"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}"},
        telegram={"mode": "webhook", "webhook_secret": "s3cret-token_1"},
    )
    await w.rep("Rita", RITA)
    url = f"http://127.0.0.1:{port}/hooks/telegram"
    assert w.tg.webhook_url == url
    assert w.tg.calls("setWebhook")[0].params["secret_token"] == "s3cret-token_1"
    update = w.tg.user_message(RITA, "/help")
    assert await w.tg.post_webhook(url, update, secret_token="wrong") == 403
    assert await w.tg.post_webhook(url, update) == 403
    assert w.tg.sent_messages(RITA) == []
    assert await w.tg.post_webhook(url, update, secret_token="s3cret-token_1") == 200
    reply = await w.card(RITA)
    assert "/leads" in reply["text"]
    async with aiohttp.ClientSession() as http:
        headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-token_1"}
        async with http.post(url, data=b"not json", headers=headers) as r:
            assert r.status == 400 and (await r.json())["error"] == "bad_update"


async def test_webhook_mode_needs_a_valid_secret(db: Any, tg: Any) -> None:
    from leadbot.app import Service

    for secret in (None, "has spaces"):
        settings = service_settings(
            db, telegram=telegram_settings(tg, mode="webhook", webhook_secret=secret)
        )
        with pytest.raises(ConfigError, match="webhook_secret is required"):
            Service(settings, components=[bot_component])


async def test_no_token_no_bot_and_no_bot_in_bare_workers(db: Any, tg: Any) -> None:
    from leadbot.app import Service

    assert Service(service_settings(db), components=[bot_component]).components == []
    settings = service_settings(db, telegram=telegram_settings(tg))
    assert Service(settings, components=[bot_component], http=False).components == []


async def test_service_starts_while_telegram_is_down_and_catches_up(
    start_service: Any, tg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.component
    from bot.clock import ShiftedClock
    from bot.component import BotComponent

    monkeypatch.setattr(bot.component, "FIRST_CONNECT_DELAY", 0.05)
    tg.fail_next("getMe", 502, 2)  # down at start-up …
    tg.fail_next("deleteWebhook", 502, 1)  # … and once more half-way through starting
    service = await start_service(
        components=[lambda s: bot_component(s, ShiftedClock())], telegram=telegram_settings(tg)
    )
    bot = next(c for c in service.components if isinstance(c, BotComponent))
    await service.crm.reps.add("Rita", telegram_user_id=RITA)
    result = await service.process_now(answered_call(1))
    assert result.outcome == "new_lead"  # intake does not wait for Telegram
    await bot.wait_ready()
    await tg.wait_for("sendMessage", predicate=lambda c: c.status == 200)
    assert [c.status for c in tg.calls("getMe")] == [502, 502, 200]
    assert [c.status for c in tg.calls("deleteWebhook")] == [502, 200]
    assert len(tg.sent_messages(RITA)) == 1
