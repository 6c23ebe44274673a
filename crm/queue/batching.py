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
    """Writes for puts made together: a put waits for the write that carries it. The first
    put when no write is under way starts a writer, which begins once the loop has run what
    is ready (other requests' handlers putting too) and then writes whatever waits, one write
    after the other, until nothing does. Each put returns when its write did, or raises what
    the write raised. Under load one write (a round trip, an fsync) carries many puts; a lone
    put waits one turn of the loop, not a write of its own while others are about to come."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]]) -> None:
        self._write = write
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._next: asyncio.Task[None] | None = None  # the writer, held so it is not collected

    def put(self, item: T) -> asyncio.Future[None]:
        """Await the answer: None once `item` is written, or what its write raised. (A
        future, not a coroutine: one coroutine less on every put.)"""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._waiting.append((item, done))
        if self._next is None:
            self._next = loop.create_task(self._writer())
        return done

    async def _writer(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._write_batch(batch)
        finally:
            self._next = None

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        # A put whose caller was cancelled is written all the same: it may be in the write
        # already, and its caller was told nothing either way.
        try:
            await self._write([item for item, _ in batch])
        except Exception as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
        except BaseException:  # the writer itself cancelled: so are the puts it carried
            for _, done in [*batch, *self._waiting]:
                done.cancel()
            self._waiting = []
            raise
        else:
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def drain(self) -> None:
        """Wait for the writes of puts that waited (a closing queue lets them finish)."""
        while self._next is not None and not self._next.done():
            await asyncio.shield(self._next)
