"""What the customer side of the Telegram bot remembers per customer, in the `state` table.

Two rows per customer and bot:
- ``telegram.asked:<bot>:<user>``: the bot asked this customer for their phone (once, ever).
- ``telegram.waiting:<bot>:<user>``: while the question is open, the customer's messages are
  held here instead of going to intake, so that once the phone arrives they join the record
  that already holds it (a call, an e-mail) instead of opening a second one. The row goes away
  when the phone arrives, the customer declines, or the wait is over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.db import Database
from crm.models import KeyValue
from matching.event import InboundEvent

_ASKED = "telegram.asked:"
_WAITING = "telegram.waiting:"
MAX_HELD = 50  # a customer who writes on and on is not held back without limit


class Hold(StrEnum):
    ASK = "ask"  # first contact: the event is held, ask for the phone now
    HELD = "held"  # the question is open: the event is held
    PASS = "pass"  # asked before: submit the event now


@dataclass(frozen=True, slots=True)
class ChatKey:
    bot_id: int
    user_id: int

    def suffix(self) -> str:
        return f"{self.bot_id}:{self.user_id}"

    @classmethod
    def parse(cls, text: str) -> ChatKey | None:
        bot, _, user = text.partition(":")
        if not bot.lstrip("-").isdigit() or not user.lstrip("-").isdigit():
            return None
        return cls(int(bot), int(user))


class ChatStates:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def hold(self, key: ChatKey, event: InboundEvent, now: datetime) -> Hold:
        """Hold `event` while the phone question is open; say whether to ask it now."""
        async with self.db.transaction() as s:
            waiting = await s.get(KeyValue, _WAITING + key.suffix(), with_for_update=True)
            if waiting is not None:
                held = list(waiting.value.get("held") or [])
                if len(held) >= MAX_HELD:
                    return Hold.PASS
                waiting.value = {**waiting.value, "held": [*held, event.to_json()]}
                waiting.updated_at = now
                return Hold.HELD
            if await s.get(KeyValue, _ASKED + key.suffix()) is not None:
                return Hold.PASS
            self._start(s, key, now, [event.to_json()])
            return Hold.ASK

    async def open_question(self, key: ChatKey, now: datetime) -> bool:
        """/start by a new customer: open the question with nothing held; False if asked."""
        async with self.db.transaction() as s:
            if await s.get(KeyValue, _ASKED + key.suffix()) is not None:
                return False
            self._start(s, key, now, [])
            return True

    @staticmethod
    def _start(s: AsyncSession, key: ChatKey, now: datetime, held: list[object]) -> None:
        s.add(KeyValue(key=_ASKED + key.suffix(), value={"at": now.isoformat()}, updated_at=now))
        s.add(
            KeyValue(
                key=_WAITING + key.suffix(),
                value={"since": now.isoformat(), "held": held},
                updated_at=now,
            )
        )

    async def release(self, key: ChatKey, now: datetime) -> list[InboundEvent] | None:
        """Close the question: the held events, oldest first; None when none was open.

        Marks the customer as asked, so a phone shared without a question closes it too."""
        async with self.db.transaction() as s:
            waiting = await s.get(KeyValue, _WAITING + key.suffix(), with_for_update=True)
            if await s.get(KeyValue, _ASKED + key.suffix()) is None:
                s.add(
                    KeyValue(
                        key=_ASKED + key.suffix(), value={"at": now.isoformat()}, updated_at=now
                    )
                )
            if waiting is None:
                return None
            held = list(waiting.value.get("held") or [])
            await s.delete(waiting)
        events = []
        for data in held:
            try:
                events.append(InboundEvent.from_json(data))
            except (KeyError, TypeError, ValueError):  # a hand-edited row: skip that entry
                continue
        return events

    async def waiting_since(self, before: datetime) -> list[ChatKey]:
        """Customers whose question has been open since before `before`."""
        async with self.db.transaction() as s:
            rows = await s.scalars(select(KeyValue).where(KeyValue.key.startswith(_WAITING)))
            out = []
            for row in rows:
                key = ChatKey.parse(row.key.removeprefix(_WAITING))
                try:
                    since = datetime.fromisoformat(str(row.value.get("since")))
                except ValueError:
                    since = before  # unreadable: treat as expired, so nothing stays held
                if key is not None and since <= before:
                    out.append(key)
            return out
