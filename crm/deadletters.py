"""Dead letters: items intake failed on `RetryPolicy.max_failures` times (not an outage), and
items no worker could read. They wait for an operator, who lists them, puts one back into the
live queue or drops it (`leadbot dead`).

Redis keeps them in the stream `<stream>:dead`; the journal in `dead/` under its directory, a
file per item. Putting a journal item back goes through `retry/`: the running service (which
holds the journal's lock) takes files from there every few seconds, and a stopped one at its
next start, so the command never has to wait for the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from crm.queue import MAX_BATCH, QueueItem, decode_item, encode_item

_ID = re.compile(r"^\d+-\d+$")


class UnknownDeadLetter(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    data: bytes  # the item's JSON (the queue's item format), or what could not be read
    reason: str
    failures: int
    at: float  # unix seconds it was given up

    @property
    def item(self) -> QueueItem | None:
        """The item, or None when this version cannot read it."""
        try:
            return decode_item(json.loads(self.data))
        except (TypeError, ValueError, KeyError):
            return None


def _check(letter_id: str) -> str:
    if not _ID.match(letter_id):
        raise UnknownDeadLetter(f"{letter_id!r} is not a dead-letter id (like 1733450000000-0)")
    return letter_id


class JournalDeadLetters:
    """`dead/<id>.json` files under a journal directory; `retry/` for the way back."""

    def __init__(self, journal_dir: Path) -> None:
        self.dead = journal_dir / "dead"
        self.retry_dir = journal_dir / "retry"
        self._seq = 0

    def add(self, item: QueueItem, reason: str, failures: int) -> str:
        """Write one dead letter (synced: it is the only copy once the journal lets go)."""
        self.dead.mkdir(parents=True, exist_ok=True)
        now = time.time()
        doc = b'{"reason":%s,"failures":%d,"at":%s,"item":%s}' % (
            json.dumps(reason).encode(),
            failures,
            repr(now).encode(),
            encode_item(item),
        )
        while True:
            self._seq += 1
            letter_id = f"{int(now * 1000)}-{self._seq}"
            path = self.dead / f"{letter_id}.json"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            break
        try:
            os.write(fd, doc)
            os.fsync(fd)
        finally:
            os.close(fd)
        sync_directory(self.dead)
        return letter_id

    def letters(self) -> list[DeadLetter]:
        letters = [_read_letter(p) for p in self._files(self.dead)]
        return sorted(letters, key=lambda d: tuple(int(x) for x in d.id.split("-")))

    def count(self) -> int:
        return len(self._files(self.dead))

    def retry(self, letter_id: str) -> None:
        """Hand the item back to the queue (through `retry/`)."""
        src = self.dead / f"{_check(letter_id)}.json"
        self.retry_dir.mkdir(parents=True, exist_ok=True)
        try:
            src.rename(self.retry_dir / src.name)
        except FileNotFoundError:
            raise UnknownDeadLetter(f"no dead letter {letter_id}") from None
        sync_directory(self.retry_dir)

    def drop(self, letter_id: str) -> None:
        try:
            (self.dead / f"{_check(letter_id)}.json").unlink()
        except FileNotFoundError:
            raise UnknownDeadLetter(f"no dead letter {letter_id}") from None

    def take_retries(self, limit: int = MAX_BATCH) -> list[tuple[Path, QueueItem | None]]:
        """Items an operator put back, with their files (to delete once they are queued)."""
        return [(p, _read_letter(p).item) for p in self._files(self.retry_dir)[:limit]]

    @staticmethod
    def _files(directory: Path) -> list[Path]:
        if not directory.is_dir():
            return []
        return sorted(p for p in directory.glob("*.json") if _ID.match(p.stem))


class AsyncJournalDeadLetters:
    """The journal's dead letters behind the async interface of `RedisDeadLetters` (the
    file work goes to a thread)."""

    def __init__(self, journal: JournalDeadLetters) -> None:
        self.journal = journal

    async def letters(self) -> list[DeadLetter]:
        return await asyncio.to_thread(self.journal.letters)

    async def retry(self, letter_id: str) -> None:
        await asyncio.to_thread(self.journal.retry, letter_id)

    async def drop(self, letter_id: str) -> None:
        await asyncio.to_thread(self.journal.drop, letter_id)


def _read_letter(path: Path) -> DeadLetter:
    raw = path.read_bytes()
    try:
        doc = json.loads(raw)
        data = json.dumps(doc["item"]).encode()
        return DeadLetter(
            path.stem, data, str(doc.get("reason", "")), int(doc.get("failures", 0)), doc["at"]
        )
    except (TypeError, ValueError, KeyError):
        return DeadLetter(path.stem, raw, "unreadable dead-letter file", 0, path.stat().st_mtime)


def sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RedisDeadLetters:
    """The stream `<stream>:dead`: each entry has `data` (the item's JSON), `from` (the
    entry it came from), `reason` and `failures` (absent for unreadable entries)."""

    def __init__(self, redis: Redis, stream: str) -> None:
        self.redis = redis
        self.stream = stream
        self.key = f"{stream}:dead"

    async def letters(self) -> list[DeadLetter]:
        entries: Any = await self.redis.xrange(self.key)
        return [_letter(i, f) for i, f in entries]

    async def count(self) -> int:
        return int(await self.redis.xlen(self.key))

    async def _get(self, letter_id: str) -> DeadLetter:
        found: Any = await self.redis.xrange(self.key, _check(letter_id), letter_id)
        if not found:
            raise UnknownDeadLetter(f"no dead letter {letter_id}")
        return _letter(*found[0])

    async def retry(self, letter_id: str) -> None:
        """Put the item back at the end of the live stream and remove the dead letter, in
        one transaction."""
        letter = await self._get(letter_id)
        if letter.item is None:
            raise UnknownDeadLetter(
                f"{letter_id} is not an item this version can read; drop it, or retry it "
                "with a version that can"
            )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.stream, {"items": b"[" + letter.data + b"]"})
            pipe.xdel(self.key, letter_id)
            await pipe.execute()

    async def drop(self, letter_id: str) -> None:
        if not await self.redis.xdel(self.key, _check(letter_id)):
            raise UnknownDeadLetter(f"no dead letter {letter_id}")


def _letter(entry_id: Any, fields: Any) -> DeadLetter:
    def get(name: str) -> str:
        value = fields.get(name.encode(), fields.get(name, b""))
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    letter_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    failures = 0
    with contextlib.suppress(ValueError):
        failures = int(get("failures") or 0)
    return DeadLetter(
        letter_id,
        get("data").encode(),
        get("reason") or "unreadable",
        failures,
        int(letter_id.split("-")[0]) / 1000,
    )
