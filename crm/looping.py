"""Fairness on the event loop: a loop over many items that wait on nothing lets the event
loop turn now and then (`breathe`), so requests sharing the loop (webhooks) are not held for
the whole loop. Used by intake's batches and the service's conversion of queued events."""

from __future__ import annotations

import asyncio

# Items of a loop handled between two turns of the event loop (`breathe`).
BREATHE_EVERY = 8


async def breathe(k: int) -> None:
    """Before the k-th item (from 0) of a loop over a batch whose items do not wait on
    anything: every BREATHE_EVERY items, a turn of the event loop, so requests waiting on
    the same loop (webhooks) are not held for the whole batch."""
    if k and k % BREATHE_EVERY == 0:
        await asyncio.sleep(0)
