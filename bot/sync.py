"""Keeping every copy of a card current: a record can be on several reps' screens (the first
card, a supervisor's copy, an escalation). After a change each copy is redrawn for its reader;
a rep who lost the record sees who has it now instead of buttons that would be refused."""

from __future__ import annotations

import logging
from collections.abc import Collection

from telegram import Bot
from telegram.error import TelegramError

from bot.cards import Cards
from bot.clock import Clock
from bot.sending import edit_card
from bot.views import (
    Rendered,
    Viewer,
    notice,
)
from crm.dto import Actor
from crm.errors import CrmError, Forbidden
from crm.facade import Crm

log = logging.getLogger(__name__)


class CardSync:
    def __init__(self, crm: Crm, cards: Cards, clock: Clock) -> None:
        self.crm = crm
        self.cards = cards
        self.clock = clock

    async def refresh(
        self, bot: Bot, kind: str, ident: int, skip: Collection[tuple[int, int]] = ()
    ) -> int:
        """Redraw the other cards of a record; returns how many were edited."""
        if kind not in ("lead", "deal"):
            return 0
        edited = 0
        for ref in await self.crm.outbox.cards_of(kind, ident):
            if (ref.chat_id, ref.message_id) in skip or ref.rep_id is None:
                continue
            rendered = await self._view(ref.rep_id, kind, ident, ref.headline)
            if rendered is None:
                continue
            try:
                edited += await edit_card(bot, ref.chat_id, ref.message_id, rendered)
            except TelegramError as err:  # network trouble: a copy stays old, no harm done
                log.warning("card %s/%s not redrawn: %s", ref.chat_id, ref.message_id, err)
        return edited

    async def _view(
        self, rep_id: int, kind: str, ident: int, headline: str | None
    ) -> Rendered | None:
        try:
            rep = await self.crm.reps.get(rep_id)
            card = await self.cards.load(kind, ident, Actor(rep.id, rep.role), headline=headline)
            return self.cards.render(card, Viewer(rep.id, rep.role), self.clock.now())
        except Forbidden:
            try:
                card = await self.cards.load(kind, ident)
            except CrmError:
                return None
            record = card.lead or card.deal
            holder = record.responsible_name if record is not None else None
            why = await self._why_moved(kind, ident)
            return notice(
                f"{kind.capitalize()} #{ident} is now with {holder or 'another rep'}{why}."
            )
        except CrmError:
            return None

    async def _why_moved(self, kind: str, ident: int) -> str:
        """Why the record changed hands: the newest escalation or reassignment."""
        moves = [
            t
            for t in await self.crm.activities.timeline(kind, ident)
            if t.action in ("escalated", "assigned")
        ]
        if not moves:
            return ""
        if moves[-1].action == "escalated":
            return " — nobody took it in time (escalation)"
        by = moves[-1].actor_id
        try:
            name = (await self.crm.reps.get(by)).name if by is not None else None
        except CrmError:
            name = None
        return f" — reassigned by {name}" if name else " — reassigned"
