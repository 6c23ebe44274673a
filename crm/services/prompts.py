"""Questions the rep bot asked and waits to have answered, in the `state` table.

A prompt ("Why is lead #5 junk?", "When should I remind you?", "Your message to …") is
answered by a reply to it, or, for some, by the rep's next message. Kept in the database, not in
the bot's memory, so a prompt left open across a restart still finishes its action.

Rows:
- ``bot.prompt:<chat>:<prompt message>``: the action, the record, the card to redraw and
  that card's first line.
- ``bot.next:<chat>``: the prompt the rep's next plain message answers (at most one per chat).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from crm.db import Database
from crm.models import KeyValue, utcnow
from crm.services.rows import forget_state

_PROMPT = "bot.prompt:"
_NEXT = "bot.next:"
MAX_AGE = timedelta(days=7)  # an answer weeks later is more likely a comment than an answer


@dataclass(frozen=True, slots=True)
class Prompt:
    chat_id: int
    message_id: int  # the question's message
    action: str  # what the answer finishes (a callback action code)
    ref: str  # the record it acts on (a callback ref)
    card_id: int | None = None  # the card to redraw once it is done
    headline: str | None = None  # that card's first line, kept when it is redrawn
    next_message: bool = False  # the rep's next plain message answers it too


def _key(chat_id: int, message_id: int) -> str:
    return f"{_PROMPT}{chat_id}:{message_id}"


def _prompt(row: KeyValue | None, now: datetime) -> Prompt | None:
    if row is None:
        return None
    fields = dict(row.value)
    try:  # the time is kept in the value: SQLite gives timestamps back without a zone
        if now - datetime.fromisoformat(str(fields.pop("at"))) > MAX_AGE:
            return None
        return Prompt(**fields)
    except (KeyError, TypeError, ValueError):  # written by another version: nothing to finish
        return None


class Prompts:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def forget_old(self, now: datetime) -> int:
        """Drop questions older than `MAX_AGE` (they can no longer be answered); how many (a
        periodic duty)."""
        async with self.db.transaction() as s:
            return await forget_state(s, [_PROMPT, _NEXT], now - MAX_AGE)

    async def open(self, prompt: Prompt) -> None:
        """Remember a question (again, after an answer that did not work)."""
        now = utcnow()
        async with self.db.transaction() as s:
            await s.merge(
                KeyValue(
                    key=_key(prompt.chat_id, prompt.message_id),
                    value={**asdict(prompt), "at": now.isoformat()},
                    updated_at=now,
                )
            )
            if prompt.next_message:
                await s.merge(
                    KeyValue(
                        key=f"{_NEXT}{prompt.chat_id}",
                        value={"message_id": prompt.message_id},
                        updated_at=now,
                    )
                )

    async def take(self, chat_id: int, message_id: int) -> Prompt | None:
        """The question a reply answers, closed; None when there is none (or it is old)."""
        async with self.db.transaction() as s:
            row = await s.get(KeyValue, _key(chat_id, message_id), with_for_update=True)
            if row is None:
                return None
            prompt = _prompt(row, utcnow())
            await s.delete(row)
            following = await s.get(KeyValue, f"{_NEXT}{chat_id}", with_for_update=True)
            if following is not None and following.value.get("message_id") == message_id:
                await s.delete(following)
            return prompt

    async def take_next(self, chat_id: int) -> Prompt | None:
        """The question the rep's next plain message answers, closed; None when none."""
        async with self.db.transaction() as s:
            following = await s.get(KeyValue, f"{_NEXT}{chat_id}", with_for_update=True)
            if following is None:
                return None
            await s.delete(following)
            message_id = following.value.get("message_id")
            if not isinstance(message_id, int):
                return None
            row = await s.get(KeyValue, _key(chat_id, message_id), with_for_update=True)
            if row is None:
                return None
            await s.delete(row)
            return _prompt(row, utcnow())
