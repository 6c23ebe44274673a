"""Channel health for the admins: each mailbox's last sync and last error, each webhook
source's last accepted and last refused request, and the queue's dead letters (with retry).

Everything is kept in the `state` table, so every process's view reaches the admin page:
mailboxes write theirs through `MailState`; webhook requests are noted in memory (a flood must
not write per request) and `flush` writes what changed, at most once per source per call (the
service calls it every second). A source that only went on accepting requests is written at
most every `ACCEPTED_EVERY` seconds.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select

from crm.db import Database
from crm.deadletters import DeadLetter, UnknownDeadLetter
from crm.dto import Actor
from crm.errors import Forbidden, NotFound
from crm.models import KeyValue, utcnow
from crm.services.mailstate import HEALTH_PREFIX as MAIL_HEALTH
from crm.services.mailstate import SYNC_PREFIX as MAIL_SYNC

log = logging.getLogger(__name__)

HOOK_PREFIX = "health.hook:"
REASON_MAX = 300
# How often a source whose only news is a later accepted request is written. The write is an
# ORM transaction on the event loop: every second, under a steady flow (the caller lookup a
# PBX asks at every ring), it held up the requests that came meanwhile. A refusal, and a
# source's first request, are written at the next flush; `webhooks` flushes all first.
ACCEPTED_EVERY = 30.0


class DeadLetterStore(Protocol):
    """The queue's dead letters (crm.deadletters: Redis stream or journal directory)."""

    async def letters(self) -> list[DeadLetter]: ...

    async def retry(self, letter_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class MailboxHealth:
    name: str
    last_sync: datetime | None  # the folder last read to its end
    last_error: str | None
    last_error_at: datetime | None


@dataclass(slots=True)
class WebhookHealth:
    source: str  # the route pattern, e.g. /hooks/twilio/voice (never a path with a token)
    last_accepted: datetime | None = None
    last_refused: datetime | None = None
    refused_status: int | None = None
    refused_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "last_accepted": _iso(self.last_accepted),
            "last_refused": _iso(self.last_refused),
            "refused_status": self.refused_status,
            "refused_reason": self.refused_reason,
        }

    @classmethod
    def from_json(cls, source: str, doc: dict[str, Any]) -> WebhookHealth:
        status = doc.get("refused_status")
        return cls(
            source,
            _time(doc.get("last_accepted")),
            _time(doc.get("last_refused")),
            None if status is None else int(status),
            doc.get("refused_reason"),
        )

    def merge(self, other: WebhookHealth) -> None:
        """Keep the newer of each: another process may have written a later request."""
        if other.last_accepted and (
            not self.last_accepted or other.last_accepted > self.last_accepted
        ):
            self.last_accepted = other.last_accepted
        if other.last_refused and (not self.last_refused or other.last_refused > self.last_refused):
            self.last_refused = other.last_refused
            self.refused_status, self.refused_reason = other.refused_status, other.refused_reason


@dataclass(slots=True)
class _Noted:
    """A webhook source's requests as noted: clock readings (unix seconds), made datetimes
    only when written, not on every request."""

    accepted: float | None = None
    refused: float | None = None
    refused_status: int | None = None
    refused_reason: str | None = None

    def health(self, source: str) -> WebhookHealth:
        return WebhookHealth(
            source,
            _at(self.accepted),
            _at(self.refused),
            self.refused_status,
            self.refused_reason,
        )


def _at(unix: float | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    id: str
    at: datetime
    failures: int
    reason: str
    readable: bool  # False: this version cannot read the item (drop it with `leadbot dead`)


def require_admin(actor: Actor) -> None:
    if actor.role != "admin":
        raise Forbidden("channel health is for admins")


@dataclass
class ChannelHealth:
    db: Database
    # Set by the service: where its queue keeps dead letters (None: no journal, no Redis).
    dead: DeadLetterStore | None = None
    clock: Callable[[], float] = time.monotonic
    _hooks: dict[str, _Noted] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)  # written at the next flush
    _accepted: set[str] = field(default_factory=set)  # news that waits for ACCEPTED_EVERY
    _written: dict[str, float] = field(default_factory=dict)  # source -> clock at its write

    # --- recording (adapters, the HTTP middleware) -------------------------------------------

    def webhook(self, source: str, status: int, reason: str = "") -> None:
        """Note one request of a webhook source (in memory; `flush` writes it)."""
        now = time.time()
        seen = self._hooks.get(source)
        if seen is None:  # not setdefault: that would build one on every request
            seen = self._hooks[source] = _Noted()
        if status < 400:
            seen.accepted = now
            (self._accepted if source in self._written else self._dirty).add(source)
        else:
            seen.refused, seen.refused_status = now, status
            seen.refused_reason = reason[:REASON_MAX]
            self._dirty.add(source)

    async def flush(self, *, everything: bool = False) -> None:
        """Write the sources noted since the last flush (one that only accepted more requests
        when it was last written `ACCEPTED_EVERY` ago; all with `everything`), merged with
        what other processes wrote. Failures are logged; the notes stay for the next try."""
        at = self.clock()
        due = {
            source
            for source in self._accepted
            if everything or at - self._written.get(source, -math.inf) >= ACCEPTED_EVERY
        }
        if not self._dirty and not due:
            return
        dirty, self._dirty = self._dirty | due, set()
        self._accepted -= dirty
        try:
            async with self.db.transaction() as s:
                keys = [HOOK_PREFIX + d for d in sorted(dirty)]
                rows = {
                    r.key: r
                    for r in await s.scalars(select(KeyValue).where(KeyValue.key.in_(keys)))
                }
                now = utcnow()
                for source in sorted(dirty):
                    mine = self._hooks[source].health(source)
                    row = rows.get(HOOK_PREFIX + source)
                    if row is None:
                        s.add(
                            KeyValue(key=HOOK_PREFIX + source, value=mine.to_json(), updated_at=now)
                        )
                        continue
                    merged = WebhookHealth.from_json(source, row.value)
                    merged.merge(mine)
                    row.value, row.updated_at = merged.to_json(), now
        except Exception as exc:
            self._dirty |= dirty
            log.warning("writing webhook health failed (%s); trying again", exc)
            return
        for source in dirty:
            self._written[source] = at

    # --- reading (the admin pages) ----------------------------------------------------------

    async def mailboxes(self, actor: Actor) -> list[MailboxHealth]:
        require_admin(actor)
        async with self.db.read() as s:
            rows = await s.scalars(
                select(KeyValue).where(
                    KeyValue.key.startswith(MAIL_SYNC) | KeyValue.key.startswith(MAIL_HEALTH)
                )
            )
            by_name: dict[str, dict[str, Any]] = {}
            for row in rows:
                if row.key.startswith(MAIL_HEALTH):
                    by_name.setdefault(row.key[len(MAIL_HEALTH) :], {}).update(row.value)
                else:
                    last = {"synced_at": row.value.get("synced_at")}
                    by_name.setdefault(row.key[len(MAIL_SYNC) :], {}).setdefault("saved", last)
        out = []
        for name, doc in sorted(by_name.items()):
            synced = _time(doc.get("last_sync")) or _time((doc.get("saved") or {}).get("synced_at"))
            out.append(
                MailboxHealth(name, synced, doc.get("last_error"), _time(doc.get("last_error_at")))
            )
        return out

    async def webhooks(self, actor: Actor) -> list[WebhookHealth]:
        require_admin(actor)
        await self.flush(everything=True)
        async with self.db.read() as s:
            rows = await s.scalars(select(KeyValue).where(KeyValue.key.startswith(HOOK_PREFIX)))
            found = [WebhookHealth.from_json(r.key[len(HOOK_PREFIX) :], r.value) for r in rows]
        return sorted(found, key=lambda h: h.source)

    async def dead_letters(self, actor: Actor) -> list[DeadLetterView]:
        require_admin(actor)
        if self.dead is None:
            return []
        return [
            DeadLetterView(
                d.id,
                datetime.fromtimestamp(d.at, utcnow().tzinfo),
                d.failures,
                d.reason,
                d.item is not None,
            )
            for d in await self.dead.letters()
        ]

    async def retry_dead_letter(self, letter_id: str, actor: Actor) -> None:
        """Put a dead letter back into the live queue (`leadbot dead retry`)."""
        require_admin(actor)
        if self.dead is None:
            raise NotFound("this queue keeps no dead letters (no Redis, no journal)")
        try:
            await self.dead.retry(letter_id)
        except UnknownDeadLetter as exc:
            raise NotFound(str(exc)) from None


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
