"""The morning digest: one message a day per rep with today's call-backs, the overdue ones
and the leads they have not taken yet (supervisors also read the queue's size).

`Duties` asks the CRM to queue the day's digests once local time passes `telegram.digest_at`
(`crm.team.claim_digests`: once per rep and day, whatever restarts or processes); the
notifier hands the outbox row to `Digests.deliver`, which reads the numbers as they are then.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, tzinfo

from telegram import Bot

from bot import callbacks as cb
from bot.lists import owner_of, task_line
from bot.sending import Undeliverable, deliver_card, fallback_note
from bot.views import LIST_ITEM_CHARS, OVERDUE_AFTER, Rendered, Row, _join, clip, esc, overdue
from crm.dto import ActivityView, Actor, LeadView, RepView
from crm.errors import NotFound
from crm.facade import Crm
from crm.services.outbox import OutboxItem

log = logging.getLogger(__name__)

SHOWN = 5  # items of each part listed; the rest are counted
MAX_BUTTONS = 9


def digest_view(
    rep: RepView,
    day: date,
    due: Sequence[ActivityView],
    untaken: Sequence[LeadView],
    untaken_total: int,
    queue: int | None,
    tz: tzinfo,
    now: datetime,
) -> Rendered:
    late = [a for a in due if a.due_at is not None and overdue(a.due_at, now)]
    today = [a for a in due if a not in late]
    first = clip(rep.name, 40).split(" ")[0]
    lines = [f"☀️ <b>Your day, {esc(first)}</b> — {day.strftime('%a %d.%m.')}"]
    parts: list[tuple[str, Sequence[ActivityView]]] = [
        ("⏰ Call-backs today", today),
        ("⚠️ Overdue", late),
    ]
    found: list[tuple[str, int]] = []
    for title, acts in parts:
        lines.append(f"<b>{title}: {len(acts)}</b>")
        lines += [task_line(a, tz, now) for a in acts[:SHOWN]]
        if len(acts) > SHOWN:
            lines.append(f"… and {len(acts) - SHOWN} more: /today")
        found += [o for o in map(owner_of, acts[:SHOWN]) if o is not None]
    lines.append(f"<b>✋ Not taken yet: {untaken_total}</b>")
    for lead in untaken[:SHOWN]:
        name = clip(lead.name or lead.title, LIST_ITEM_CHARS)
        lines.append(f"#{lead.id} {esc(name)} · {esc(lead.status_name)}")
    if untaken_total > SHOWN:
        lines.append(f"… and {untaken_total - SHOWN} more: /leads new")
    found += [("lead", lead.id) for lead in untaken[:SHOWN]]
    if queue is not None:
        lines.append(f"👥 Queue (nobody's): {queue} leads — /team")
    if not (due or untaken_total or queue):
        lines.append("Nothing waiting. 🎉")
    unique = list(dict.fromkeys(found))[:MAX_BUTTONS]
    buttons = [
        (f"{kind.capitalize()} #{ident}", cb.encode(cb.OPEN, cb.ref(kind, ident)))
        for kind, ident in unique
    ]
    rows: list[Row] = [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
    return Rendered(_join(lines), rows)


def due_at(day: date, at: time, tz: tzinfo) -> datetime:
    return datetime.combine(day, at, tzinfo=tz)


class Digests:
    def __init__(self, crm: Crm, bot: Bot, tz: tzinfo) -> None:
        self.crm = crm
        self.bot = bot
        self.tz = tz

    async def render(self, rep: RepView, day: date, now: datetime) -> Rendered:
        end = due_at(day + timedelta(days=1), time(0), self.tz)
        actor = Actor(rep.id, rep.role)
        due = await self.crm.activities.due(now, rep_id=rep.id, until=end)
        untaken, total = await self.crm.team.untaken(rep.id, actor, limit=SHOWN)
        queue = None
        if actor.sees_everything:
            team = await self.crm.team.overview(actor, now - OVERDUE_AFTER)
            queue = team.queue_leads
        return digest_view(rep, day, due, untaken, total, queue, self.tz, now)

    async def deliver(self, item: OutboxItem, now: datetime) -> None:
        try:
            rep = await self.crm.reps.get(item.rep_id) if item.rep_id is not None else None
        except NotFound:
            rep = None
        if rep is None or not rep.active or rep.telegram_user_id is None:
            await self.crm.outbox.give_up(item.id, "the rep cannot be reached in Telegram")
            return
        day_text = str(item.payload.get("day") or "")
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            day = now.astimezone(self.tz).date()
        rendered = await self.render(rep, day, now)
        try:
            sent = await deliver_card(self.bot, rep.telegram_user_id, rendered)
        except Undeliverable as err:  # blocked or refused: tomorrow brings a new one
            log.warning("outbox #%s: digest for rep #%s not sent: %s", item.id, rep.id, err)
            await self.crm.outbox.give_up(item.id, err.description)
            return
        # Not in the card log: the digest shows no one record (a reply to it is no comment).
        await self.crm.outbox.mark_sent(item.id, [], fallback_note(sent, item.id, rep.id))
