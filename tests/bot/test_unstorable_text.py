"""Text no database can store (NUL, a lone surrogate, control characters), sent by a rep or a
customer through long polling (the default mode), is stored cleaned on SQLite and PostgreSQL;
nobody sees an error."""

from __future__ import annotations

from typing import Any

from bot.customers import ASK, NOT_NOW, THANKS_NO_PHONE
from crm.services.listing import ListFilter
from tests.bot.conftest import World
from tests.bot.test_actions import form

RITA, ANNA = 1001, 5001
# As Telegram's JSON carries them: "\u0000", a high surrogate with no low half, "\u0007".
DIRTY = "Called\x00 back \ud83d she \x07wants a quote\ttoday"
CLEAN = "Called back \ufffd she wants a quote\ttoday"


async def test_a_reps_comment_with_unstorable_characters_is_stored_cleaned(world: Any) -> None:
    w: World = await world()
    assert w.bot.settings.mode == "polling"
    await w.rep("Rita", RITA)
    result = await w.service.process_now(form(1))
    card = await w.card(RITA)

    reply = await w.say(RITA, DIRTY, reply_to=card["message_id"])
    assert reply["text"] == f"💬 Comment added to lead #{result.lead_id}."
    acts = await w.crm.activities.of_record("lead", result.lead_id)
    assert [a.body for a in acts if a.kind == "comment"] == [CLEAN]

    # /find with a NUL in the query searches for the cleaned name.
    found = await w.say(RITA, "/find Kun\x00din 1")
    assert "Kundin 1" in found["text"]


async def test_a_customers_message_with_unstorable_characters_becomes_a_lead(world: Any) -> None:
    w: World = await world()
    await w.rep("Rita", RITA)
    w.tg.user(ANNA, "An\x00na\ud800")
    # Held (stored with the open phone question) until the customer answers it.
    assert (await w.say(ANNA, DIRTY))["text"] == ASK
    assert (await w.say(ANNA, NOT_NOW))["text"] == THANKS_NO_PHONE
    card = await w.card(RITA)
    assert card["text"].startswith("🆕 New lead") and CLEAN in card["text"]
    leads, _ = await w.crm.leads.page(ListFilter())
    assert [lead.name for lead in leads] == ["Anna\ufffd"]
    acts = await w.crm.activities.of_record("lead", leads[0].id)
    assert [(a.kind, a.body) for a in acts] == [("message", CLEAN)]
