"""Delivery state of rep notifications written by intake (at-least-once, in order per rep)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.db import Database
from crm.models import CardMessage, Deal, KeyValue, Lead, OutboxMessage, Rep, utcnow
from crm.services.rows import forget_state


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    rep_id: int | None
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CardRef:
    rep_id: int | None
    chat_id: int
    message_id: int
    owner_type: str
    owner_id: int
    headline: str | None = None  # the card's first line ("🔁 Repeat lead"), kept on redraws


CHANGED = "changed"  # the kind; payload: lead_id or deal_id, by_rep_id, what (as told)

# A card's first line lives in the state table (the card log has no column for it).
_HEADLINE = "card.headline:"
# A card not redrawn for this long is rarely touched again; its first line may go.
HEADLINE_KEEP = timedelta(days=30)


def _headline_key(chat_id: int, message_id: int) -> str:
    return f"{_HEADLINE}{chat_id}:{message_id}"


async def _with_headlines(s: AsyncSession, cards: list[CardMessage]) -> list[CardRef]:
    keys = [_headline_key(c.chat_id, c.message_id) for c in cards]
    found = {
        kv.key: kv.value.get("text")
        for kv in (await s.scalars(select(KeyValue).where(KeyValue.key.in_(keys))) if keys else [])
    }
    return [
        CardRef(
            c.rep_id,
            c.chat_id,
            c.message_id,
            c.owner_type,
            c.owner_id,
            found.get(_headline_key(c.chat_id, c.message_id)),
        )
        for c in cards
    ]


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def forget_old_headlines(self, now: datetime) -> int:
        """Drop saved first lines older than `HEADLINE_KEEP`; how many (a periodic duty)."""
        async with self.db.transaction() as s:
            return await forget_state(s, [_HEADLINE], now - HEADLINE_KEEP)

    async def due(self, now: datetime, limit: int = 100) -> list[OutboxItem]:
        """Messages ready to send. A rep's later message waits while an earlier one is
        still pending (kept back by a retry delay), so every rep sees cards in order."""
        async with self.db.read() as s:
            rows = await s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.sent_at.is_(None))
                .order_by(OutboxMessage.id)
                .limit(limit * 5)
            )
            blocked: set[int | None] = set()
            out: list[OutboxItem] = []
            for m in rows:
                if m.rep_id in blocked:
                    continue
                blocked.add(m.rep_id)
                if m.next_attempt_at <= now:
                    out.append(
                        OutboxItem(
                            m.id, m.rep_id, m.kind, dict(m.payload), m.attempts, m.created_at
                        )
                    )
                if len(out) >= limit:
                    break
            return out

    async def pending_count(self) -> int:
        from sqlalchemy import func

        async with self.db.read() as s:
            return int(
                await s.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.sent_at.is_(None))
                )
                or 0
            )

    async def is_sent(self, item_id: int) -> bool:
        async with self.db.read() as s:
            m = await s.get(OutboxMessage, item_id)
            return m is not None and m.sent_at is not None

    async def mark_sent(self, item_id: int, cards: list[CardRef], note: str | None = None) -> None:
        """Record delivery and which Telegram messages show the record (for in-place edits);
        `note` (kept in last_error) says how, when it was not the plain way (a fallback)."""
        async with self.db.transaction() as s:
            m = await s.get(OutboxMessage, item_id)
            if m is None or m.sent_at is not None:
                return
            m.sent_at = utcnow()
            m.attempts += 1
            if note:
                m.last_error = note[:2000]
            for i, c in enumerate(cards):
                s.add(
                    CardMessage(
                        outbox_id=item_id if i == 0 else None,
                        rep_id=c.rep_id,
                        chat_id=c.chat_id,
                        message_id=c.message_id,
                        owner_type=c.owner_type,
                        owner_id=c.owner_id,
                        created_at=utcnow(),
                    )
                )
                if c.headline:
                    key = _headline_key(c.chat_id, c.message_id)
                    await s.merge(
                        KeyValue(key=key, value={"text": c.headline}, updated_at=utcnow())
                    )

    async def mark_failed(self, item_id: int, error: str, retry_in: timedelta) -> None:
        async with self.db.transaction() as s:
            m = await s.get(OutboxMessage, item_id)
            if m is None:
                return
            m.attempts += 1
            m.last_error = error[:2000]
            m.next_attempt_at = utcnow() + retry_in

    async def give_up(self, item_id: int, error: str) -> None:
        """Stop retrying (e.g. the rep blocked the bot); the row stays for inspection."""
        async with self.db.transaction() as s:
            m = await s.get(OutboxMessage, item_id)
            if m is not None:
                m.last_error = f"gave up: {error}"[:2000]
                m.sent_at = utcnow()

    async def enqueue(self, kind: str, payload: dict[str, Any], rep_id: int | None) -> int:
        """Notifications that do not come from intake (reminders, escalations)."""
        async with self.db.transaction() as s:
            m = OutboxMessage(
                rep_id=rep_id,
                kind=kind,
                payload=payload,
                created_at=utcnow(),
                next_attempt_at=utcnow(),
            )
            s.add(m)
            await s.flush()
            return m.id

    async def tell_holder(self, kind: str, ident: int, by_rep_id: int | None, what: str) -> bool:
        """Someone else worked a rep's lead or deal: queue its holder a "changed" notice
        naming who and what (the bot's, after a button). False when nobody is to be told: no
        holder, the holder did it, or the holder cannot be reached in Telegram."""
        model: Any = {"lead": Lead, "deal": Deal}.get(kind)
        if model is None or by_rep_id is None:
            return False
        async with self.db.transaction() as s:
            row = await s.get(model, ident)
            holder = None if row is None else row.responsible_id
            if holder is None or holder == by_rep_id:
                return False
            rep = await s.get(Rep, holder)
            if rep is None or not rep.active or rep.telegram_user_id is None:
                return False
            payload = {f"{kind}_id": ident, "by_rep_id": by_rep_id, "what": what[:300]}
            now = utcnow()
            s.add(
                OutboxMessage(
                    rep_id=holder,
                    kind=CHANGED,
                    payload=payload,
                    created_at=now,
                    next_attempt_at=now,
                )
            )
            return True

    async def cards_of(self, owner_type: str, owner_id: int) -> list[CardRef]:
        async with self.db.read() as s:
            rows = await s.scalars(
                select(CardMessage).where(
                    CardMessage.owner_type == owner_type, CardMessage.owner_id == owner_id
                )
            )
            return await _with_headlines(s, list(rows))

    async def card_at(self, chat_id: int, message_id: int) -> CardRef | None:
        async with self.db.read() as s:
            c = await s.scalar(
                select(CardMessage).where(
                    CardMessage.chat_id == chat_id, CardMessage.message_id == message_id
                )
            )
            return (await _with_headlines(s, [c]))[0] if c else None
