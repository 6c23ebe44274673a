"""The bot's timed duties: call-back reminders, escalation of leads nobody took, the
morning digest once local time passes `telegram.digest_at`, and, once an hour, tidying the
bot's old state rows (saved card first lines, prompts nobody answered).

Both only write outbox rows (in the transaction that claims the work); the notifier delivers
them, so reminders get the same retries, ordering and duplicate protection as every card.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, time, timedelta, tzinfo

from bot.clock import Clock
from crm.services.escalation import Followups
from crm.services.team import Team

log = logging.getLogger(__name__)

TIDY_EVERY = timedelta(hours=1)
Tidy = Callable[[datetime], Awaitable[int]]  # drops what is too old at that time; how many


class Duties:
    def __init__(
        self,
        followups: Followups,
        clock: Clock,
        *,
        interval: float,
        escalate_after: timedelta,
        max_escalations: int,
        queued: Callable[[], None] = lambda: None,
        team: Team | None = None,
        digest_at: time | None = None,
        tz: tzinfo | None = None,
        tidy: Sequence[Tidy] = (),
    ) -> None:
        self.followups = followups
        self.tidy = tidy
        self._tidied: datetime | None = None
        self.team = team
        self.digest_at = digest_at  # local time of the morning digest; None: no digest
        self.tz = tz
        self.clock = clock
        self.interval = interval
        self.escalate_after = escalate_after
        self.max_escalations = max_escalations
        self.queued = queued  # tells the notifier there is something to deliver

    async def tick(self) -> int:
        """One round; returns how many notifications were queued."""
        now = self.clock.now()
        reminded = await self.followups.remind(now)
        escalated = await self.followups.escalate(now, self.escalate_after, self.max_escalations)
        for e in escalated:
            log.info("lead #%s not taken: rep #%s → #%s", e.lead_id, e.from_rep_id, e.to_rep_id)
        digests = await self.digests()
        await self.tidy_up(now)
        if reminded or escalated or digests:
            self.queued()
        return len(reminded) + len(escalated) + digests

    async def tidy_up(self, now: datetime) -> int:
        """Run the tidy duties at start and then once every `TIDY_EVERY`; rows dropped."""
        if self._tidied is not None and now - self._tidied < TIDY_EVERY:
            return 0
        self._tidied = now
        dropped = sum([await tidy(now) for tidy in self.tidy])
        if dropped:
            log.info("dropped %s old bot state rows", dropped)
        return dropped

    async def digests(self) -> int:
        """Queue today's digests once its time has come: for every rep who has not had
        today's (the CRM makes it once per rep and day, across processes and restarts)."""
        if self.team is None or self.digest_at is None or self.tz is None:
            return 0
        now = self.clock.now()
        local = now.astimezone(self.tz)
        if local.time() < self.digest_at:
            return 0
        claimed = await self.team.claim_digests(local.date(), now)
        if claimed:
            log.info("morning digest queued for %s reps", len(claimed))
        return len(claimed)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("reminder / escalation round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
