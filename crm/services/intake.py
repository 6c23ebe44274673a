"""Intake: apply the matcher's decision to inbound events, exactly once.

Events come in batches (whatever a queue read returned; one event is a batch of one). One
transaction per batch writes the event log rows (their unique (channel, external id) is the
truth about "already processed"), the records the decisions create or change, the activities
and the outbox rows for rep notifications. Events touching the same identity are serialized
across workers by `Database.lock_identities`, so concurrent events never create two leads for
one person.

Within a batch the work goes in rounds: one round looks up everything about its events in a
few queries, decides each event, and writes all their records in one flush. An event that
shares a phone / email / call / thread or a matched record with an earlier event of the round
waits for the next round, which sees what the earlier one wrote: the result is the same as
one event after the other, in arrival order.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig
from crm.db import Database, pairs_in
from crm.dto import IntakeResult
from crm.ids import IdAllocator
from crm.models import (
    Activity,
    Company,
    Contact,
    Deal,
    InboundEventLog,
    Lead,
    OutboxMessage,
    Rep,
    utcnow,
)
from crm.outage import is_outage
from crm.repository import SqlCandidateRepository
from crm.services.calls import apply_call_rules, call_number, open_callbacks
from crm.services.common import RowSink, add_comms, add_timeline, bind_activity
from crm.services.exceptions import exception_hits
from crm.services.flags import recompute_client_flags
from crm.services.pipelines import pipeline_by_code, stage_by_code
from crm.services.reps import next_in_queue
from crm.services.runtime import current_match_settings
from matching.decide import decide
from matching.event import Channel, Direction, InboundEvent
from matching.finder import find_candidates
from matching.identities import event_identities
from matching.model import (
    Candidates,
    Decision,
    EventIdentities,
    Identity,
    MatchSettings,
    Outcome,
)

log = logging.getLogger(__name__)

SETTINGS_TTL = 2.0

ACTIVITY_KIND = {
    Channel.EMAIL: "email",
    Channel.CALL: "call",
    Channel.TELEGRAM: "message",
    Channel.WHATSAPP: "message",
    Channel.WEBFORM: "webform",
}
SOURCE = {
    Channel.EMAIL: "EMAIL",
    Channel.CALL: "CALL",
    Channel.TELEGRAM: "TELEGRAM",
    Channel.WHATSAPP: "WHATSAPP",
    Channel.WEBFORM: "WEBFORM",
    Channel.IMPORT: "IMPORT",
}


class SeenCache(Protocol):
    """Optional fast path for duplicates (Redis SET NX); the database stays the truth."""

    async def seen(self, keys: Sequence[str]) -> list[bool]: ...

    async def mark(self, keys: Sequence[str]) -> None: ...


@dataclass
class _Applied:
    lead_id: int | None = None
    deal_id: int | None = None
    contact_id: int | None = None
    company_id: int | None = None
    activity_id: int | None = None
    activity_created: bool = False
    task_id: int | None = None
    responsible_id: int | None = None
    created: list[tuple[str, int]] = field(default_factory=list)
    notify: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class _Item:
    """One event on its way through a batch."""

    index: int
    event: InboundEvent
    ids: EventIdentities
    log_id: int = 0
    cands: Candidates = field(default_factory=Candidates)
    decision: Decision | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.event.channel.value, self.event.external_id)

    def lock_keys(self) -> list[str]:
        keys = [i.key for i in self.ids.matchable()]
        call_id = self.event.meta.get("call_id")
        if call_id:  # events of one call share its activity, even with no number
            keys.append(f"call:{self.event.channel.value}:{call_id}")
        return keys

    def conflict_keys(self) -> set[str]:
        """What this event reads or writes that an earlier event of its round could change."""
        e = self.event
        keys = set(self.lock_keys())
        refs = (e.meta.get("in_reply_to"), *e.meta.get("references", ()))
        keys.update(f"msg:{e.channel.value}:{r}" for r in (e.external_id, *refs) if r)
        c = self.cands
        for client in (*c.contacts, *c.companies):
            keys.add(f"{client.kind.value}:{client.id}")
            keys.update(f"deal:{d.id}" for d in client.open_deals)
            keys.update(f"lead:{lead.id}" for lead in client.open_repeat_leads)
        keys.update(f"lead:{lead.id}" for lead in c.leads)
        d = self.decision
        if d is not None:
            for kind, ident in (
                ("lead", d.lead_id),
                ("deal", d.deal_id),
                ("contact", d.contact_id),
                ("company", d.company_id),
                ("lead", c.thread_lead_id),
                ("deal", c.thread_deal_id),
            ):
                if ident is not None:
                    keys.add(f"{kind}:{ident}")
        return keys


def _split(items: Sequence[_Item]) -> tuple[list[_Item], list[_Item]]:
    """The events that can go in this round, and those that wait for a later one: an event
    waits when it shares a key with any earlier event still in the batch."""
    taken: list[_Item] = []
    waiting: list[_Item] = []
    blocked: set[str] = set()
    for item in items:
        keys = item.conflict_keys()
        (waiting if keys & blocked else taken).append(item)
        blocked |= keys
    return taken, waiting


class _Round:
    """What one round fetched in advance for its events' writes."""

    def __init__(
        self,
        repo: SqlCandidateRepository,
        alloc: IdAllocator,
        active_reps: set[int],
        calls: dict[tuple[str, str], Activity],
        callbacks: dict[str, list[Activity]],
        picks: dict[tuple[str, tuple[int, ...]], deque[int]],
    ) -> None:
        self.repo = repo
        self.alloc = alloc
        self.active_reps = active_reps
        self.calls = calls
        self.callbacks = callbacks
        self.picks = picks  # round-robin responsibles for new records, by queue
        self.sink = RowSink()  # write-only rows, inserted table by table at the round's end


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
            firsts.setdefault((event.channel.value, event.external_id), i)
        cached = await self._known(events, list(firsts.values()))
        for i, row in cached.items():
            results[i] = _duplicate_result(row)
        todo = [i for i in firsts.values() if results[i] is None]
        if todo:
            done: list[IntakeResult | Exception]
            try:
                done = list(await self._batch([events[i] for i in todo]))
            except Exception as exc:
                if is_outage(exc):  # every event would meet it: the queue retries them later
                    done = [exc] * len(todo)
                elif len(todo) == 1:
                    done = [await self._alone(events[todo[0]], exc)]
                else:
                    log.warning("batch of %d events failed (%s); one by one", len(todo), exc)
                    done = [await self._alone(events[i]) for i in todo]
            for i, result in zip(todo, done, strict=True):
                results[i] = result
            if self.seen is not None:
                ok = [i for i in todo if isinstance(results[i], IntakeResult)]
                await self.seen.mark([_seen_key(events[i]) for i in ok])
        for i, event in enumerate(events):
            if results[i] is None:
                first = results[firsts[(event.channel.value, event.external_id)]]
                results[i] = _repeated(first) if isinstance(first, IntakeResult) else first
        return [r for r in results if r is not None]

    async def _alone(
        self, event: InboundEvent, failed: Exception | None = None
    ) -> IntakeResult | Exception:
        """One event in its own transaction, tried twice when the database refused it (a
        unique conflict: another worker wrote the same call's activity first, found the second
        time; a deadlock with another batch)."""
        tries = 0 if failed is None else 1
        while failed is None or (isinstance(failed, DBAPIError) and tries < 2):
            try:
                return (await self._batch([event]))[0]
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

    async def _batch(self, events: Sequence[InboundEvent]) -> list[IntakeResult]:
        now = self.clock()
        region = self.config.default_region
        items = [_Item(i, e, event_identities(e, region)) for i, e in enumerate(events)]
        results: dict[int, IntakeResult] = {}
        async with self.db.transaction() as s:
            fresh = await self._log_rows(s, items, now, results)
            await self.db.lock_identities(s, [k for item in fresh for k in item.lock_keys()])
            alloc = IdAllocator(s, sqlite=self.db.is_sqlite)
            active = set(await s.scalars(select(Rep.id).where(Rep.active.is_(True))))
            updates: list[dict[str, Any]] = []
            pending = fresh
            while pending:
                repo = await self._decide_items(s, pending, now, active)
                taken, pending = _split(pending)
                rnd = await self._prepare_round(s, taken, repo, alloc, active)
                for item in taken:
                    results[item.index] = await self._apply(s, item, rnd, now, updates)
                await s.flush()
                await rnd.sink.flush(s)
            if updates:
                await s.execute(update(InboundEventLog), updates)
        return [results[i] for i in range(len(items))]

    async def _log_rows(
        self,
        s: AsyncSession,
        items: Sequence[_Item],
        now: datetime,
        results: dict[int, IntakeResult],
    ) -> list[_Item]:
        """Claim each event's log row; an event whose row exists is a duplicate. The rows go
        in key order, so two batches that share events wait for each other, never deadlock."""
        rows = [
            {
                "channel": item.event.channel.value,
                "external_id": item.event.external_id,
                "received_at": now,
                "occurred_at": item.event.occurred_at,
                "direction": item.event.direction.value,
                "outcome": "processing",
                "reason": "",
                "payload": item.event.to_json(),
            }
            for item in sorted(items, key=lambda it: it.key)
        ]
        stmt = (
            self.db.insert(InboundEventLog)
            .on_conflict_do_nothing(index_elements=["channel", "external_id"])
            .returning(InboundEventLog.id, InboundEventLog.channel, InboundEventLog.external_id)
        )
        claimed = {(c, x): i for i, c, x in await s.execute(stmt, rows)}
        fresh = []
        for item in items:
            if item.key in claimed:
                item.log_id = claimed[item.key]
                fresh.append(item)
        dups = [item for item in items if item.key not in claimed]
        if dups:
            by_key = await _log_rows_of(s, [item.key for item in dups])
            for item in dups:
                results[item.index] = _duplicate_result(by_key[item.key])
        return fresh

    async def preview(self, event: InboundEvent) -> IntakeResult:
        """The outcome and reason `process` would give `event` now; nothing is written.

        The ids are those of the records it would attach to (none for records it would create).
        Used by dry runs (`leadbot import-csv --dry-run`).
        """
        now = self.clock()
        item = _Item(0, event, event_identities(event, self.config.default_region))
        async with self.db.sessions() as s:
            try:
                seen = await _logged(s, event)
                if seen is not None:
                    return _duplicate_result(seen)
                await self._decide_items(s, [item], now)
            finally:
                await s.rollback()
        assert item.decision is not None
        decision = item.decision
        outcome, reason = _stored_outcome(event, decision)
        return _result(outcome, reason, decision, responsible_id=decision.responsible_id)

    async def _decide_items(
        self,
        s: AsyncSession,
        items: Sequence[_Item],
        now: datetime,
        active_reps: set[int] | None = None,
    ) -> SqlCandidateRepository:
        """Decide every item from one fresh look at the database (a handful of queries)."""
        settings = await self._match_settings(s)
        repo = SqlCandidateRepository(s, active_reps)
        await repo.preload(i for item in items for i in item.ids.matchable())
        listed = set(
            await exception_hits(s, _union(item.ids.exception_checked() for item in items))
        )
        for item in items:
            cands = await find_candidates(repo, item.ids, settings)
            item.cands = await self._thread(s, item.event, cands)
            hits = [i for i in item.ids.exception_checked() if i in listed]
            item.decision = decide(item.event, item.ids, item.cands, settings, hits, now)
        return repo

    async def _prepare_round(
        self,
        s: AsyncSession,
        items: Sequence[_Item],
        repo: SqlCandidateRepository,
        alloc: IdAllocator,
        active: set[int],
    ) -> _Round:
        """Fetch what the round's writes read (call activities, open call-back tasks) and
        reserve the ids of the records it creates."""
        call_keys = [
            (item.event.channel.value, str(item.event.meta["call_id"]))
            for item in items
            if item.event.meta.get("call_id")
            and item.decision is not None
            and item.decision.outcome is not Outcome.IGNORED
        ]
        calls: dict[tuple[str, str], Activity] = {}
        if call_keys:
            found = await s.scalars(
                select(Activity).where(pairs_in(Activity.channel, Activity.external_id, call_keys))
            )
            wanted = set(call_keys)
            calls = {
                key: a for a in found if (key := (a.channel or "", a.external_id or "")) in wanted
            }
        phones = [
            p
            for item in items
            if item.event.channel is Channel.CALL
            and item.decision is not None
            and item.decision.outcome is not Outcome.IGNORED
            and (p := call_number(item.ids)) is not None
        ]
        callbacks = await open_callbacks(s, phones) if phones else {}
        need: dict[Any, int] = {Lead: 0, Deal: 0, Contact: 0, Company: 0, Activity: 0}
        wants: dict[tuple[str, tuple[int, ...]], int] = {}
        for item in items:
            _count_new_rows(item, need, calls, callbacks)
            d = item.decision
            if d is not None and _creates(item.event, d) and d.responsible_id not in active:
                queue = _queue_of(item.event)
                wants[queue] = wants.get(queue, 0) + 1
        await alloc.reserve(need)
        picks = {q: deque(await self._round_robin(s, q, n, active)) for q, n in wants.items()}
        return _Round(repo, alloc, active, calls, callbacks, picks)

    async def _round_robin(
        self, s: AsyncSession, queue: tuple[str, tuple[int, ...]], n: int, active: set[int]
    ) -> list[int]:
        """The responsibles of `n` new records from one distribution queue."""
        name, members = queue
        if not active.intersection(members or active):
            return []  # nobody to hand them to
        if self.db.is_sqlite:  # one writer at a time anyway
            return await next_in_queue(s, name, members, n)
        # Its own short transaction, so concurrent new leads do not wait on each other's
        # commit; a pick whose lead then rolls back only skips a turn.
        for attempt in range(3):
            try:
                async with self.db.transaction() as rr:
                    return await next_in_queue(rr, name, members, n)
            except IntegrityError:
                if attempt == 2:
                    raise
        return []

    async def _apply(
        self,
        s: AsyncSession,
        item: _Item,
        rnd: _Round,
        now: datetime,
        updates: list[dict[str, Any]],
    ) -> IntakeResult:
        event, ids, decision = item.event, item.ids, item.decision
        assert decision is not None
        applied = await _Apply(s, self.db, self.config, event, ids, decision, now, rnd).run()
        if event.channel is Channel.CALL and decision.outcome is not Outcome.IGNORED:
            phone = call_number(ids)
            await apply_call_rules(
                s,
                event,
                ids,
                applied_bindings(applied),
                now,
                applied,
                open_tasks=rnd.callbacks.get(phone, []) if phone else None,
                new_id=lambda: rnd.alloc.take(Activity),
                sink=rnd.sink,
            )
        outcome, reason = _stored_outcome(event, decision)
        updates.append(
            {
                "id": item.log_id,
                "outcome": outcome,
                "reason": reason,
                "lead_id": applied.lead_id,
                "deal_id": applied.deal_id,
                "contact_id": applied.contact_id,
                "company_id": applied.company_id,
                "activity_id": applied.activity_id,
            }
        )
        for kind, payload in _one_card_per_event(applied.notify):
            self._outbox(rnd.sink, kind, payload, item, now, decision, applied)
        log.info("event %s:%s → %s (%s)", event.channel.value, event.external_id, outcome, reason)
        return _result(
            outcome,
            reason,
            applied,
            event_log_id=item.log_id,
            activity_id=applied.activity_id,
            task_id=applied.task_id,
            created=applied.created,
            responsible_id=applied.responsible_id,
        )

    def forget_settings(self) -> None:
        self._settings = None

    async def _match_settings(self, s: AsyncSession) -> MatchSettings:
        """The admin's runtime settings, re-read at most every SETTINGS_TTL seconds: a change
        made in /settings reaches every worker process within that time."""
        now = time.monotonic()
        if self._settings is None or now - self._settings[0] > SETTINGS_TTL:
            self._settings = (now, await current_match_settings(s, self.config.match))
        return self._settings[1]

    async def _thread(self, s: AsyncSession, event: InboundEvent, cands: Candidates) -> Candidates:
        """A mail reply goes where its thread lives, if that lead / deal is still open."""
        refs = [
            str(r) for r in (event.meta.get("in_reply_to"), *event.meta.get("references", ())) if r
        ]
        if not refs:
            return cands
        rows = await s.execute(
            select(InboundEventLog.lead_id, InboundEventLog.deal_id)
            .where(
                InboundEventLog.channel == event.channel.value,
                InboundEventLog.external_id.in_(refs),
            )
            .order_by(InboundEventLog.id.desc())
        )
        for lead_id, deal_id in rows:
            if deal_id is not None:
                deal = await s.get(Deal, deal_id)
                if deal is not None and deal.stage_semantic == "process":
                    return replace(cands, thread_deal_id=deal_id)
            if lead_id is not None:
                lead = await s.get(Lead, lead_id)
                if lead is not None and lead.status_semantic == "process":
                    return replace(cands, thread_lead_id=lead_id)
        return cands

    def _outbox(
        self,
        sink: RowSink,
        kind: str,
        payload: dict[str, Any],
        item: _Item,
        now: datetime,
        decision: Decision,
        applied: _Applied,
    ) -> None:
        body = {
            "event_id": item.log_id,
            "channel": item.event.channel.value,
            "outcome": decision.outcome.value,
            "reason": decision.reason,
            "lead_id": applied.lead_id,
            "deal_id": applied.deal_id,
            "contact_id": applied.contact_id,
            "company_id": applied.company_id,
            "activity_id": applied.activity_id,
            **payload,
        }
        sink.add(
            OutboxMessage,
            rep_id=applied.responsible_id,
            kind=kind,
            payload=body,
            created_at=now,
            next_attempt_at=now,
        )


_NEW_RECORD_CARDS = frozenset({"new_lead", "repeat_lead", "new_deal", "repeat_deal"})


def _one_card_per_event(
    notify: list[tuple[str, dict[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    """A missed call makes a call-back task: a new record's card already shows it, else the
    missed-call notice stands for the call's activity. Reps get one message per event."""
    kinds = {kind for kind, _ in notify}
    if "missed_call" not in kinds:
        return notify
    drop = "missed_call" if kinds & _NEW_RECORD_CARDS else "activity"
    return [(kind, payload) for kind, payload in notify if kind != drop]


def _seen_key(event: InboundEvent) -> str:
    return f"{event.channel.value}:{event.external_id}"


def _union(groups: Iterable[Iterable[Identity]]) -> list[Identity]:
    return list(dict.fromkeys(i for group in groups for i in group))


def _result(
    outcome: str,
    reason: str,
    refs: Decision | _Applied | InboundEventLog | IntakeResult,
    **extra: Any,
) -> IntakeResult:
    """A result naming the records `refs` names."""
    return IntakeResult(
        outcome=outcome,
        reason=reason,
        lead_id=refs.lead_id,
        deal_id=refs.deal_id,
        contact_id=refs.contact_id,
        company_id=refs.company_id,
        **extra,
    )


def _duplicate_of(
    event_id: int | None, outcome: str, refs: InboundEventLog | IntakeResult
) -> IntakeResult:
    reason = f"already processed as event #{event_id} ({outcome})"
    return _result(
        Outcome.DUPLICATE.value,
        reason,
        refs,
        event_log_id=event_id,
        activity_id=refs.activity_id,
    )


def _duplicate_result(row: InboundEventLog) -> IntakeResult:
    return _duplicate_of(row.id, row.outcome, row)


def _repeated(first: IntakeResult) -> IntakeResult:
    """The answer for a second copy of an event in the same batch."""
    if first.outcome == Outcome.DUPLICATE.value:
        return first
    return _duplicate_of(first.event_log_id, first.outcome, first)


def _queue_of(event: InboundEvent) -> tuple[str, tuple[int, ...]]:
    """The distribution queue for an event's new records: its line's own, or the default."""
    queue = tuple(int(r) for r in event.meta.get("queue") or ())
    return (f"{event.channel.value}:{event.line}" if queue else "default", queue)


def _creates(event: InboundEvent, d: Decision) -> bool:
    """Whether the decision makes a new record that needs a responsible."""
    if _imports_contact(event, d):
        return d.contact_id is None and d.company_id is None
    return d.outcome in _CREATING


def _count_new_rows(
    item: _Item,
    need: dict[Any, int],
    calls: dict[tuple[str, str], Activity],
    callbacks: dict[str, list[Activity]],
) -> None:
    """The records the item's decision will create, so their ids come in one reservation."""
    d, e = item.decision, item.event
    if d is None or d.outcome is Outcome.IGNORED:
        return
    if _imports_contact(e, d):
        if d.contact_id is None and d.company_id is None:
            need[Contact] += 1
            need[Company] += 1 if e.company_name else 0
    elif d.outcome in (Outcome.NEW_LEAD, Outcome.NEW_REPEAT_LEAD):
        need[Lead] += 1
    elif d.outcome in (Outcome.NEW_DEAL, Outcome.NEW_REPEAT_DEAL):
        need[Deal] += 1
        if d.outcome is Outcome.NEW_DEAL:
            need[Contact] += 1
            need[Company] += 1 if e.company_name else 0
    if e.channel in ACTIVITY_KIND:
        call_id = e.meta.get("call_id")
        if not (call_id and (e.channel.value, str(call_id)) in calls):
            need[Activity] += 1
    phone = call_number(item.ids)
    if e.channel is Channel.CALL and e.meta.get("missed") and phone and not callbacks.get(phone):
        need[Activity] += 1


# Outcomes that create a lead or a deal; a contact import turns them into a contact instead.
_CREATING = frozenset(
    {Outcome.NEW_LEAD, Outcome.NEW_REPEAT_LEAD, Outcome.NEW_DEAL, Outcome.NEW_REPEAT_DEAL}
)


def _imports_contact(event: InboundEvent, decision: Decision) -> bool:
    return event.meta.get("import_as") == "contact" and decision.outcome in _CREATING


def _stored_outcome(event: InboundEvent, decision: Decision) -> tuple[str, str]:
    """Outcome and reason as logged and returned; a contact import never makes a lead/deal."""
    if not _imports_contact(event, decision):
        return decision.outcome.value, decision.reason
    why = decision.reason.partition(" → ")[0]
    if decision.contact_id is None and decision.company_id is None:
        return "new_contact", f"{why} → new contact (contact import)"
    return Outcome.ATTACHED_CLIENT.value, f"{why} → details merged into the client (contact import)"


# How far a call has got; events may arrive out of order (retries, several workers).
_STAGE_RANK = {"ringing": 0, "answered": 1, "ended": 2, "missed": 2}
_OUTCOME_KEYS = ("stage", "missed", "disposition")


def merge_call_meta(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Later events of a call refine its activity (duration, disposition, recording); an
    earlier stage that arrives late fills gaps but never takes the call's outcome back."""
    late = _STAGE_RANK.get(str(new.get("stage")), -1) < _STAGE_RANK.get(str(old.get("stage")), -1)
    merged = {**old, **{k: v for k, v in new.items() if v is not None}}
    if late:
        for key in _OUTCOME_KEYS:
            if key in old:
                merged[key] = old[key]
    return merged


async def _log_rows_of(
    s: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], InboundEventLog]:
    """The event log rows of these (channel, external id) keys, by key."""
    rows = await s.scalars(
        select(InboundEventLog).where(
            pairs_in(InboundEventLog.channel, InboundEventLog.external_id, keys)
        )
    )
    wanted = set(keys)
    return {k: r for r in rows if (k := (r.channel, r.external_id)) in wanted}


async def _logged(s: AsyncSession, event: InboundEvent) -> InboundEventLog | None:
    """The event log row of an event already processed (unique channel + external id)."""
    return await s.scalar(
        select(InboundEventLog).where(
            InboundEventLog.channel == event.channel.value,
            InboundEventLog.external_id == event.external_id,
        )
    )


def applied_bindings(applied: _Applied) -> list[tuple[str, int | None]]:
    return [
        ("deal", applied.deal_id),
        ("lead", applied.lead_id),
        ("company", applied.company_id),
        ("contact", applied.contact_id),
    ]


class _Apply:
    """Turns one decision into records; runs inside the intake transaction."""

    def __init__(
        self,
        s: AsyncSession,
        db: Database,
        config: CrmConfig,
        event: InboundEvent,
        ids: EventIdentities,
        decision: Decision,
        now: datetime,
        rnd: _Round,
    ) -> None:
        self.s, self.db, self.config, self.rnd = s, db, config, rnd
        self.event, self.ids, self.d, self.now = event, ids, decision, now
        self.out = _Applied(contact_id=decision.contact_id, company_id=decision.company_id)
        self.labels: dict[str, str | None] = {h.id: h.username for h in event.handles}

    async def run(self) -> _Applied:
        o = self.d.outcome
        if o is Outcome.IGNORED:
            return self.out
        if o in (Outcome.NEW_REPEAT_LEAD, Outcome.NEW_REPEAT_DEAL) and self.out.company_id is None:
            # A known contact who works for a company: the new record belongs to both.
            contact = await self.s.get(Contact, self.out.contact_id or 0)
            self.out.company_id = contact.company_id if contact else None
        if _imports_contact(self.event, self.d):
            await self._import_contact()
        elif o is Outcome.NEW_LEAD:
            await self._new_lead(repeat=False)
        elif o is Outcome.NEW_REPEAT_LEAD:
            await self._new_lead(repeat=True)
        elif o is Outcome.NEW_DEAL:
            await self._new_deal(repeat=False)
        elif o is Outcome.NEW_REPEAT_DEAL:
            await self._new_deal(repeat=True)
        elif o is Outcome.ATTACHED_LEAD:
            await self._attach_lead()
        elif o is Outcome.ATTACHED_DEAL:
            await self._attach_deal()
        elif o is Outcome.ATTACHED_CLIENT:
            await self._attach_client()
        await self._activity()
        self._notify()
        return self.out

    # --- creating -------------------------------------------------------------------------

    async def _responsible(self) -> int | None:
        if self.d.responsible_id is not None and await self._active(self.d.responsible_id):
            return self.d.responsible_id
        picks = self.rnd.picks.get(_queue_of(self.event))
        return picks.popleft() if picks else None  # none: it waits in the unassigned queue

    async def _active(self, rep_id: int) -> bool:
        return rep_id in self.rnd.active_reps

    def _title(self) -> str:
        e = self.event
        if e.meta.get("title"):
            return str(e.meta["title"])[:300]
        who = e.display_name or " ".join(p for p in (e.first_name, e.last_name) if p)
        number = e.phones[0] if e.phones else None
        if e.channel is Channel.CALL:
            return f"{number or 'unknown number'} — incoming call"
        if e.channel is Channel.EMAIL:
            return (e.subject or f"Lead from e-mail {e.emails[0] if e.emails else who}")[:300]
        if e.channel is Channel.WEBFORM:
            return f"Web form {e.line or ''}: {who or number or (e.emails or ('',))[0]}"[:300]
        label = {Channel.TELEGRAM: "Telegram", Channel.WHATSAPP: "WhatsApp"}.get(e.channel)
        if label:
            return f"{label}: {who or number or 'new customer'}"[:300]
        return (who or e.company_name or number or (e.emails or ("Import",))[0])[:300]

    def _name(self) -> str | None:
        e = self.event
        joined = " ".join(p for p in (e.first_name, e.last_name) if p)
        return (e.display_name or joined or None) and (e.display_name or joined)[:300]

    async def _new_lead(self, repeat: bool) -> None:
        status = self.config.lead_statuses[0]
        resp = await self._responsible()
        lead_id = await self.rnd.alloc.take(Lead)
        # Written with the round's other rows: nothing reads the new lead back in this round.
        self.rnd.sink.add(
            Lead,
            id=lead_id,
            title=self._title(),
            status=status.code,
            status_semantic=status.semantic,
            source=self.event.source or SOURCE[self.event.channel],
            is_return_customer=repeat,
            name=self._name(),
            company_title=self.event.company_name,
            contact_id=self.out.contact_id if repeat else None,
            company_id=self.out.company_id if repeat else None,
            responsible_id=resp,
            utm=self.event.meta.get("utm") or None,
            created_at=self.now,
            modified_at=self.now,
        )
        if repeat:
            await self._merge_into_client()
        else:
            await add_comms(
                self.s,
                "lead",
                lead_id,
                self.ids,
                handle_labels=self.labels,
                fresh=True,
                sink=self.rnd.sink,
            )
        add_timeline(
            self.s,
            "lead",
            lead_id,
            "created",
            None,
            after={"reason": self.d.reason},
            sink=self.rnd.sink,
        )
        self.out.lead_id, self.out.responsible_id = lead_id, resp
        self.out.created.append(("lead", lead_id))

    async def _new_deal(self, repeat: bool) -> None:
        resp = await self._responsible()
        if not repeat:
            await self._new_client(resp)
        else:
            await self._merge_into_client()
        pipeline = await pipeline_by_code(self.s, self.event.meta.get("pipeline"))
        stage = await stage_by_code(self.s, pipeline, None)
        deal = Deal(
            id=await self.rnd.alloc.take(Deal),
            title=self._title(),
            pipeline_id=pipeline.id,
            stage_id=stage.id,
            stage_semantic=stage.semantic,
            currency=self.config.currency,
            contact_id=self.out.contact_id,
            company_id=self.out.company_id,
            origin_repeat=repeat,
            responsible_id=resp,
            source=self.event.source or SOURCE[self.event.channel],
            created_at=self.now,
            modified_at=self.now,
        )
        self.s.add(deal)
        add_timeline(
            self.s,
            "deal",
            deal.id,
            "created",
            None,
            after={"reason": self.d.reason},
            sink=self.rnd.sink,
        )
        await recompute_client_flags(self.s, deal.contact_id, deal.company_id)
        self.out.deal_id, self.out.responsible_id = deal.id, resp
        self.out.created.append(("deal", deal.id))

    async def _new_client(self, resp: int | None) -> None:
        """A contact with the event's comms, and its company when the event names one."""
        if self.event.company_name:
            company = Company(
                id=await self.rnd.alloc.take(Company),
                title=self.event.company_name[:300],
                responsible_id=resp,
                created_at=self.now,
                modified_at=self.now,
            )
            self.s.add(company)
            self.out.company_id = company.id
            self.out.created.append(("company", company.id))
        contact = Contact(
            id=await self.rnd.alloc.take(Contact),
            name=self._name() or self._title(),
            first_name=self.event.first_name,
            last_name=self.event.last_name,
            company_id=self.out.company_id,
            responsible_id=resp,
            created_at=self.now,
            modified_at=self.now,
        )
        self.s.add(contact)
        await add_comms(
            self.s,
            "contact",
            contact.id,
            self.ids,
            handle_labels=self.labels,
            fresh=True,
            sink=self.rnd.sink,
        )
        self.out.contact_id = contact.id
        self.out.created.append(("contact", contact.id))

    async def _import_contact(self) -> None:
        """Contact import: a new contact for an unknown person, else merge into the client."""
        if self.out.contact_id is None and self.out.company_id is None:
            resp = await self._responsible()
            await self._new_client(resp)
            self.out.responsible_id = resp
        else:
            await self._attach_client()

    # --- attaching ------------------------------------------------------------------------

    async def _attach_lead(self) -> None:
        assert self.d.lead_id is not None
        lead = await self.s.get(Lead, self.d.lead_id)
        assert lead is not None
        if self.d.link_lead_to_client:
            lead.contact_id = lead.contact_id or self.d.contact_id
            lead.company_id = lead.company_id or self.d.company_id
            # A lead linked to a client is a repeat lead (R4.2): it converts into a deal only,
            # so the client is never duplicated.
            lead.is_return_customer = True
            add_timeline(
                self.s,
                "lead",
                lead.id,
                "linked",
                None,
                after={"contact_id": lead.contact_id, "company_id": lead.company_id},
                sink=self.rnd.sink,
            )
        if self.d.merge_into_lead:
            added = await add_comms(
                self.s,
                "lead",
                lead.id,
                self.ids,
                include_invalid=False,
                handle_labels=self.labels,
                held=self.rnd.repo.holds("lead", lead.id),
                sink=self.rnd.sink,
            )
            filled = {}
            if not lead.name and self._name():
                lead.name = filled["name"] = self._name()
            if not lead.company_title and self.event.company_name:
                lead.company_title = filled["company_title"] = self.event.company_name[:300]
            if added or filled:
                add_timeline(
                    self.s,
                    "lead",
                    lead.id,
                    "merged",
                    None,
                    after={"added": added, **filled},
                    sink=self.rnd.sink,
                )
        lead.modified_at = self.now
        self.out.lead_id = lead.id
        self.out.contact_id = self.out.contact_id or lead.contact_id
        self.out.company_id = self.out.company_id or lead.company_id
        self.out.responsible_id = lead.responsible_id
        await self._merge_into_client()

    async def _attach_deal(self) -> None:
        assert self.d.deal_id is not None
        deal = await self.s.get(Deal, self.d.deal_id)
        assert deal is not None
        deal.modified_at = self.now
        self.out.deal_id = deal.id
        self.out.contact_id = self.out.contact_id or deal.contact_id
        self.out.company_id = self.out.company_id or deal.company_id
        self.out.responsible_id = deal.responsible_id
        await self._merge_into_client()

    async def _attach_client(self) -> None:
        owner = await self._client_row()
        if owner is not None:
            owner.modified_at = self.now
            self.out.responsible_id = owner.responsible_id
        await self._merge_into_client()

    async def _client_row(self) -> Contact | Company | None:
        if self.out.contact_id is not None:
            return await self.s.get(Contact, self.out.contact_id)
        if self.out.company_id is not None:
            return await self.s.get(Company, self.out.company_id)
        return None

    async def _merge_into_client(self) -> None:
        """New phones / emails / messenger ids go onto the client; nothing is overwritten."""
        if self.event.direction is Direction.OUTGOING:
            return
        owner_type, owner_id = (
            ("contact", self.out.contact_id)
            if self.out.contact_id is not None
            else ("company", self.out.company_id)
        )
        if owner_id is None:
            return
        added = await add_comms(
            self.s,
            owner_type,
            owner_id,
            self.ids,
            include_invalid=False,
            handle_labels=self.labels,
            held=self.rnd.repo.holds(owner_type, owner_id),
            sink=self.rnd.sink,
        )
        if added:
            add_timeline(
                self.s,
                owner_type,
                owner_id,
                "merged",
                None,
                after={"added": added},
                sink=self.rnd.sink,
            )

    # --- the activity and notifications ---------------------------------------------------

    async def _activity(self) -> None:
        kind = ACTIVITY_KIND.get(self.event.channel)
        if kind is None:
            return
        e = self.event
        ext = str(e.meta.get("call_id") or e.external_id)
        # Several events of one call share one activity.
        act = self.rnd.calls.get((e.channel.value, ext)) if e.meta.get("call_id") else None
        fresh = act is None
        meta = {k: v for k, v in e.meta.items() if k not in ("queue", "body")}
        if e.attachments:
            meta["attachments"] = [
                {"name": a.name, "content_type": a.content_type, "size": a.size}
                for a in e.attachments
            ]
        if act is None:
            counterparty = next((p.e164 for p in self.ids.phones if p.e164), None) or next(
                iter(self.ids.emails), None
            )
            act_id = await self.rnd.alloc.take(Activity)
            self.rnd.sink.add(
                Activity,
                id=act_id,
                kind=kind,
                direction=e.direction.value,
                subject=(e.subject or self._title())[:500],
                body=(str(e.meta.get("body") or e.text or ""))[:50_000] or None,
                done=True,
                done_at=self.now,
                responsible_id=self.out.responsible_id,
                channel=e.channel.value,
                external_id=ext[:500],
                counterparty=counterparty,
                last_attempt_at=e.occurred_at,
                meta=meta,
                created_at=self.now,
            )
            self.out.activity_created = True
        else:
            act.meta = merge_call_meta(act.meta or {}, meta)
            act_id = act.id
        await bind_activity(
            self.s, act_id, applied_bindings(self.out), fresh=fresh, sink=self.rnd.sink
        )
        self.out.activity_id = act_id

    def _notify(self) -> None:
        e = self.event
        if e.direction is Direction.OUTGOING or e.channel is Channel.IMPORT:
            return
        kind = {
            Outcome.NEW_LEAD: "new_lead",
            Outcome.NEW_REPEAT_LEAD: "repeat_lead",
            Outcome.NEW_DEAL: "new_deal",
            Outcome.NEW_REPEAT_DEAL: "repeat_deal",
        }.get(self.d.outcome)
        if kind is None and self.out.activity_created:
            kind = "activity"
        if kind is not None:
            self.out.notify.append((kind, {}))
