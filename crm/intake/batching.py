"""Intake: apply the matcher's decision to inbound events, exactly once.

Events come in batches (whatever a queue read returned; one event is a batch of one). One
transaction per batch writes the event log rows (their unique (channel, external id) is the
truth about "already processed"), the records the decisions create or change, the activities
and the outbox rows for rep notifications. Events touching the same identity are serialized
across workers by advisory locks on them, so concurrent events never create two leads for
one person; on PostgreSQL each event is locked so too, and its log row written once, with its
outcome (SQLite, one writer at a time, claims the row first and writes the outcome after). A
batch on PostgreSQL first takes the events whose locks are free without waiting, and those
another worker holds after, in a transaction of their own (`Intake._take`).
Within a batch the work goes in rounds (see `crm.intake.rounds`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any, Protocol, cast

from sqlalchemy import Table, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bulk import Together, driver, fetch
from crm.bulk_sqlite import Writes
from crm.changes import Change
from crm.config import CrmConfig
from crm.db import Database, among, is_pg
from crm.dto import IntakeResult
from crm.ids import IdAllocator
from crm.intake.apply import apply_item, touched
from crm.intake.outcomes import Logged, duplicate_result, repeated, stored_outcome
from crm.intake.outcomes import result as intake_result
from crm.intake.payload import payload_text
from crm.intake.rounds import Item, decide_items, prepare_round, split
from crm.looping import breathe
from crm.models import InboundEventLog, utcnow
from crm.outage import is_outage
from crm.repository import SqlCandidateRepository
from crm.services.reps import roles_of_active
from crm.services.runtime import current_match_settings
from crm.tracking import record
from matching.event import InboundEvent
from matching.identities import event_identities
from matching.model import MatchSettings

log = logging.getLogger(__name__)

SETTINGS_TTL = 2.0
LOG = cast(Table, InboundEventLog.__table__)


class SeenCache(Protocol):
    """Optional fast path for duplicates (Redis SET NX); the database stays the truth."""

    async def seen(self, keys: Sequence[str]) -> list[bool]: ...

    async def mark(self, keys: Sequence[str]) -> None: ...


class Intake:
    def __init__(
        self,
        db: Database,
        config: CrmConfig,
        *,
        seen: SeenCache | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.config = config
        self.seen = seen
        self.clock = clock
        self._settings: tuple[float, MatchSettings] | None = None

    async def process(self, event: InboundEvent) -> IntakeResult:
        result = (await self.process_many([event]))[0]
        if isinstance(result, Exception):
            raise result
        return result

    async def process_many(self, events: Sequence[InboundEvent]) -> list[IntakeResult | Exception]:
        """Process a batch; each event's result, or the error that kept it from being
        processed (nothing of that event was written; the others are not affected)."""
        results: list[IntakeResult | Exception | None] = [None] * len(events)
        firsts: dict[tuple[str, str], int] = {}
        for i, event in enumerate(events):
            # The same event twice in one batch: answered from the first.
            firsts.setdefault((str(event.channel), event.external_id), i)
        cached = await self._known(events, list(firsts.values()))
        for i, row in cached.items():
            results[i] = duplicate_result(row)
        todo = [i for i in firsts.values() if results[i] is None]
        if todo:
            # First without waiting on another worker's events: those it holds are taken
            # after this batch's others are committed, in a transaction of their own.
            done = await self._guarded([events[i] for i in todo], wait=False)
            later = [k for k, result in enumerate(done) if result is None]
            if later:
                again = await self._guarded([events[todo[k]] for k in later], wait=True)
                for k, result in zip(later, again, strict=True):
                    done[k] = result
            for i, result in zip(todo, done, strict=True):
                results[i] = result
            if self.seen is not None:
                ok = [i for i in todo if isinstance(results[i], IntakeResult)]
                await self.seen.mark([_seen_key(events[i]) for i in ok])
        for i, event in enumerate(events):
            if results[i] is None:
                first = results[firsts[(event.channel.value, event.external_id)]]
                results[i] = repeated(first) if isinstance(first, IntakeResult) else first
        return [r for r in results if r is not None]

    async def _guarded(
        self, events: Sequence[InboundEvent], *, wait: bool
    ) -> list[IntakeResult | Exception | None]:
        """`_batch`, with a failed batch's events taken again one by one (an outage: each
        event's error, for the queue to retry them)."""
        try:
            return list(await self._batch(events, wait=wait))
        except Exception as exc:
            if is_outage(exc):  # every event would meet it: the queue retries them later
                return [exc] * len(events)
            if len(events) == 1:
                return [await self._alone(events[0], exc)]
            log.warning("batch of %d events failed (%s); one by one", len(events), exc)
            return [await self._alone(event) for event in events]

    async def _alone(
        self, event: InboundEvent, failed: Exception | None = None
    ) -> IntakeResult | Exception:
        """One event in its own transaction, tried twice when the database refused it (a
        unique conflict: another worker wrote the same call's activity first, found the second
        time; a deadlock with another batch)."""
        tries = 0 if failed is None else 1
        while failed is None or (isinstance(failed, DBAPIError) and tries < 2):
            try:
                return cast(IntakeResult, (await self._batch([event], wait=True))[0])
            except Exception as exc:
                failed, tries = exc, tries + 1
        if not is_outage(failed):  # an outage is the queue's to log, once
            log.error(
                "processing %s:%s failed", event.channel.value, event.external_id, exc_info=failed
            )
        return failed

    async def _known(
        self, events: Sequence[InboundEvent], candidates: list[int]
    ) -> dict[int, InboundEventLog]:
        """The log rows of the events the seen-cache knows (one read for all of them). An
        event the cache knows but the database does not (a restored backup) is processed."""
        if self.seen is None or not candidates:
            return {}
        flags = await self.seen.seen([_seen_key(events[i]) for i in candidates])
        known = [i for i, flag in zip(candidates, flags, strict=True) if flag]
        if not known:
            return {}
        keys = [(events[i].channel.value, events[i].external_id) for i in known]
        async with self.db.read() as s:
            by_key = await _log_rows_of(s, keys)
        return {i: by_key[k] for i, k in zip(known, keys, strict=True) if k in by_key}

    async def _batch(
        self, events: Sequence[InboundEvent], *, wait: bool
    ) -> list[IntakeResult | None]:
        """One transaction for `events`: each one's result, or None for an event another
        transaction holds (PostgreSQL, not `wait`): it is left for later, not waited for."""
        now = self.clock()
        region = self.config.default_region
        items = [Item(i, e, event_identities(e, region)) for i, e in enumerate(events)]
        results: dict[int, IntakeResult] = {}
        async with self.db.transaction() as s:
            alloc = IdAllocator(s, sqlite=self.db.is_sqlite)
            if self.db.is_sqlite:
                fresh = await self._claim(s, items, now, results)
                await self.db.lock_identities(s, [k for item in fresh for k in item.lock_keys])
            else:
                items = await self._take(s, items, wait)
                fresh = await self._unlogged(s, items, results)
                # The log rows' ids come with the first round's others, one per event in key
                # order (the ids an INSERT of them all would take).
                alloc.add(InboundEventLog, len(items) if fresh else 0)
            unnumbered = not self.db.is_sqlite
            roles = await roles_of_active(s)
            active = set(roles)
            updates: list[dict[str, Any]] = []
            pending = fresh
            while pending:
                repo = await self._decide_items(s, pending, now, active)
                taken, pending = split(pending)
                rnd = await prepare_round(s, self.db, taken, repo, alloc, active, roles)
                if unnumbered:
                    ordered = sorted(items, key=lambda it: it.key)
                    for item, log_id in zip(
                        ordered, await alloc.take_many(InboundEventLog, len(ordered)), strict=True
                    ):
                        item.log_id = log_id
                    unnumbered = False
                for k, item in enumerate(taken):
                    await breathe(k)
                    results[item.index] = await apply_item(
                        s, self.db, self.config, item, rnd, now, updates
                    )
                await s.flush()
                # Per round: a later round's event may be in the thread of one of these (a
                # call's final stage after its ringing one) and finds it through the log row.
                if self.db.is_sqlite:  # the same, around SQLAlchemy: one trip to its thread
                    writes = Writes()
                    await rnd.sink.flush(s, writes=writes)
                    for table, ids in touched(s, rnd, now).items():
                        writes.update(table, [{"id": i, "modified_at": now} for i in ids])
                    writes.update(LOG, updates)
                    await writes.run(s)
                else:  # the round's rows, modified_at and log rows: one statement
                    conn, out = await driver(s), Together()
                    await rnd.sink.flush(s, out)
                    for table, ids in touched(s, rnd, now).items():
                        out.stamp(table, "modified_at", now, ids)
                    rows = _log_rows(taken, updates)
                    await out.insert(conn, LOG, rows, same={"received_at": now})
                    await out.send(conn)
                updates.clear()
            # Leads and activities went in as multi-row INSERTs, unseen by the ORM's tracking.
            done = [(it, results[it.index]) for it in fresh]
            record(s.sync_session, intake_changes(done, now))
        return [results.get(i) for i in range(len(events))]

    async def _take(self, s: AsyncSession, items: list[Item], wait: bool) -> list[Item]:
        """PostgreSQL: lock each event with its identities until the commit, so that a copy
        of it, or another event of the same person, in another worker's batch is not taken
        at the same time. Waiting (`wait`): all of them, in one statement, in key order
        (batches sharing events wait for each other, never deadlock). Otherwise those no
        other transaction holds, without waiting; an event with a key held elsewhere is left
        for later (a busy caller's events do not hold up the rest of the batch behind
        another worker's whole transaction)."""
        keys = {it.index: [f"event:{it.key[0]}:{it.key[1]}", *it.lock_keys] for it in items}
        every = [k for ks in keys.values() for k in ks]
        if wait:
            await self.db.lock_identities(s, every)
            return items
        held = await self.db.try_lock_identities(s, every)
        return [item for item in items if held.isdisjoint(keys[item.index])] if held else items

    async def _unlogged(
        self, s: AsyncSession, items: Sequence[Item], results: dict[int, IntakeResult]
    ) -> list[Item]:
        """PostgreSQL: the events not processed yet, of those locked (`_take`); an event
        whose log row exists is a duplicate. A copy of an event in another batch waits for
        this one or is left for later, then finds its row (the read is a statement of its
        own, so it sees what committed while it waited). Its row is written once, with its
        outcome (`_log_rows`); the unique (channel, external id) stays the last word."""
        logged = await _logged_of(s, [item.key for item in items])
        for item in items:
            if item.key in logged:
                results[item.index] = duplicate_result(logged[item.key])
        return [item for item in items if item.key not in logged]

    async def _claim(
        self,
        s: AsyncSession,
        items: Sequence[Item],
        now: datetime,
        results: dict[int, IntakeResult],
    ) -> list[Item]:
        """SQLite: claim each event's log row (its outcome written at the end of its round);
        an event whose row exists is a duplicate."""
        same = {"received_at": now, "outcome": "processing", "reason": ""}
        rows = [
            _log_row(item, item.event.to_json()) | same
            for item in sorted(items, key=lambda it: it.key)
        ]
        unique = ("channel", "external_id")
        writes = Writes()
        writes.insert(LOG, rows, skip_conflicts_on=unique, returning=("id", *unique))
        written = (await writes.run(s))[0]
        claimed = {(c, x): i for i, c, x in written}
        fresh = []
        for item in items:
            if item.key in claimed:
                item.log_id = claimed[item.key]
                fresh.append(item)
        dups = [item for item in items if item.key not in claimed]
        if dups:
            by_key = await _log_rows_of(s, [item.key for item in dups])
            for item in dups:
                results[item.index] = duplicate_result(by_key[item.key])
        return fresh

    async def preview(self, event: InboundEvent) -> IntakeResult:
        """The outcome and reason `process` would give `event` now; nothing is written.

        The ids are those of the records it would attach to (none for records it would create).
        Used by dry runs (`leadbot import-csv --dry-run`).
        """
        now = self.clock()
        item = Item(0, event, event_identities(event, self.config.default_region))
        async with self.db.sessions() as s:
            try:
                seen = await _logged(s, event)
                if seen is not None:
                    return duplicate_result(seen)
                await self._decide_items(s, [item], now)
            finally:
                await s.rollback()
        assert item.decision is not None
        decision = item.decision
        outcome, reason = stored_outcome(event, decision)
        return intake_result(outcome, reason, decision, responsible_id=decision.responsible_id)

    async def _decide_items(
        self,
        s: AsyncSession,
        items: Sequence[Item],
        now: datetime,
        active_reps: set[int] | None = None,
    ) -> SqlCandidateRepository:
        return await decide_items(s, items, now, await self._match_settings(s), active_reps)

    def forget_settings(self) -> None:
        self._settings = None

    async def _match_settings(self, s: AsyncSession) -> MatchSettings:
        """The admin's runtime settings, re-read at most every SETTINGS_TTL seconds: a change
        made in /settings reaches every worker process within that time."""
        now = time.monotonic()
        if self._settings is None or now - self._settings[0] > SETTINGS_TTL:
            self._settings = (now, await current_match_settings(s, self.config.match))
        return self._settings[1]


def intake_changes(done: Iterable[tuple[Item, IntakeResult]], now: datetime) -> list[Change]:
    """The records each event created or touched (the activity it wrote, the record it went
    to), for the change feed; intake acts for no rep. An event that only created records
    (a new caller) alters the answers of its own numbers alone; the numbers of the others
    are looked up before the commit (`crm.affected`)."""
    out: list[Change] = []
    for item, r in done:
        created = r.created  # (a few at most: a list is searched as fast as a set is built)
        refs = [
            (kind, ident)
            for kind, ident in (
                ("lead", r.lead_id),
                ("deal", r.deal_id),
                ("contact", r.contact_id),
                ("company", r.company_id),
            )
            if ident is not None
        ]
        numbers = _event_numbers(item) if all(ref in created for ref in refs) else None
        for ref in refs:
            action = "created" if ref in created else "changed"
            out.append(Change(ref[0], ref[1], action, None, now, (), r.responsible_id, numbers))
        if r.activity_id is not None:
            activity = Change("activity", r.activity_id, "created", None, now, (), r.responsible_id)
            out.append(activity)
    return out


def _log_rows(items: Sequence[Item], updates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The log rows of a round's events (PostgreSQL): each event with its outcome (`updates`,
    by log id), in key order."""
    outcomes = {u["id"]: u for u in updates}
    return [
        _log_row(item, payload_text(item.event)) | outcomes[item.log_id]
        for item in sorted(items, key=lambda it: it.key)
    ]


def _log_row(item: Item, payload: Any) -> dict[str, Any]:
    """What an event's log row says of the event itself (`payload`: the event's JSON, as
    `to_json` or as its text)."""
    return {
        "channel": item.key[0],
        "external_id": item.key[1],
        "occurred_at": item.event.occurred_at,
        "direction": str(item.event.direction),
        "payload": payload,
    }


def _event_numbers(item: Item) -> tuple[str, ...]:
    ids = item.ids
    return tuple(dict.fromkeys(p.e164 for p in (*ids.phones, *ids.hint_phones) if p.e164))


def _seen_key(event: InboundEvent) -> str:
    return f"{event.channel.value}:{event.external_id}"


@cache
def _log_rows_by_keys(pg: bool) -> Any:
    """The log rows whose channel and external id are among the parameters "channels" and
    "external_ids" (cross pairs too, as `pairs_in`'s), built once: no construction nor cache
    key per batch."""
    log = InboundEventLog
    return select(log).where(
        among(log.channel, "channels", pg=pg), among(log.external_id, "external_ids", pg=pg)
    )


async def _log_rows_of(
    s: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], InboundEventLog]:
    """The event log rows of these (channel, external id) keys, by key."""
    params = {
        "channels": sorted({c for c, _ in keys}),
        "external_ids": sorted({x for _, x in keys}),
    }
    rows = await s.scalars(_log_rows_by_keys(is_pg(s)), params)
    wanted = set(keys)
    return {k: r for r in rows if (k := (r.channel, r.external_id)) in wanted}


# The log rows of the parameters' (channel, external id) pairs (cross pairs too), with what a
# duplicate's answer reads of them.
_LOGGED = (
    "SELECT channel, external_id, id, outcome, lead_id, deal_id, contact_id, company_id,"
    f" activity_id FROM {LOG.name}"
    " WHERE channel = ANY($1::varchar[]) AND external_id = ANY($2::varchar[])"
)


async def _logged_of(
    s: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Logged]:
    """PostgreSQL: `_log_rows_of` straight through asyncpg, the columns an answer needs
    alone (not the payload, nor ORM objects)."""
    channels, external_ids = sorted({c for c, _ in keys}), sorted({x for _, x in keys})
    wanted = set(keys)
    return {
        (r[0], r[1]): Logged(*r[2:])
        for r in await fetch(s, _LOGGED, channels, external_ids)
        if (r[0], r[1]) in wanted
    }


async def _logged(s: AsyncSession, event: InboundEvent) -> InboundEventLog | None:
    """The event log row of an event already processed (unique channel + external id)."""
    return await s.scalar(
        select(InboundEventLog).where(
            InboundEventLog.channel == event.channel.value,
            InboundEventLog.external_id == event.external_id,
        )
    )
