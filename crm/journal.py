"""The in-process queue with a journal on disk: what a channel acknowledged is written and
synced (`sync`) before `put` returns, so a crash or a kill between the acknowledgement and intake's
commit loses nothing. The next start hands the journal's items to intake again; intake takes
an event once (by channel and external id), so items that had been committed are answered as
duplicates.

The journal is a directory of segment files, one JSON line per item (the Redis queue's item
format, plus "t": when it was put). Puts made together share one write and one fdatasync, on a
thread (`GroupCommit`). A segment is deleted once every item in it is done or dead-lettered.
An item intake could not take is retried while the process runs (`LocalQueue`), and after
`max_failures` failures that were not an outage moved to `dead/` (`crm.deadletters`); items an
operator puts back arrive through `retry/`. One process owns a journal at a time (an flock on
`lock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from crm.deadletters import JournalDeadLetters, sync_directory
from crm.queue import (
    DeadHook,
    GroupCommit,
    LocalQueue,
    QueueItem,
    RetryPolicy,
    Waiting,
    decode_item,
    describe,
    encode_item,
)

log = logging.getLogger(__name__)

# A segment that is all done is replaced once it holds this much (a restart then reads at
# most this much again); a busy one once it holds SEGMENT_MAX.
SEGMENT_RECYCLE = 64 * 1024
SEGMENT_MAX = 4 * 1024 * 1024
_PREFIX, _SUFFIX = "segment-", ".jsonl"
# How often the running queue looks into retry/ (items an operator put back).
RETRY_SCAN_SECONDS = 2.0


class JournalInUse(RuntimeError):
    pass


@dataclass
class _Segment:
    number: int
    path: Path
    size: int = 0
    outstanding: int = 0  # items written and not yet done or dead-lettered


class JournaledQueue(LocalQueue):
    def __init__(
        self,
        directory: Path,
        maxsize: int = 10_000,
        *,
        sync: bool = True,
        policy: RetryPolicy | None = None,
        on_dead: DeadHook | None = None,
        linger: float = 0.0,
    ) -> None:
        super().__init__(maxsize, policy=policy, on_dead=on_dead, linger=linger)
        self.directory = directory
        self.sync = sync  # fdatasync each write (False: a process crash loses nothing, only)
        self.dead = JournalDeadLetters(directory)
        self._segments: list[_Segment] = []  # oldest first; the last one is written to
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._puts: GroupCommit[tuple[bytes, Waiting]] = GroupCommit(self._write)
        # Held while the journal's file is written or replaced: a write must land in the
        # segment it is counted in.
        self._io = asyncio.Lock()
        self._dead_count = 0
        self._next_scan = 0.0

    @property
    def dead_waiting(self) -> int:
        return self._dead_count

    # --- opening: the lock, and what an earlier run left ------------------------------------

    async def open(self) -> None:
        replay = await asyncio.to_thread(self._open_files)
        for segment, items in replay:
            self._segments.append(segment)
            segment.outstanding = len(items)
            for item, put_at in items:
                await self._room.acquire()
                self._enqueue(Waiting(item, put_at, segment))
        # An earlier run that stopped before taking anything (a port in use) left only empty
        # segments: nothing to warn of.
        if count := sum(len(items) for _, items in replay):
            log.warning("queue journal: %d item(s) from an earlier run queued again", count)
        self._segments.append(await asyncio.to_thread(self._new_segment))
        await self._retire()
        await self._take_retries()

    def _open_files(self) -> list[tuple[_Segment, list[tuple[QueueItem, float]]]]:
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
        sync_directory(self.directory)  # the new file's name survives a crash too
        return _Segment(number, path)

    # --- put: written and synced before it returns ------------------------------------------

    async def put(self, item: QueueItem) -> None:
        await self._room.acquire()
        w = Waiting(item, time.time())
        line = b'{"t":%s,%s\n' % (repr(w.enqueued).encode(), encode_item(item)[1:])
        try:
            await self._puts.put((line, w))
        except BaseException:
            self._room.release()
            raise

    async def _write(self, batch: list[tuple[bytes, Waiting]]) -> None:
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
            for _, w in batch:
                w.tag = segment
                self._enqueue(w)
            if segment.size >= SEGMENT_MAX:
                self._segments.append(await asyncio.to_thread(self._new_segment))

    def _append(self, data: bytes) -> None:
        assert self._fd is not None, "open() first"
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        if self.sync:
            os.fdatasync(self._fd)

    # --- done, dead, retried: segments go once all their items are settled --------------------

    async def _settle(self, items: list[Waiting]) -> None:
        for w in items:
            w.tag.outstanding -= 1
        await self._retire()
        await super()._settle(items)  # last: join() returns once the segments are gone

    async def _dead_letter(self, items: list[Waiting]) -> list[Waiting]:
        """Each into dead/ (synced) before its segment may go."""
        moved: list[Waiting] = []
        for w in items:
            try:
                letter = await asyncio.to_thread(self.dead.add, w.item, w.reason, w.failures)
            except OSError:
                log.exception("queue journal: writing a dead letter failed; the item stays")
                continue
            moved.append(w)
            self._dead_count += 1
            log.error(
                "queue journal: %s moved to %s/%s.json after %d failures: %s",
                describe(w.item),
                self.dead.dead,
                letter,
                w.failures,
                w.reason,
            )
        return moved

    async def _idle_work(self) -> None:
        if time.monotonic() >= self._next_scan:
            self._next_scan = time.monotonic() + RETRY_SCAN_SECONDS
            await self._take_retries()

    async def _take_retries(self) -> None:
        """Queue the items an operator put back (`leadbot dead retry`), journaled like any
        put; then count the dead letters (a gauge)."""
        for path, item in await asyncio.to_thread(self.dead.take_retries):
            if item is None:
                log.error("queue journal: %s cannot be read; left where it is", path)
                continue
            if self._room.locked():  # full: next time (the loop must not wait on itself)
                break
            await self.put(item)
            await asyncio.to_thread(_unlink, [path])
            log.warning("queue journal: %s queued again by an operator", describe(item))
        self._dead_count = await asyncio.to_thread(self.dead.count)

    async def _retire(self) -> None:
        """Delete the segments whose items are all settled; start afresh when the one being
        written is settled and big enough."""
        async with self._io:
            current = self._segments[-1] if self._segments else None
            if current is not None and current.outstanding == 0 and current.size >= SEGMENT_RECYCLE:
                self._segments.append(await asyncio.to_thread(self._new_segment))
        finished = [s for s in self._segments[:-1] if s.outstanding == 0]
        if finished:
            await asyncio.to_thread(_unlink, [s.path for s in finished])
            self._segments = [s for s in self._segments if s not in finished]

    async def close(self) -> None:
        """Remove the journal's files when everything in them is settled; keep them
        otherwise (the next start takes them again)."""
        await self._puts.drain()
        await asyncio.to_thread(self._close_files)

    def _close_files(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if all(s.outstanding == 0 for s in self._segments):
            _unlink([s.path for s in self._segments])
            self._segments = []
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def _read(path: Path) -> list[tuple[QueueItem, float]]:
    """The items of a segment, with when each was put (the file's time for lines of older
    versions, which did not say)."""
    items: list[tuple[QueueItem, float]] = []
    fallback = path.stat().st_mtime
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                put_at = data.get("t", fallback) if isinstance(data, dict) else fallback
                items.append((decode_item(data), float(put_at)))
            except (TypeError, ValueError, KeyError):
                # The last line of a crash may be half written: its put never returned.
                log.warning("queue journal: %s:%d unreadable, skipped", path.name, n)
    return items


def _unlink(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
