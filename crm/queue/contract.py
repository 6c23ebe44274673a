"""The queue's contract: what travels (`QueueItem`), what a handler answers per item
(`Outcome`), how failures are retried (`RetryPolicy`), and the `EventQueue` protocol every
backend implements."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import msgspec

from crm.outage import is_outage
from matching.event import InboundEvent

log = logging.getLogger(__name__)


# A msgspec Struct, not a frozen dataclass: one is made for every queued webhook request, and
# a frozen dataclass sets each field through object.__setattr__.
class RawInput(msgspec.Struct, frozen=True):
    """Channel input that is checked but not yet an event. The worker turns it into one with
    the converter registered for `kind` (`Service.converters`). `doc` is a JSON object; `text`,
    when given, is its JSON text in UTF-8 as received, so the Redis queue does not encode the
    document again. `doc` may be None when `text` is given: a channel that validated the text
    without building the document leaves that to whoever needs it (`document`); the Redis
    queue only sends the text on."""

    kind: str
    received_at: float  # unix seconds
    doc: dict[str, Any] | None
    text: bytes | None = None

    def document(self) -> dict[str, Any]:
        """`doc`, decoded from `text` when it was left out."""
        if self.doc is not None:
            return self.doc
        if self.text is None:
            raise ValueError("a raw input holds neither a document nor its text")
        doc = json.loads(self.text)
        if not isinstance(doc, dict):
            raise ValueError("a raw input's text is not a JSON object")
        return doc


QueueItem = InboundEvent | RawInput


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one item a handler was given. done: committed, a known duplicate, or
    nothing to record. retry: an outage (a server or the disk is down); tried again later and
    never given up. failed: the same input would fail again; tried again, and after
    `RetryPolicy.max_failures` of these moved to the dead letters."""

    status: Literal["done", "retry", "failed"]
    reason: str = ""


DONE = Outcome("done")


def outcome_of(exc: BaseException) -> Outcome:
    """The outcome of an item whose processing raised `exc`."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    reason = f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
    return Outcome("retry" if is_outage(exc) else "failed", reason)


# Takes a batch of items and says, per item, what became of it (`Outcome`).
Handler = Callable[[list[QueueItem]], Awaitable[list[Outcome]]]

# Items per handler call: whatever is waiting, up to this many. One transaction per batch is
# what lets intake keep up with bursts; a lone event is a batch of one and goes at once.
MAX_BATCH = 100


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits for intake: items queued or handed out and not yet done, and how long the
    oldest of them has waited (None when there is none)."""

    items: int
    oldest_age: float | None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How an item intake could not take is tried again: after first_delay, doubling up to
    max_delay; given up (dead-lettered) after max_failures failures that were not an outage."""

    max_failures: int = 5
    first_delay: float = 1.0
    max_delay: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds before try `attempt + 1` (attempt >= 1 tries so far)."""
        return float(min(self.max_delay, self.first_delay * 2 ** min(max(attempt - 1, 0), 30)))


# Called with how many items were moved to the dead letters (for a metric).
DeadHook = Callable[[int], None]


class EventQueue(Protocol):
    async def open(self) -> None: ...

    # Await the answer: None once the item is queued. (Any awaitable, so a queue may hand out
    # the future its write resolves rather than wrap it in a coroutine.)
    def put(self, item: QueueItem) -> Awaitable[None]: ...

    async def run(self, handler: Handler, stop: asyncio.Event) -> None: ...

    async def depth(self) -> int: ...

    async def backlog(self) -> Backlog: ...

    async def close(self) -> None: ...

    @property
    def dead_waiting(self) -> int:
        """Dead letters waiting for an operator, as last counted (no I/O)."""
        ...


def describe(item: QueueItem) -> str:
    """An item's name for a log line or a listing: no contents (they are customer data)."""
    if isinstance(item, RawInput):
        return f"{item.kind} input received at {item.received_at:.3f}"
    return f"{item.channel.value}:{item.external_id}"


async def handle_batch(handler: Handler, items: list[QueueItem]) -> list[Outcome]:
    """The handler's outcomes; when it raises, the same outcome for every item (a database
    outage is an outage for all of them)."""
    try:
        outcomes = await handler(items)
    except Exception as exc:
        outcome = outcome_of(exc)
        if outcome.status != "retry":  # an outage is logged once, by OutageWait
            log.exception("processing a batch of %d events failed", len(items))
        return [outcome] * len(items)
    if len(outcomes) != len(items):  # a handler bug: nothing is taken as done
        log.error("handler returned %d outcomes for %d items", len(outcomes), len(items))
        return [Outcome("failed", "handler returned no outcome")] * len(items)
    return outcomes


class OutageWait:
    """While intake reports an outage for everything it was given, take no new work: wait
    (capped backoff) instead of failing each item against a server that is down. Logged once
    when it starts and once when intake works again."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self._count = 0
        self._until = 0.0
        self._since: float | None = None

    def report(self, outcomes: Sequence[Outcome], now: float) -> None:
        if outcomes and all(o.status == "retry" for o in outcomes):
            if self._since is None:
                self._since = now
                log.warning(
                    "intake reports an outage (%s): events wait, none is given up",
                    outcomes[0].reason,
                )
            self._count += 1
            self._until = now + self.policy.delay(self._count)
        elif any(o.status == "done" for o in outcomes):
            if self._since is not None:
                log.warning("intake works again after %.1f s of outage", now - self._since)
            self._count, self._until, self._since = 0, 0.0, None

    def remaining(self, now: float) -> float:
        return max(0.0, self._until - now)

    @property
    def active(self) -> bool:
        """An outage is under way: one item at a time probes whether it is over."""
        return self._since is not None


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))
