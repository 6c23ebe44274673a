"""The bot's timed duties: call-back reminders and escalation of leads nobody took.

Both only write outbox rows (in the transaction that claims the work); the notifier delivers
them, so reminders get the same retries, ordering and duplicate protection as every card.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta

from bot.clock import Clock
from crm.services.escalation import Followups

log = logging.getLogger(__name__)


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
    ) -> None:
        self.followups = followups
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
        if reminded or escalated:
            self.queued()
        return len(reminded) + len(escalated)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("reminder / escalation round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
