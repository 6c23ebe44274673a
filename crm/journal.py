"""The in-process queue with a journal on disk: what a channel acknowledged is written and
synced (`sync`) before `put` returns, so a crash or a kill between the acknowledgement and intake's
commit loses nothing. The next start hands the journal's items to intake again; intake takes
an event once (by channel and external id), so items that had been committed are answered as
duplicates.

The journal is a directory of segment files, one JSON line per item (the Redis queue's item
format). Puts made together share one write and one fdatasync, on a thread (`GroupCommit`).
A segment is deleted once every item in it is done; one with an item that failed stays until
the next start, which tries it again (the failure is logged where it happened). One process
owns a journal at a time (an flock on `lock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from crm.queue import (
    Backlog,
    GroupCommit,
    Handler,
    QueueItem,
    decode_item,
    encode_item,
    handle_batch,
    next_batch,
)

log = logging.getLogger(__name__)

# A segment that is all done is replaced once it holds this much (a restart then reads at
# most this much again); a busy one once it holds SEGMENT_MAX.
SEGMENT_RECYCLE = 64 * 1024
SEGMENT_MAX = 4 * 1024 * 1024
_PREFIX, _SUFFIX = "segment-", ".jsonl"


class JournalInUse(RuntimeError):
    pass


@dataclass
class _Segment:
    number: int
    path: Path
    size: int = 0
    outstanding: int = 0  # items written and not yet done
    failed: bool = False  # an item failed: kept for the next start


class JournaledQueue:
    def __init__(self, directory: Path, maxsize: int = 10_000, *, sync: bool = True) -> None:
        self.directory = directory
        self.sync = sync  # fdatasync each write (False: a process crash loses nothing, only)
        self._q: asyncio.Queue[tuple[QueueItem, _Segment]] = asyncio.Queue()
        self._room = asyncio.Semaphore(maxsize)
        self._segments: list[_Segment] = []  # oldest first; the last one is written to
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._puts: GroupCommit[tuple[bytes, QueueItem]] = GroupCommit(self._write)
        # Held while the journal's file is written or replaced: a write must land in the
        # segment it is counted in.
        self._io = asyncio.Lock()

    # --- opening: the lock, and what an earlier run left ------------------------------------

    async def open(self) -> None:
        replay = await asyncio.to_thread(self._open_files)
        for segment, items in replay:
            self._segments.append(segment)
            segment.outstanding = len(items)
            for item in items:
                await self._room.acquire()
                self._q.put_nowait((item, segment))
        if replay:
            count = sum(len(items) for _, items in replay)
            log.warning("queue journal: %d item(s) from an earlier run queued again", count)
        self._segments.append(await asyncio.to_thread(self._new_segment))
        await self._retire()

    def _open_files(self) -> list[tuple[_Segment, list[QueueItem]]]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalInUse(
                f"another leadbot process uses the queue journal {self.directory}"
            ) from None
        self._lock_fd = fd
        found = []
        for path in self.directory.glob(f"{_PREFIX}*{_SUFFIX}"):
            number = path.name[len(_PREFIX) : -len(_SUFFIX)]
            if number.isdigit():
                found.append((int(number), path))
        return [
            (_Segment(number, path, path.stat().st_size), _read(path))
            for number, path in sorted(found)
        ]

    def _new_segment(self) -> _Segment:
        number = self._segments[-1].number + 1 if self._segments else 1
        path = self.directory / f"{_PREFIX}{number:09d}{_SUFFIX}"
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _sync_directory(self.directory)  # the new file's name survives a crash too
        return _Segment(number, path)

    # --- put: written and synced before it returns ------------------------------------------

    async def put(self, item: QueueItem) -> None:
        await self._room.acquire()
        try:
            await self._puts.put((encode_item(item) + b"\n", item))
        except BaseException:
            self._room.release()
            raise

    async def _write(self, batch: list[tuple[bytes, QueueItem]]) -> None:
        """One write (and sync) for puts made together; then intake may have them."""
        async with self._io:
            segment = self._segments[-1]
            data = b"".join(line for line, _ in batch)
            try:
                if self.sync:
                    await asyncio.to_thread(self._append, data)
                else:
                    # Into the page cache only: microseconds, less than the hop to a thread
                    # and back costs under load (about a millisecond here).
                    self._append(data)
            except Exception:
                log.exception("queue journal: writing %d item(s) failed", len(batch))
                raise
            segment.size += len(data)
            segment.outstanding += len(batch)
            for _, item in batch:
                self._q.put_nowait((item, segment))
            if segment.size >= SEGMENT_MAX:
                self._segments.append(await asyncio.to_thread(self._new_segment))

    def _append(self, data: bytes) -> None:
        assert self._fd is not None, "open() first"
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        if self.sync:
            os.fdatasync(self._fd)

    # --- run: intake takes batches; finished segments go --------------------------------------

    async def run(self, handler: Handler, stop: asyncio.Event) -> None:
        """Process until `stop` is set and everything already queued is done."""
        while not (stop.is_set() and self._q.empty()):
            batch = await next_batch(self._q)
            if not batch:
                continue
            try:
                ok = await handle_batch(handler, [item for item, _ in batch])
                for (_, segment), good in zip(batch, ok, strict=True):
                    segment.outstanding -= 1
                    segment.failed = segment.failed or not good
                await self._retire()
            finally:
                for _ in batch:
                    self._room.release()
                    self._q.task_done()

    async def _retire(self) -> None:
        """Delete the segments whose items are all done; start afresh when the one being
        written is done and big enough."""
        async with self._io:
            current = self._segments[-1] if self._segments else None
            if (
                current is not None
                and current.outstanding == 0
                and not current.failed
                and current.size >= SEGMENT_RECYCLE
            ):
                self._segments.append(await asyncio.to_thread(self._new_segment))
        finished = [s for s in self._segments[:-1] if s.outstanding == 0 and not s.failed]
        if finished:
            await asyncio.to_thread(_unlink, [s.path for s in finished])
            self._segments = [s for s in self._segments if s not in finished]

    async def join(self) -> None:
        await self._q.join()

    async def depth(self) -> int:
        return self._q.qsize()

    async def backlog(self) -> Backlog:
        return Backlog(self._q.qsize(), None)

    async def close(self) -> None:
        """Remove the journal's files when everything in them is done; keep them otherwise."""
        await self._puts.drain()
        await asyncio.to_thread(self._close_files)

    def _close_files(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if all(s.outstanding == 0 and not s.failed for s in self._segments):
            _unlink([s.path for s in self._segments])
            self._segments = []
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def _read(path: Path) -> list[QueueItem]:
    items: list[QueueItem] = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                items.append(decode_item(json.loads(line)))
            except (TypeError, ValueError, KeyError):
                # The last line of a crash may be half written: its put never returned.
                log.warning("queue journal: %s:%d unreadable, skipped", path.name, n)
    return items


def _unlink(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
