"""The rep bot's open questions in the `state` table: answered once, by a reply or by the next
message, and forgotten when very old."""

from __future__ import annotations

from datetime import timedelta

from crm.facade import Crm
from crm.models import KeyValue, utcnow
from crm.services.prompts import MAX_AGE, Prompt


async def test_a_prompt_is_answered_once(crm: Crm) -> None:
    asked = Prompt(1001, 7, "jt", "l5", card_id=3, headline="🆕 New lead")
    await crm.prompts.open(asked)
    assert await crm.prompts.take(1001, 8) is None  # a reply to another message
    assert await crm.prompts.take(1001, 7) == asked
    assert await crm.prompts.take(1001, 7) is None


async def test_the_next_message_answers_a_reply_prompt(crm: Crm) -> None:
    asked = Prompt(1001, 9, "rp", "l5", card_id=3, next_message=True)
    await crm.prompts.open(asked)
    assert await crm.prompts.take_next(1002) is None  # another chat
    assert await crm.prompts.take_next(1001) == asked
    assert await crm.prompts.take(1001, 9) is None
    # Answered by a reply instead: the next message is no answer any more.
    await crm.prompts.open(asked)
    assert await crm.prompts.take(1001, 9) == asked
    assert await crm.prompts.take_next(1001) is None


async def test_a_very_old_prompt_is_not_answered(crm: Crm) -> None:
    await crm.prompts.open(Prompt(1001, 7, "jt", "l5"))
    old = (utcnow() - MAX_AGE - timedelta(minutes=1)).isoformat()
    async with crm.db.transaction() as s:
        row = await s.get(KeyValue, "bot.prompt:1001:7")
        assert row is not None
        row.value = {**row.value, "at": old}
    assert await crm.prompts.take(1001, 7) is None
