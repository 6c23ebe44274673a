"""Helpers for channel tests against a running service: wait for the queue, count rows."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from crm.dto import EventView
from crm.facade import Crm


async def count(crm: Crm, model: Any, *where: Any) -> int:
    async with crm.db.transaction() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def processed(crm: Crm, channel: str, external_id: str, timeout: float = 5.0) -> EventView:
    """The event log row of an event once the queue worker has handled it."""
    for _ in range(int(timeout / 0.02)):
        row = await crm.events.get(channel, external_id)
        if row is not None:
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"{channel}:{external_id} was not processed within {timeout} s")
