"""Delivers the outbox to reps as cards: at least once, in order per rep, never twice on purpose.

Intake writes outbox rows in its own transaction; this loop only reads them, so a slow or failing
Telegram never holds up intake. `Outbox.due` hands out at most the oldest pending row per rep, so
a rep's cards keep their order while one waits for a retry.

Duplicates: before each send the row is checked (`is_sent`), and it is marked sent right after a
successful send. What remains is the ambiguous failure: a timeout after Telegram may already have
posted the message. We retry it (a lost lead is worse than a card shown twice); both copies carry
working buttons, because buttons name the record, not the message.

Refusals (400/403) are not retried as they are: `deliver_card` tries the card without its
buttons or as plain text; a rep Telegram still refuses it for (400) gets nothing and the
supervisors and admins get the card instead, with a line saying why. A rep who blocked the
bot (403) is skipped. Each case is logged once and counted (`CardCounters`); the row's
last_error says what happened. See docs/bot/delivery.md.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from telegram import Bot
from telegram.error import RetryAfter, TelegramError

from bot import call_cards
from bot.cards import Card, Cards
from bot.clock import Clock, real_delay, wait_any
from bot.digest import Digests
from bot.sending import BLOCKED, Undeliverable, deliver_card, fallback_note
from bot.sync import CardSync
from bot.views import (
    NAME_CHARS,
    REASON_CHARS,
    Viewer,
    clip,
    esc,
)
from crm.dto import RepView
from crm.errors import CrmError, NotFound
from crm.facade import Crm
from crm.services.outbox import CHANGED, CardRef, OutboxItem
from crm.services.team import DIGEST

log = logging.getLogger(__name__)

MOVED = ("escalated", "assigned")  # the record changed hands: older cards are redrawn
HEADLINES = {
    "new_lead": "🆕 New lead",
    "repeat_lead": "🔁 Repeat lead",
    "new_deal": "💼 New deal",
    "repeat_deal": "🔁 Repeat deal",
    "reminder": "⏰ Call-back due",
    "assigned": "👥 Assigned to you",
}
ACTIVITY_HEADLINES = {
    "email": "✉️ New e-mail",
    "call": "📞 New call",
    "message": "💬 New message",
    "webform": "📝 New web form",
}


def retry_after_seconds(err: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB warns about the int/timedelta type change
        warnings.simplefilter("ignore")
        value: Any = err.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class CardCounters(Protocol):
    """Where delivered and refused cards are counted (the host's metrics)."""

    def sent(self, kind: str) -> None: ...
    def fallback(self, form: str) -> None: ...
    def undeliverable(self, reason: str) -> None: ...
    def dropped(self) -> None: ...


class NoCounters:
    def sent(self, kind: str) -> None:
        pass

    def fallback(self, form: str) -> None:
        pass

    def undeliverable(self, reason: str) -> None:
        pass

    def dropped(self) -> None:
        pass


@dataclass(slots=True)
class Progress:
    """One outbox row's delivery so far; kept across retries of the row (in memory)."""

    sent: dict[int, CardRef | None] = field(default_factory=dict)  # chat → card; None: none
    refused: list[tuple[RepView, str]] = field(default_factory=list)  # 400: stand-ins see it
    notes: list[str] = field(default_factory=list)  # what the row's last_error will say


@dataclass(frozen=True, slots=True)
class Plan:
    """Which card a notification shows."""

    kind: str
    ident: int
    headline: str | None
    reason: str | None
    activity_id: int | None


class Notifier:
    def __init__(
        self,
        crm: Crm,
        bot: Bot,
        cards: Cards,
        clock: Clock,
        *,
        poll_interval: float = 0.5,
        retries: int = 8,
        max_backoff: float = 300.0,
        sync: CardSync | None = None,
        counters: CardCounters | None = None,
    ) -> None:
        self.crm = crm
        self.bot = bot
        self.cards = cards
        self.clock = clock
        self.poll_interval = poll_interval
        self.retries = retries
        self.max_backoff = max_backoff
        self.sync = sync
        self.counters = counters or NoCounters()
        self.call_cards = call_cards.CallCards(crm, bot, self.counters)
        self.digests = Digests(crm, bot, cards.tz)
        self.paused_until: datetime | None = None  # flood control is per bot, not per chat
        self._wake = asyncio.Event()
        # Multi-recipient rows (supervisors, stand-ins): who already got a card, so a retry
        # after a partial failure does not post again to those who have it.
        self._progress: dict[int, Progress] = {}

    def wake(self) -> None:
        """Look at the outbox now (new rows were written)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            busy = False
            try:
                busy = await self.tick()
            except Exception:
                log.exception("outbox delivery round failed")
            if not busy:
                self._wake.clear()
                await wait_any(stop, self._wake, timeout=self.poll_interval)

    async def tick(self) -> bool:
        """One delivery round; True when something was delivered (look again at once)."""
        now = self.clock.now()
        if self.paused_until is not None and now < self.paused_until:
            return False
        items = await self.crm.outbox.due(now)
        if not items:
            return False
        results = await asyncio.gather(*(self._attempt(item) for item in items))
        return any(results)

    async def _attempt(self, item: OutboxItem) -> bool:
        try:
            await self.deliver(item)
            return True
        except RetryAfter as err:
            wait = retry_after_seconds(err)
            until = self.clock.now() + timedelta(seconds=wait)
            self.paused_until = max(self.paused_until or until, until)
            log.warning("Telegram flood control: waiting %.0fs (outbox #%s)", wait, item.id)
            await self.crm.outbox.mark_failed(item.id, str(err), real_delay(until))
        except TelegramError as err:  # network errors, 5xx, timeouts: retry, never give up
            level = logging.ERROR if item.attempts + 1 >= self.retries else logging.WARNING
            await self._retry_later(item, str(err), level)
        except CrmError as err:  # the record is gone or unreadable: nothing to show
            log.warning("outbox #%s (%s): %s; dropped", item.id, item.kind, err)
            await self.crm.outbox.give_up(item.id, str(err))
        except Exception as err:
            # A bug must not block the rep's queue for ever, nor spin: back off, then drop.
            log.exception("outbox #%s (%s) failed", item.id, item.kind)
            if item.attempts + 1 >= self.retries:
                await self.crm.outbox.give_up(item.id, repr(err))
            else:
                await self._retry_later(item, repr(err), logging.WARNING)
        return False

    async def _retry_later(self, item: OutboxItem, error: str, level: int) -> None:
        delay = min(2.0 ** min(item.attempts, 30), self.max_backoff)
        log.log(level, "outbox #%s: %s; retry in %.0fs", item.id, error, delay)
        at = self.clock.now() + timedelta(seconds=delay)
        await self.crm.outbox.mark_failed(item.id, error, real_delay(at))

    async def deliver(self, item: OutboxItem) -> None:
        if await self.crm.outbox.is_sent(item.id):
            return
        if item.kind in call_cards.KINDS:  # a phone system's screen pop, not a record's card
            await self.call_cards.deliver(item)
            return
        if item.kind == DIGEST:  # the morning digest: a rep's day, not a record's card
            await self.digests.deliver(item, self.clock.now())
            return
        plan = await self.plan(item)
        if plan is None:
            await self.crm.outbox.mark_sent(item.id, [])
            return
        card = await self.cards.load(
            plan.kind,
            plan.ident,
            headline=plan.headline,
            reason=plan.reason,
            activity_id=plan.activity_id,
        )
        card = card.with_headline(self._headline(plan, card))
        recipients = await self.recipients(item.rep_id)
        if not recipients:
            log.error("outbox #%s: no rep with Telegram to deliver to", item.id)
            await self.crm.outbox.give_up(item.id, "no rep with Telegram to deliver to")
            return
        progress = self._progress.setdefault(item.id, Progress())
        await self._send_all(item, card, recipients, progress, None)
        if progress.refused:  # the supervisors and admins see what a rep could not get
            note = "\n".join(
                f"⚠️ <b>Not delivered to {esc(clip(rep.name, NAME_CHARS))}</b>"
                f" — Telegram: {esc(clip(why, REASON_CHARS))}"
                for rep, why in progress.refused
            )
            stand_ins = await self.supervisors()
            await self._send_all(item, card, stand_ins, progress, note)
        self._progress.pop(item.id, None)
        cards = [c for c in progress.sent.values() if c is not None]
        if not cards:
            why = "; ".join(progress.notes) or "no recipient"
            if progress.refused:  # (a blocked rep alone was logged already)
                log.error("outbox #%s: no supervisor or admin took the card either", item.id)
            self.counters.dropped()
            await self.crm.outbox.give_up(item.id, f"no recipient accepted the card ({why})")
            return
        await self.crm.outbox.mark_sent(item.id, cards, "; ".join(progress.notes) or None)
        if item.kind in MOVED and self.sync is not None:  # the previous holder's card
            shown = {(c.chat_id, c.message_id) for c in cards}
            await self.sync.refresh(self.bot, card.kind, card.ident, skip=shown)

    async def _send_all(
        self,
        item: OutboxItem,
        card: Card,
        recipients: list[RepView],
        progress: Progress,
        note: str | None,
    ) -> None:
        for rep in recipients:
            chat = rep.telegram_user_id
            assert chat is not None
            if chat not in progress.sent:
                progress.sent[chat] = await self._send(item, card, rep, chat, progress, note)

    async def _send(
        self,
        item: OutboxItem,
        card: Card,
        rep: RepView,
        chat: int,
        progress: Progress,
        note: str | None,
    ) -> CardRef | None:
        """One recipient's card; None when Telegram refused every form of it (logged once)."""
        rendered = self.cards.render(card, Viewer(rep.id, rep.role), self.clock.now())
        if note is not None:
            rendered = replace(rendered, text=f"{note}\n{rendered.text}")
        try:
            sent = await deliver_card(self.bot, chat, rendered)
        except Undeliverable as err:
            self.counters.undeliverable(err.reason)
            if err.reason == BLOCKED:  # retrying will not help, nor will others' copies
                log.warning("outbox #%s: rep #%s cannot be reached: %s", item.id, rep.id, err)
                progress.notes.append(f"rep #{rep.id} unreachable: {err.description}")
            elif note is None:
                log.warning(
                    "outbox #%s: Telegram refused the card for rep #%s (%s); "
                    "sending it to the supervisors and admins",
                    item.id, rep.id, err.description,
                )  # fmt: skip
                progress.refused.append((rep, err.description))
                progress.notes.append(
                    f"refused for rep #{rep.id} ({err.description}); "
                    "offered to supervisors and admins"
                )
            else:
                log.warning(
                    "outbox #%s: Telegram refused the card for rep #%s too (%s)",
                    item.id, rep.id, err.description,
                )  # fmt: skip
                progress.notes.append(f"refused for rep #{rep.id} too ({err.description})")
            return None
        self.counters.sent(item.kind)
        note = fallback_note(sent, item.id, rep.id)
        if note is not None:
            self.counters.fallback(sent.form)
            progress.notes.append(note)
        return CardRef(
            rep.id, chat, sent.message.message_id, card.kind, card.ident, card.ctx.headline
        )

    async def recipients(self, rep_id: int | None) -> list[RepView]:
        """The rep; supervisors and admins when there is none or they cannot be reached."""
        if rep_id is not None:
            try:
                rep = await self.crm.reps.get(rep_id)
            except NotFound:
                rep = None
            if rep is not None and rep.active and rep.telegram_user_id is not None:
                return [rep]
        return await self.supervisors()

    async def supervisors(self) -> list[RepView]:
        """Active supervisors and admins with Telegram."""
        return [
            r
            for r in await self.crm.reps.all(include_inactive=False)
            if r.role in ("supervisor", "admin") and r.telegram_user_id is not None
        ]

    async def plan(self, item: OutboxItem) -> Plan | None:
        """What to show for an outbox row; None when another card already says it."""
        p = item.payload
        lead_id, deal_id = _int(p.get("lead_id")), _int(p.get("deal_id"))
        activity_id = _int(p.get("activity_id"))
        reason = p.get("reason")
        reason = str(reason) if reason else None
        if item.kind in ("new_deal", "repeat_deal") or (
            deal_id is not None and item.kind not in ("new_lead", "repeat_lead")
        ):
            kind, ident = "deal", deal_id
        elif lead_id is not None:
            kind, ident = "lead", lead_id
        else:
            kind, ident = "contact", _int(p.get("contact_id"))
        if ident is None:
            log.warning("outbox #%s (%s) names no record; skipped", item.id, item.kind)
            return None
        headline = HEADLINES.get(item.kind)
        if item.kind.startswith("escalat"):
            headline = await self._escalation_headline(item)
        by = await self._rep_name(_int(p.get("by_rep_id")))
        if item.kind == "assigned" and by is not None:
            headline = f"👥 Assigned to you by {by}"
        if item.kind == CHANGED:  # someone else worked the rep's record
            what = clip(str(p.get("what") or "changed it"), REASON_CHARS)
            headline = f"✏️ {by or 'Someone'} on your {kind} #{ident}: {what}"
        if item.kind == "reminder":
            activity_id = None  # the due call shows among the card's tasks, not as a message
        return Plan(kind, ident, headline, reason, activity_id)

    async def _rep_name(self, rep_id: int | None) -> str | None:
        try:
            return (await self.crm.reps.get(rep_id)).name if rep_id is not None else None
        except NotFound:
            return None

    async def _escalation_headline(self, item: OutboxItem) -> str:
        p = item.payload
        minutes = p.get("minutes")
        if item.kind == "escalated":
            return f"⚠️ Not taken within {minutes} min — now offered to you"
        name = await self._rep_name(_int(p.get("to_rep_id")))
        where = f"offered to {name}" if name else "nobody else to offer it to"
        return f"⚠️ Lead #{p.get('lead_id')} not taken within {minutes} min — {where}"

    def _headline(self, plan: Plan, card: Card) -> str:
        message = card.ctx.message
        missed = message is not None and message.kind == "call" and message.meta.get("missed")
        where = f" on {card.kind} #{card.ident}"
        if plan.headline == HEADLINES["new_lead"] and missed:
            return "📵 Missed call — new lead"
        if plan.headline:
            return plan.headline
        return self._other_headline(plan, card, bool(missed), where)

    @staticmethod
    def _other_headline(plan: Plan, card: Card, missed: bool, where: str) -> str:
        message = card.ctx.message
        if missed:
            tasks = [t for t in card.ctx.tasks if t.meta.get("callback")]
            times = f" ({tasks[0].attempts}×)" if tasks and tasks[0].attempts > 1 else ""
            return f"📵 Missed call{times}{where}"
        if message is not None and message.id == plan.activity_id:
            return ACTIVITY_HEADLINES.get(message.kind, "🔔 News") + where
        return f"🔔 Update{where}"


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None
