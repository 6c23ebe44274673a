"""What every phone endpoint shares: the service it talks to, the phone settings, a cached rep
directory (extensions → reps) and the step from a parsed `CallReport` to the queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal, Protocol

from channels.phone.calls import CallReport, call_to_event, event_id, plainly_internal
from channels.phone.generic import generic_report
from channels.phone.lines import LineRegions, line_of
from channels.phone.settings import PhoneSettings
from crm.dto import IntakeResult
from crm.facade import Crm
from crm.queue import RawInput
from crm.services.callers import CallerLookup
from crm.services.telephony import RepContact, Telephony
from matching.event import Channel, InboundEvent
from matching.normalize import normalize_phone

log = logging.getLogger(__name__)

QueueStatus = Literal["accepted", "duplicate", "ignored"]
# The RawInput kind of a `/hooks/calls` document, converted by `PhoneContext.convert_generic`.
GENERIC_KIND = "call.generic"

# How often the cached rep directory is re-read (new reps / extensions show up within this).
DIRECTORY_REFRESH = 30.0
# Replays of an event already queued are answered without queueing it again for this long.
RECENT_TTL = 600.0
RECENT_MAX = 100_000
# Signed bodies remembered for the replay fast path (~350 bytes each); a replay of an older
# one takes the ordinary path (parse, then the recent-id check).
BODIES_MAX = 20_000


class _Crm(Protocol):
    @property
    def default_region(self) -> str: ...

    @property
    def timezone(self) -> str: ...


class _Http(Protocol):
    @property
    def public_url(self) -> str: ...


class PhoneHostSettings(Protocol):
    """The settings the phone channel reads."""

    @property
    def phone(self) -> PhoneSettings: ...

    @property
    def crm(self) -> _Crm: ...

    @property
    def http(self) -> _Http: ...


class PhoneHost(Protocol):
    """The part of `leadbot.app.Service` the phone channel uses."""

    @property
    def settings(self) -> PhoneHostSettings: ...

    @property
    def crm(self) -> Crm: ...

    @property
    def converters(self) -> dict[str, Callable[[RawInput], InboundEvent | None]]: ...

    async def submit(self, event: InboundEvent) -> None: ...

    def submit_raw(
        self, channel: Channel, raw: RawInput, *, cleaned: bool = False
    ) -> Awaitable[None]: ...

    async def process_now(self, event: InboundEvent) -> IntakeResult: ...

    def outbox_written(self) -> None: ...


class RecentIds:
    """External ids queued lately, so a sender's retries cost no queue or database work.

    Only an optimization: intake stays exactly-once by (channel, external id) on its own.
    """

    def __init__(self, ttl: float = RECENT_TTL, max_size: int = RECENT_MAX) -> None:
        self.ttl, self.max_size = ttl, max_size
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._expires = -math.inf  # when the oldest id (as last looked at) leaves

    def __contains__(self, key: str) -> bool:
        stamp = self._seen.get(key)
        return stamp is not None and time.monotonic() - stamp < self.ttl

    def add(self, key: str) -> None:
        now = time.monotonic()
        seen = self._seen
        seen[key] = now
        seen.move_to_end(key)
        if len(seen) > self.max_size:  # one in, the oldest out
            seen.popitem(last=False)
        # The expired are let go when the oldest (as last looked at) may have expired.
        if now > self._expires:
            while seen and now - next(iter(seen.values())) > self.ttl:
                seen.popitem(last=False)
            self._expires = next(iter(seen.values())) + self.ttl if seen else -math.inf


@dataclass
class RepDirectory:
    """Active reps by id and by extension, re-read in the background: webhooks must not wait
    for the database to learn whether a number is one of our extensions."""

    by_id: dict[int, RepContact] = field(default_factory=dict)
    by_extension: dict[str, RepContact] = field(default_factory=dict)
    extensions: frozenset[str] = frozenset()  # the keys of by_extension, a new set per load

    def load(self, reps: list[RepContact]) -> None:
        active = [r for r in reps if r.active]
        self.by_id = {r.id: r for r in active}
        self.by_extension = {r.extension.strip(): r for r in active if r.extension}
        self.extensions = frozenset(self.by_extension)


class RecentBodies:
    """Signature digests of bodies queued lately, each with its event id, also quoted as JSON
    for the reply: a replay of the very same signed body is answered from here without parsing
    it (see `webhooks.generic_hook`). Whether the event still counts as recent is `RecentIds`'
    call; this only bounds memory."""

    def __init__(self, max_size: int = BODIES_MAX) -> None:
        self.max_size = max_size
        # Ordered, not a plain dict: a dict whose oldest key is deleted again and again finds
        # the next oldest by walking over the holes the deletions left (until it is resized),
        # several µs per webhook request once it is full.
        self._known: OrderedDict[str, tuple[str, bytes]] = OrderedDict()

    def get(self, digest: str) -> tuple[str, bytes] | None:
        return self._known.get(digest)

    def add(self, digest: str, key: str, quoted_key: bytes) -> None:
        if digest not in self._known and len(self._known) >= self.max_size:
            self._known.popitem(last=False)  # the oldest
        self._known[digest] = (key, quoted_key)


@dataclass
class PhoneContext:
    host: PhoneHost
    settings: PhoneSettings
    telephony: Telephony
    callers: CallerLookup  # the caller lookup's fast path (one statement)
    directory: RepDirectory = field(default_factory=RepDirectory)
    recent: RecentIds = field(default_factory=RecentIds)
    bodies: RecentBodies = field(default_factory=RecentBodies)
    # Settings do not change while the service runs: what every call needs is derived once.
    _internal: tuple[frozenset[str], frozenset[str]] | None = field(
        default=None, init=False, repr=False
    )

    @cached_property
    def region(self) -> str:
        return (self.settings.region or self.host.settings.crm.default_region).upper()

    @cached_property
    def lines(self) -> LineRegions:
        return LineRegions(self.region, self.settings.line_regions)

    def line_region(self, report: CallReport) -> str:
        """The region the call's numbers are read in: that of the line it came through."""
        return self.lines.region(line_of(report))

    @cached_property
    def webhook_key(self) -> bytes | None:
        """The generic webhook's HMAC key (None: the webhook is off)."""
        secret = self.settings.webhook_secret
        return None if secret is None else secret.get_secret_value().encode("utf-8")

    @cached_property
    def our_numbers(self) -> frozenset[str]:
        return frozenset(self.settings.our_numbers)

    def internal_extensions(self) -> frozenset[str]:
        """Configured internal extensions and every active rep's: one set per directory load
        (call_to_event caches by set, and a set made once hashes once)."""
        loaded = self.directory.extensions
        if self._internal is None or self._internal[0] is not loaded:
            self._internal = (loaded, frozenset(self.settings.internal_extensions) | loaded)
        return self._internal[1]

    def normalize(self, number: str, region: str | None = None) -> str | None:
        """E.164 of a number as a phone system sends it, or None (withheld, unparsable,
        invalid); national forms are read in `region`, else the channel's."""
        return normalize_phone(number, region or self.region).e164

    def to_event(
        self,
        report: CallReport,
        *,
        rep: RepContact | None = None,
        received_at: datetime | None = None,
    ) -> InboundEvent | None:
        """The event for a report (None: an internal call). A new lead goes to `rep`, else
        to the rep whose extension took the call, else to the round robin."""
        event = call_to_event(
            report,
            line_region=self.line_region(report),
            internal_extensions=self.internal_extensions(),
            our_numbers=self.our_numbers,
            received_at=received_at or datetime.now(UTC),
        )
        if event is None:
            # Debug only: a PBX may report every internal call, and this runs per request.
            log.debug("call %s is internal: not recorded in the CRM", report.call_id)
            return None
        owner = rep or self.directory.by_extension.get((report.agent_extension or "").strip())
        if owner is not None:
            event = replace(event, meta={**event.meta, "queue": [owner.id]})
        return event

    async def enqueue(self, report: CallReport) -> tuple[QueueStatus, str]:
        """Queue the event of a report unless the very same one was queued lately (checked
        first: a retry costs no phone number parsing). Returns what happened and the id."""
        key = event_id(report)
        if key in self.recent:
            return "duplicate", key
        event = self.to_event(report)
        if event is None:
            return "ignored", key
        await self.host.submit(event)
        self.recent.add(key)
        return "accepted", key

    async def enqueue_generic(
        self, report: CallReport, doc: dict[str, Any] | None, text: bytes | None
    ) -> tuple[QueueStatus, str]:
        """`enqueue` for a `/hooks/calls` document, queued as received: the worker parses the
        number and builds the event (`convert_generic`), which is most of the work. `doc` is
        cleaned already (`matching.text.clean_json`); `text`, if given, is its JSON (and the
        document None when the webhook did not build it: `read_call`)."""
        key = event_id(report)
        if key in self.recent:
            return "duplicate", key
        internal = plainly_internal(
            report,
            line_region=self.line_region(report),
            internal_extensions=self.internal_extensions(),
            our_numbers=self.our_numbers,
        )
        if internal:
            log.debug("call %s is internal: not recorded in the CRM", report.call_id)
            return "ignored", key
        # The webhook cleaned the document before validating it.
        raw = RawInput(GENERIC_KIND, time.time(), doc, text)
        await self.host.submit_raw(Channel.CALL, raw, cleaned=True)
        self.recent.add(key)
        return "accepted", key

    def convert_generic(self, raw: RawInput) -> InboundEvent | None:
        """The event of a queued `/hooks/calls` document (validated when it was received)."""
        received = datetime.fromtimestamp(raw.received_at, UTC)
        return self.to_event(generic_report(raw.document()), received_at=received)

    async def refresh_directory(self) -> None:
        self.directory.load(await self.telephony.reps())

    async def keep_directory_fresh(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.refresh_directory()
            except Exception:  # the database may be away for a moment; keep the last copy
                log.warning("could not refresh the rep directory", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=DIRECTORY_REFRESH)
