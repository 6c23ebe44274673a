"""Batches: what a consumer takes at once (`next_batch`), and writes that puts made
together share (`GroupCommit`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from crm.queue.contract import MAX_BATCH

log = logging.getLogger(__name__)


T = TypeVar("T")


async def next_batch(q: asyncio.Queue[T], wait: float = 0.2, size: int = MAX_BATCH) -> list[T]:
    """Whatever waits in `q`, up to `size`, after waiting up to `wait` seconds for the
    first; empty when nothing came (so a consumer can look at its stop flag)."""
    try:
        batch = [await asyncio.wait_for(q.get(), timeout=wait)]
    except TimeoutError:
        return []
    while len(batch) < size and not q.empty():
        batch.append(q.get_nowait())
    return batch


class GroupCommit(Generic[T]):
    """Writes for puts made together: a put is written at once when no write is under way;
    puts made meanwhile wait and go in the next write, all together. Each put returns when its
    write did, or raises what the write raised. Under load one write (a round trip, an fsync)
    carries many puts; a lone put pays no extra hop."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]]) -> None:
        self._write = write
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._busy = False
        self._next: asyncio.Task[None] | None = None  # held so the task is not collected

    async def put(self, item: T) -> None:
        if self._busy:
            done = asyncio.get_running_loop().create_future()
            self._waiting.append((item, done))
            await done
            return
        self._busy = True
        try:
            await self._write([item])
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        """Write what waited meanwhile, or mark the line free."""
        if not self._waiting:
            self._busy = False
            return
        batch, self._waiting = self._waiting, []
        self._next = asyncio.create_task(self._write_waiting(batch))

    async def _write_waiting(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            await self._write([item for item, _ in batch])
        except Exception as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
        else:
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
        finally:
            self._hand_over()

    async def drain(self) -> None:
        """Wait for the writes of puts that waited (a closing queue lets them finish)."""
        while self._next is not None and not self._next.done():
            await self._next
