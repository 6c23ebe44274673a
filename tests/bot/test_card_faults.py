"""Cards Telegram refuses (400, 403) still reach someone: without buttons, as plain text, or at
the supervisors; each case is counted in /metrics and the outbox row says what happened."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from crm.models import OutboxMessage
from tests.bot.conftest import World, buttons, email

RITA, BOSS = 1001, 2001
BUTTONS_REFUSED = "Bad Request: BUTTON_DATA_INVALID"
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


def has_buttons(params: dict[str, Any]) -> bool:
    return "reply_markup" in params


def mentions(name: str) -> Any:
    return lambda params: name in str(params.get("text", ""))


async def metric(w: World, name: str, **labels: str) -> float:
    """A counter's value as GET /metrics reports it (0 when the series does not exist yet)."""
    url = f"http://127.0.0.1:{w.service.port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        text = await r.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def outbox_notes(w: World) -> list[str | None]:
    """Each outbox row's last_error, oldest row first (every row must be finished)."""
    async with w.service.db.read() as s:
        rows = list(await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    assert all(r.sent_at is not None for r in rows)
    return [r.last_error for r in rows]


async def nothing_pending(w: World) -> bool:
    return bool(await w.crm.outbox.pending_count() == 0)


async def test_a_card_refused_for_its_buttons_arrives_without_them(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    w.tg.fail_next("sendMessage", 400, description=BUTTONS_REFUSED, when=has_buttons)
    await w.service.process_now(email(1))
    card = await w.card(RITA)
    assert "Kunde 1" in card["text"] and buttons(card) == []
    await w.service.process_now(email(2))  # the refusal was for one card only
    assert buttons(await w.card(RITA))
    await w.wait_until(lambda: nothing_pending(w))

    assert [c.status for c in w.tg.calls("sendMessage")] == [400, 200, 200]
    assert await metric(w, "leadbot_cards_fallback_total", form="without_buttons") == 1
    assert await metric(w, "leadbot_notifications_sent_total", kind="new_lead") == 2
    first, second = await outbox_notes(w)
    assert first is not None and "without buttons" in first and "Button_data_invalid" in first
    assert second is None


async def test_a_card_refused_twice_goes_to_the_supervisors_and_the_next_one_to_the_rep(
    world: Any,
) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    await w.rep("Boss", BOSS, role="supervisor")
    # Telegram's description is shown to the supervisors: it must be escaped like user text.
    refusal = "Bad Request: entity <b> & co invalid"
    w.tg.fail_next("sendMessage", 400, 2, description=refusal, when=mentions("Kunde 1"))
    await w.service.process_now(email(1))
    await w.service.process_now(email(2))

    stand_in = await w.card(BOSS)
    lines = stand_in["text"].split("\n")
    assert lines[0] == "⚠️ Not delivered to Rita — Telegram: Entity <b> & co invalid"
    assert "Kunde 1" in stand_in["text"] and buttons(stand_in)  # the boss can act on it
    assert "Kunde 2" in (await w.card(RITA))["text"]
    await w.wait_until(lambda: nothing_pending(w))

    to_rita = [c for c in w.tg.calls("sendMessage") if c.params["chat_id"] == RITA]
    assert [c.status for c in to_rita] == [400, 400, 200]  # full, without buttons, next card
    assert "reply_markup" not in to_rita[1].params
    assert [m["text"] for m in w.tg.sent_messages(RITA)] == [to_rita[2].result["text"]]
    assert len(w.tg.sent_messages(BOSS)) == 1
    assert await metric(w, "leadbot_cards_undeliverable_total", reason="bad_request") == 1
    assert await metric(w, "leadbot_cards_dropped_total") == 0
    first, second = await outbox_notes(w)
    assert first is not None and "offered to supervisors" in first and "Entity <b>" in first
    assert second is None


async def test_an_html_parse_error_sends_the_card_as_plain_text_with_its_buttons(
    world: Any,
) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    parse_error = "Bad Request: can't parse entities: Unsupported start tag at byte offset 3"
    w.tg.fail_next("sendMessage", 400, description=parse_error)
    await w.service.process_now(email(1, display_name="<i>Anna</i> & Bert"))
    card = await w.card(RITA)
    retry = w.tg.calls("sendMessage")[1]
    assert "parse_mode" not in retry.params and "<b>" not in retry.params["text"]
    assert "👤 <i>Anna</i> & Bert" in card["text"]  # the name literally, not markup
    assert "entities" not in card and buttons(card)
    await w.wait_until(lambda: nothing_pending(w))
    assert await metric(w, "leadbot_cards_fallback_total", form="plain_text") == 1


async def test_chat_not_found_goes_to_the_supervisors_at_once(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    await w.rep("Boss", BOSS, role="supervisor")
    w.tg.fail_next("sendMessage", 400, description="Bad Request: chat not found")
    await w.service.process_now(email(1))
    stand_in = await w.card(BOSS)
    assert stand_in["text"].startswith("⚠️ Not delivered to Rita — Telegram: Chat not found")
    to_rita = [c for c in w.tg.calls("sendMessage") if c.params["chat_id"] == RITA]
    assert len(to_rita) == 1  # no point in sending it again without buttons
    assert await metric(w, "leadbot_cards_undeliverable_total", reason="chat_not_found") == 1


async def test_a_blocked_rep_is_skipped_and_counted(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    await w.rep("Boss", BOSS, role="supervisor")
    w.tg.fail_next("sendMessage", 403)
    await w.service.process_now(email(1))
    await w.service.process_now(email(2))
    assert "Kunde 2" in (await w.card(RITA))["text"]
    await w.wait_until(lambda: nothing_pending(w))
    assert w.tg.sent_messages(BOSS) == []  # as before: a blocked rep's card is not passed on
    assert await metric(w, "leadbot_cards_undeliverable_total", reason="blocked") == 1
    assert await metric(w, "leadbot_cards_dropped_total") == 1
    # Only the card Telegram accepted counts as sent.
    assert await metric(w, "leadbot_notifications_sent_total", kind="new_lead") == 1
    first, _ = await outbox_notes(w)
    assert first is not None and "gave up" in first and "blocked" in first


async def test_a_stand_in_failing_for_a_while_gets_the_card_once_and_the_rep_is_not_retried(
    world: Any,
) -> None:
    w: World = await world(telegram={"max_backoff": 0.2})
    await w.rep("Rita", RITA)
    await w.rep("Boss", BOSS, role="supervisor")
    w.tg.fail_next("sendMessage", 400, 2, when=lambda p: p["chat_id"] == RITA)
    w.tg.fail_next("sendMessage", 502, 2, when=lambda p: p["chat_id"] == BOSS)
    await w.service.process_now(email(1))
    await w.card(BOSS)
    await w.wait_until(lambda: nothing_pending(w))
    assert [c.status for c in w.tg.calls("sendMessage")] == [400, 400, 502, 502, 200]
    assert await metric(w, "leadbot_cards_undeliverable_total", reason="bad_request") == 1


async def test_nobody_to_stand_in_is_logged_and_counted_as_dropped(
    world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    w.tg.fail_next("sendMessage", 400, 2)
    await w.service.process_now(email(1))
    await w.service.process_now(email(2))
    assert "Kunde 2" in (await w.card(RITA))["text"]
    await w.wait_until(lambda: nothing_pending(w))
    assert await metric(w, "leadbot_cards_dropped_total") == 1
    refused = [r for r in caplog.records if "refused the card" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelname == "WARNING"
    assert "outbox #1" in refused[0].getMessage() and "Bad Request" in refused[0].getMessage()
    assert any(r.levelname == "ERROR" and "outbox #1" in r.getMessage() for r in caplog.records)
