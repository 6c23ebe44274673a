"""Cards reach reps once and in order, whatever Telegram answers; user text renders literally."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from matching.event import Channel
from tests.bot.conftest import World, buttons, email, entity_text
from tests.conftest import make_event

RITA, BOSS = 1001, 2001
# PTB itself warns when it builds RetryAfter from Telegram's integer seconds.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


async def test_flood_control_and_server_errors_still_deliver_each_card_once_in_order(
    world: Any,
) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    w.tg.fail_next("sendMessage", 429, 1, retry_after=30)
    for n in (1, 2, 3):
        await w.service.process_now(email(n))
    await w.tg.wait_for("sendMessage", predicate=lambda c: c.status == 429)
    await asyncio.sleep(0.2)  # ten delivery rounds: Retry-After is honoured, nothing is sent
    assert [c.status for c in w.tg.calls("sendMessage")] == [429]

    w.tg.fail_next("sendMessage", 500, 3)
    # Move time on; the retries (and their backoff) follow the clock. Up to 20 s of real time
    # on a loaded machine; it ends as soon as the three cards are out.
    for _ in range(1000):
        if len(w.tg.sent_messages(RITA)) == 3:
            break
        w.advance(seconds=31)
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # a late duplicate would show up now

    statuses = [c.status for c in w.tg.calls("sendMessage")]
    assert statuses == [429, 500, 500, 500, 200, 200, 200]
    names = [m["text"].split("\n")[1] for m in w.tg.sent_messages(RITA)]
    assert names == ["👤 Kunde 1", "👤 Kunde 2", "👤 Kunde 3"]
    # Marked sent once Telegram accepted each (a moment later on a busy machine).
    await w.wait_until(lambda: _nothing_pending(w), timeout=20)


async def test_a_card_already_marked_sent_is_not_posted_again(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    await w.service.process_now(email(1))
    await w.card(RITA)
    await w.wait_until(lambda: _nothing_pending(w))
    # A retry of the same row (e.g. a second notifier after a restart) finds it sent.
    w.advance(hours=1)
    assert await w.bot.notifier.tick() is False
    assert len(w.tg.sent_messages(RITA)) == 1


async def test_rep_who_blocked_the_bot_does_not_hold_up_the_queue(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    w.tg.fail_next("sendMessage", 403, 1)
    await w.service.process_now(email(1))
    await w.service.process_now(email(2))
    second = await w.card(RITA)
    assert "Kunde 2" in second["text"]
    await w.wait_until(lambda: _nothing_pending(w))


async def test_unassigned_notifications_go_to_supervisors(world: Any) -> None:
    w: World = await world()
    await w.rep("Boss", BOSS, role="supervisor")
    offline = await w.rep("Offline", None)  # no Telegram yet: the queue still picks them
    result = await w.service.process_now(email(1))
    assert result.responsible_id == offline.id
    card = await w.card(BOSS)
    assert "Kunde 1" in card["text"] and "Responsible: Offline" in card["text"]


async def test_user_text_is_escaped_and_long_text_is_cut(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    body = "Hallo <b>Team</b> & co,\n" + "ein sehr langer Text " * 800
    await w.service.process_now(
        email(
            1,
            display_name="<b>Anna</b> & Bert",
            company_name="A&B <GmbH>",
            subject="<i>Preis</i> & Lieferung",
            text=body,
        )
    )
    card = await w.card(RITA)
    text = card["text"]
    assert "👤 <b>Anna</b> & Bert · A&B <GmbH>" in text
    assert "Hallo <b>Team</b> & co," in text
    assert len(text) < 4096 and "…" in text
    bold = [entity_text(text, e) for e in card["entities"] if e["type"] == "bold"]
    assert "<b>Anna</b> & Bert" in bold  # our own markup around the literal name
    assert all(c.status == 200 for c in w.tg.calls("sendMessage"))


async def test_repeat_lead_card_has_badge_and_history(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    first = await w.service.process_now(email(1))
    await w.card(RITA)
    await w.crm.leads.convert(first.lead_id, into=("contact", "deal"))
    deals, _ = await w.crm.deals.page(_any())
    await w.crm.deals.win(deals[0].id)
    again = await w.service.process_now(email(2, emails=("kunde1@example.com",)))
    assert again.outcome == "new_repeat_lead"
    card = await w.card(RITA)
    lines = card["text"].split("\n")
    assert lines[0] == "🔁 Repeat lead" and lines[1] == "🔁 Repeat client"
    assert f"Earlier: lead #{first.lead_id} converted, deal #{deals[0].id} won" in lines


async def _nothing_pending(w: World) -> bool:
    return bool(await w.crm.outbox.pending_count() == 0)


def _any() -> Any:
    from crm.services.listing import ListFilter

    return ListFilter()


async def test_a_notice_about_a_missing_record_does_not_block_later_cards(world: Any) -> None:
    w: World = await world()
    rita = await w.rep("Rita", RITA)
    await w.crm.outbox.enqueue("reminder", {"lead_id": 999, "activity_id": 5}, rita.id)
    await w.service.process_now(email(1))
    card = await w.card(RITA)
    assert "Kunde 1" in card["text"]
    await w.wait_until(lambda: _nothing_pending(w))


async def test_news_on_an_existing_lead_and_a_repeated_missed_call(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    first = await w.service.process_now(email(1))
    await w.card(RITA)
    reply = await w.service.process_now(
        email(2, emails=("kunde1@example.com",), subject="Re: Anfrage 1", text="Noch eine Frage")
    )
    assert reply.outcome == "attached_lead" and reply.lead_id == first.lead_id
    news = await w.card(RITA)
    assert news["text"].startswith(f"✉️ New e-mail on lead #{first.lead_id}")
    assert "Noch eine Frage" in news["text"] and "Subject: Re: Anfrage 1" in news["text"]

    meta = {"stage": "missed", "direction": "incoming", "missed": True, "disposition": "missed"}
    for n in (1, 2):
        await w.service.process_now(
            make_event(
                channel=Channel.CALL,
                external_id=f"CX{n}:missed",
                phones=("+49 30 7654321",),
                meta={**meta, "call_id": f"CX{n}"},
            )
        )
    new_lead = await w.card(RITA)
    assert new_lead["text"].startswith("📵 Missed call — new lead")
    again = await w.card(RITA)  # the second call: one card, not an activity card as well
    assert again["text"].startswith("📵 Missed call (2×) on lead #")
    assert "📵 Missed call ×2" in again["text"]
    await w.wait_until(lambda: _nothing_pending(w))
    assert len(w.tg.sent_messages(RITA)) == 4


async def test_an_action_redraws_the_other_copies_of_the_card(world: Any) -> None:
    w: World = await world()
    await w.rep("Boss", BOSS, role="supervisor")
    await w.rep("Admin", BOSS + 1, role="admin")
    await w.rep("Offline", None)
    result = await w.service.process_now(email(1))
    mine, theirs = await w.card(BOSS), await w.card(BOSS + 1)
    await w.press_label(BOSS, mine["message_id"], "📊 Status")
    await w.press_label(BOSS, mine["message_id"], "Processed")
    redrawn = f"Lead #{result.lead_id} · Processed"

    async def _redrawn() -> bool:
        return redrawn in w.current(BOSS + 1, theirs["message_id"])["text"]

    await w.wait_until(_redrawn)  # the other copies are redrawn after the answer
    other = w.current(BOSS + 1, theirs["message_id"])
    assert "👥 Reassign" in [label for label, _ in buttons(other)]  # drawn for its reader
