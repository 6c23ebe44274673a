"""The change feed: after a transaction that created or changed a lead, deal, contact, company
or activity commits, a small `Change` per record goes to every subscriber (live pages, caches).

Delivery is at most once and a hint, never the truth: a subscriber refetches what it shows.
Each subscriber has a bounded queue; when it falls behind, the oldest changes are dropped and it
is handed a `Missed` (refetch everything) — a writer never waits for a reader. With Redis, the
changes of every process reach every other process through one pub/sub channel; a change made
in this process reaches this process's subscribers directly, so Redis being down loses only the
other processes' changes (and the subscribers are told so with a `Missed` when it is back).
Publishing never fails a write: errors are logged, at most once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import operator
import os
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Protocol

import msgspec
from redis.asyncio import Redis

log = logging.getLogger(__name__)

KINDS = ("lead", "deal", "contact", "company", "activity")
QUEUE_SIZE = 1000  # changes a subscriber may fall behind before it misses some
LOG_EVERY = 60.0  # seconds between two lines about a failing Redis
FLUSH_SECONDS = 2.0  # how long closing waits for what is still to be sent to Redis
CHANNEL = "leadbot:changes"  # pub/sub channels span Redis' numbered databases: name yours
_ENCODE = msgspec.json.Encoder().encode

# The rep on whose behalf the current transaction writes (set where rights are checked).
acting_rep: ContextVar[int | None] = ContextVar("acting_rep", default=None)


# Not frozen: a frozen dataclass's __init__ sets each field through `object.__setattr__`,
# about four times the cost of a plain one, and changes are built at every write (several per
# intake event). Nothing assigns to a change once built (subscribers share them); hashed by
# value, as a frozen one is.
@dataclass(slots=True, unsafe_hash=True)
class Change:
    """One record created, changed or deleted by a committed transaction."""

    kind: str  # lead | deal | contact | company | activity
    id: int
    action: str  # created | changed | deleted
    actor_id: int | None  # the rep who made it; None for intake, the system, an API token
    at: datetime
    fields: tuple[str, ...] = ()  # the columns that changed (empty when created or deleted)
    owner_id: int | None = None  # the record's responsible rep after the change
    # The E.164 numbers whose caller answer the change may alter (`crm.affected`); None:
    # not known, any number's may have changed.
    numbers: tuple[str, ...] | None = None

    def with_numbers(self, numbers: tuple[str, ...]) -> Change:
        # Not `dataclasses.replace`, which reads the class's fields anew on every call
        # (`crm.affected` calls this at every commit): `_ALL_BUT_NUMBERS` read them once, so
        # a field added later is copied too.
        return Change(*(*_ALL_BUT_NUMBERS(self), numbers))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "action": self.action,
            "actor_id": self.actor_id,
            "at": self.at.isoformat(),
            "fields": list(self.fields),
            "owner_id": self.owner_id,
            "numbers": None if self.numbers is None else list(self.numbers),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Change:
        return cls(
            kind=str(doc["kind"]),
            id=int(doc["id"]),
            action=str(doc["action"]),
            actor_id=None if doc.get("actor_id") is None else int(doc["actor_id"]),
            at=datetime.fromisoformat(str(doc["at"])),
            fields=tuple(str(f) for f in doc.get("fields") or ()),
            owner_id=None if doc.get("owner_id") is None else int(doc["owner_id"]),
            # A message of a process from before numbers were sent has none: unknown.
            numbers=None if doc.get("numbers") is None else tuple(map(str, doc["numbers"])),
        )


# Every field of a `Change` but `numbers`, in the order `Change` takes them: `with_numbers`
# passes them and `numbers` after them, so `numbers` stays the last field.
_ALL_BUT_NUMBERS: Callable[[Change], tuple[Any, ...]] = operator.attrgetter(
    *(f.name for f in fields(Change)[:-1])
)
if fields(Change)[-1].name != "numbers":
    raise TypeError("Change.numbers must stay the last field (see Change.with_numbers)")


@dataclass(frozen=True, slots=True)
class Missed:
    """Some changes did not reach this subscriber (it fell behind, or Redis was away):
    whatever it shows or caches may be stale and should be refetched."""

    count: int | None  # how many were dropped; None when unknown (a lost Redis connection)


_RANK = {"changed": 0, "created": 1, "deleted": 2}  # which action a record's merged change says


def merge(changes: Sequence[Change]) -> list[Change]:
    """One change per record, in first-seen order: created wins over changed, deleted over
    both; the changed fields and the numbers are united (unknown numbers stay unknown)."""
    out: dict[tuple[str, int], Change] = {}
    rank = _RANK
    for c in changes:
        key = (c.kind, c.id)
        seen = out.get(key)
        if seen is None:
            out[key] = c
            continue
        action = c.action if rank[c.action] > rank[seen.action] else seen.action
        fields = () if action != "changed" else tuple(dict.fromkeys(seen.fields + c.fields))
        out[key] = Change(
            c.kind,
            c.id,
            action,
            seen.actor_id if seen.actor_id is not None else c.actor_id,
            seen.at,
            fields,
            c.owner_id if c.owner_id is not None else seen.owner_id,
            None
            if seen.numbers is None or c.numbers is None
            else tuple(dict.fromkeys(seen.numbers + c.numbers)),
        )
    return list(out.values())


class Subscription:
    """One subscriber's bounded queue; `async for item in subscription` waits for the next."""

    def __init__(self, size: int, close: Callable[[Subscription], None]) -> None:
        self._items: deque[Change] = deque()
        self._size = size
        self._close = close
        self._missed = 0
        self._unknown_loss = False
        self._wake = asyncio.Event()

    def put(self, change: Change) -> None:
        if len(self._items) >= self._size:
            self._items.popleft()
            self._missed += 1
        self._items.append(change)
        self._wake.set()

    def lost(self) -> None:
        self._unknown_loss = True
        self._wake.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Change | Missed:
        return await self.get()

    def close(self) -> None:
        self._close(self)

    async def get(self) -> Change | Missed:
        while (item := self.get_nowait()) is None:
            self._wake.clear()
            await self._wake.wait()
        return item

    def get_nowait(self) -> Change | Missed | None:
        """The next item if one is waiting, else None (for a reader that looks in on its own
        schedule, such as a cache on its next lookup)."""
        if self._unknown_loss or self._missed:
            missed = Missed(None if self._unknown_loss else self._missed)
            self._missed, self._unknown_loss = 0, False
            return missed
        if self._items:
            return self._items.popleft()
        return None


class Feed(Protocol):
    """What the services and the adapters see of the feed."""

    def publish(self, changes: Sequence[Change]) -> None: ...

    def subscribe(self) -> Subscription: ...

    @property
    def live(self) -> bool:
        """Whether changes from every process reach this one now (False while Redis is away:
        a cache must not trust what it holds then)."""
        ...


@dataclass
class LocalFeed:
    """The in-process feed: the embedded default, and the local half of the Redis one."""

    queue_size: int = QUEUE_SIZE
    # Weak: an iterator dropped without being closed ends its subscription too.
    _subs: weakref.WeakSet[Subscription] = field(default_factory=weakref.WeakSet)

    def publish(self, changes: Sequence[Change]) -> None:
        self.deliver(changes)

    def deliver(self, changes: Sequence[Change]) -> None:
        for sub in list(self._subs):
            for change in changes:
                sub.put(change)

    def lost(self) -> None:
        for sub in list(self._subs):
            sub.lost()

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @property
    def live(self) -> bool:
        return True  # one process: every change is delivered here

    def subscribe(self) -> Subscription:
        """Every change from this call on (and `Missed` where some were dropped). The
        subscription ends with `close()`, or when it is dropped; a cancelled wait for the next
        item (a timeout) does not end it."""
        sub = Subscription(self.queue_size, self._subs.discard)
        self._subs.add(sub)
        return sub

    async def start(self, *, listen: bool = True) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisFeed(LocalFeed):
    """Local delivery plus Redis pub/sub between processes. Messages carry this process's id,
    so a process skips its own changes (already delivered locally)."""

    def __init__(self, redis: Redis, *, channel: str = CHANNEL, queue_size: int = QUEUE_SIZE):
        super().__init__(queue_size)
        self.redis = redis
        self.channel = channel
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._outgoing: deque[bytes] = deque(maxlen=queue_size)
        self._send = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_error = -LOG_EVERY
        self._ready = asyncio.Event()
        self._sent = asyncio.Event()  # nothing is waiting to be sent
        self._sent.set()
        self._live = False  # the listener is subscribed and its connection has not failed

    @property
    def live(self) -> bool:
        return self._live

    def publish(self, changes: Sequence[Change]) -> None:
        self.deliver(changes)
        if changes:
            # One pass in C over the changes themselves: the document `to_json` gives each,
            # but for a timestamp at UTC offset zero, written "Z" (`from_json` reads both).
            self._outgoing.append(_ENCODE({"origin": self.origin, "changes": changes}))
            self._sent.clear()
            self._send.set()

    async def start(self, *, listen: bool = True) -> None:
        """Start sending (and, with `listen`, receiving). A one-shot command only publishes:
        it has no subscriber to deliver other processes' changes to."""
        self._tasks = [asyncio.create_task(self._sender(), name="changes.send")]
        if not listen:
            return
        self._tasks.append(asyncio.create_task(self._listener(), name="changes.listen"))
        # The listener is subscribed before start returns (a change made right after is seen),
        # unless Redis is down: then it keeps trying in the background.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 5)

    async def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait until what was published has been sent to Redis (or dropped because Redis
        failed); False if that took longer than `timeout` seconds."""
        if not self._tasks:
            return not self._outgoing
        try:
            await asyncio.wait_for(self._sent.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._live = False
        # The listener is cancelled before anything else yields (redis-py may swallow a
        # cancel that lands while it reconnects); the last commits' changes still go out: a
        # command that exits right after its write would otherwise keep them from the others.
        for task in self._tasks[1:]:
            task.cancel()
        if self._outgoing:
            await self.flush()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def _failed(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_error >= LOG_EVERY:
            self._last_error = now
            log.warning(
                "change feed: %s failed (%s); live updates from other processes "
                "may lag until Redis answers",
                what,
                exc,
            )

    async def _sender(self) -> None:
        while True:
            await self._send.wait()
            self._send.clear()
            while self._outgoing:
                message = self._outgoing[0]
                try:
                    await self.redis.publish(self.channel, message)
                except Exception as exc:  # Redis away: these hints are dropped, writes go on
                    self._failed("publishing", exc)
                    self._outgoing.clear()
                    break
                self._outgoing.popleft()
            if not self._outgoing:
                self._sent.set()

    async def _listener(self) -> None:
        delay = 0.5
        first = True
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._ready.set()
                    self._live = True
                    if not first:  # what was published while we were away is lost
                        self.lost()
                    first, delay = False, 0.5
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._received(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._live = False
                self._failed("listening", exc)
                if not first:
                    self.lost()
                first = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _received(self, data: bytes | str) -> None:
        try:
            doc = json.loads(data)
            if doc.get("origin") == self.origin:
                return
            changes = [Change.from_json(c) for c in doc["changes"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("change feed: ignored a malformed message")
            return
        self.deliver(changes)
