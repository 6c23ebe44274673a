"""Time for the bot's loops: the system clock, or a shifted one tests move forward, and the
loops' wait between rounds (`wait_any`).

The database stamps rows with the real time, so a test clock cannot freeze: it runs with real
time plus an offset that `advance` grows. Loops still wait in real (short) intervals and only
compare against `now()`, so a test jumps 15 minutes ahead without sleeping.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ShiftedClock:
    """Real time plus an offset; `advance` moves it forward (never back)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError("a clock only moves forward")
        self.offset += delta


def real_delay(at: datetime) -> timedelta:
    """The delay to hand the outbox so a retry comes due when the clock reaches `at`.

    The outbox adds the delay to the real time; `due(clock.now())` then compares the stored time
    with the clock, so the delay is measured from real time, not from the clock."""
    return at - datetime.now(UTC)


async def wait_any(*events: asyncio.Event, timeout: float) -> None:
    """Return when any of `events` is set (stop, or work woke the loop) or `timeout` seconds
    passed, whichever comes first."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
