"""Rounds within a batch: deciding events, splitting them by conflict keys, and fetching
what a round's writes need in advance (call activities, call-back tasks, ids, responsibles).

An event that shares a phone / email / call / thread or a matched record with an earlier
event of the round waits for the next round, which sees what the earlier one wrote: the
result is the same as one event after the other, in arrival order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bulk import fetch
from crm.db import Database, among
from crm.ids import IdAllocator
from crm.intake.labels import ACTIVITY_KIND
from crm.intake.outcomes import creates, imports_contact
from crm.looping import breathe
from crm.models import Activity, ActivityBinding, Company, Contact, Deal, InboundEventLog, Lead
from crm.repository import SqlCandidateRepository
from crm.services.calls import call_number, open_callbacks
from crm.services.exceptions import exception_hits
from crm.services.reps import next_in_queue, next_in_rotation, rotation
from crm.services.rows import RowSink
from matching.decide import decide
from matching.event import Channel, InboundEvent
from matching.finder import find_candidates
from matching.model import Candidates, Decision, EventIdentities, Identity, MatchSettings, Outcome


@dataclass
class Item:
    """One event on its way through a batch."""

    index: int
    event: InboundEvent
    ids: EventIdentities
    log_id: int = 0
    cands: Candidates = field(default_factory=Candidates)
    decision: Decision | None = None
    key: tuple[str, str] = field(init=False)  # (channel, external id): read many times
    phone: str | None = field(init=False)  # `call_number`: read several times
    # The advisory locks the event takes: the lock and each round's split read them.
    lock_keys: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # str() of a StrEnum member is its value, without `.value`'s Python-level property.
        self.key = (str(self.event.channel), self.event.external_id)
        self.phone = call_number(self.ids)
        self.lock_keys = [i.key for i in self.ids.matchable()]
        call_id = self.event.meta.get("call_id")
        if call_id:  # events of one call share its activity, even with no number
            self.lock_keys.append(f"call:{self.key[0]}:{call_id}")

    def conflict_keys(self) -> set[Hashable]:
        """What this event reads or writes that an earlier event of its round could change:
        its lock keys (strings), and the records and mails it goes to as tuples (kind, id)
        and ("msg", channel, id), built without formatting a string each."""
        e = self.event
        keys: set[Hashable] = set(self.lock_keys)
        meta = e.meta
        channel = str(e.channel)
        for r in (e.external_id, meta.get("in_reply_to"), *meta.get("references", ())):
            if r:
                keys.add(("msg", channel, str(r)))
        c = self.cands
        # The companies include those found through a contact: colleagues of one company
        # share its open items, so they must not be decided in the same round.
        for client in (*c.contacts, *c.companies):
            keys.add((str(client.kind), client.id))
            for deal in client.open_deals:
                keys.add(("deal", deal.id))
            for lead in client.open_repeat_leads:
                keys.add(("lead", lead.id))
        for lead in c.leads:
            keys.add(("lead", lead.id))
        d = self.decision
        if d is not None:
            for key in (
                ("lead", d.lead_id),
                ("deal", d.deal_id),
                ("contact", d.contact_id),
                ("company", d.company_id),
                ("lead", c.thread_lead_id),
                ("deal", c.thread_deal_id),
            ):
                if key[1] is not None:
                    keys.add(key)
        return keys


def split(items: Sequence[Item]) -> tuple[list[Item], list[Item]]:
    """The events that can go in this round, and those that wait for a later one: an event
    waits when it shares a key with any earlier event still in the batch."""
    taken: list[Item] = []
    waiting: list[Item] = []
    blocked: set[Hashable] = set()
    for item in items:
        keys = item.conflict_keys()
        (waiting if keys & blocked else taken).append(item)
        blocked |= keys
    return taken, waiting


class Round:
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
        self.touched: list[Lead | Deal | Contact | Company] = []  # modified_at, at the end


async def decide_items(
    s: AsyncSession,
    items: Sequence[Item],
    now: datetime,
    settings: MatchSettings,
    active_reps: set[int] | None = None,
) -> SqlCandidateRepository:
    """Decide every item from one fresh look at the database (a handful of queries)."""
    repo = SqlCandidateRepository(s, active_reps)
    await repo.preload(i for item in items for i in item.ids.matchable())
    listed = set(await exception_hits(s, _union(item.ids.exception_checked() for item in items)))
    for k, item in enumerate(items):
        await breathe(k)  # the reads came first: this loop waits on nothing
        cands = await find_candidates(repo, item.ids, settings)
        meta = item.event.meta
        if meta.get("in_reply_to") or meta.get("references"):  # (else no thread to look for)
            cands = await _thread(s, item.event, cands)
        item.cands = cands
        hits = [i for i in item.ids.exception_checked() if i in listed] if listed else []
        item.decision = decide(item.event, item.ids, item.cands, settings, hits, now)
    return repo


async def _thread(s: AsyncSession, event: InboundEvent, cands: Candidates) -> Candidates:
    """A mail reply goes where its thread lives, if that lead / deal is still open: the record
    of a mail it names, or of a rep's answer it names (a client may send In-Reply-To alone,
    and an answer's Message-ID is only on its outgoing activity)."""
    refs = [str(r) for r in (event.meta.get("in_reply_to"), *event.meta.get("references", ())) if r]
    if not refs:
        return cands
    answered = await s.execute(
        select(ActivityBinding.owner_type, ActivityBinding.owner_id)
        .join(Activity, Activity.id == ActivityBinding.activity_id)
        .where(
            Activity.channel == event.channel.value,
            Activity.direction == "outgoing",
            Activity.external_id.in_(refs),
            ActivityBinding.owner_type.in_(("lead", "deal")),
        )
        .order_by(Activity.id.desc())
    )
    threads: list[tuple[int | None, int | None]] = [
        (owner_id, None) if owner_type == "lead" else (None, owner_id)
        for owner_type, owner_id in answered
    ]
    rows = await s.execute(
        select(InboundEventLog.lead_id, InboundEventLog.deal_id)
        .where(
            InboundEventLog.channel == event.channel.value,
            InboundEventLog.external_id.in_(refs),
        )
        .order_by(InboundEventLog.id.desc())
    )
    threads += [(lead_id, deal_id) for lead_id, deal_id in rows]
    for lead_id, deal_id in threads:
        if deal_id is not None:
            deal = await s.get(Deal, deal_id)
            if deal is not None and deal.stage_semantic == "process":
                return replace(cands, thread_deal_id=deal_id)
        if lead_id is not None:
            lead = await s.get(Lead, lead_id)
            if lead is not None and lead.status_semantic == "process":
                return replace(cands, thread_lead_id=lead_id)
    return cands


async def prepare_round(
    s: AsyncSession,
    db: Database,
    items: Sequence[Item],
    repo: SqlCandidateRepository,
    alloc: IdAllocator,
    active: set[int],
    roles: Mapping[int, str],
) -> Round:
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
        keys = {
            "channels": sorted({c for c, _ in call_keys}),
            "external_ids": sorted({x for _, x in call_keys}),
        }
        found = await s.scalars(_calls_by_keys(not db.is_sqlite), keys)
        wanted = set(call_keys)
        calls = {key: a for a in found if (key := (a.channel or "", a.external_id or "")) in wanted}
    phones = [
        p
        for item in items
        if item.event.channel is Channel.CALL
        and item.decision is not None
        and item.decision.outcome is not Outcome.IGNORED
        and (p := item.phone) is not None
    ]
    callbacks = await _open_callbacks(s, db, phones) if phones else {}
    need: dict[Any, int] = {Lead: 0, Deal: 0, Contact: 0, Company: 0, Activity: 0}
    wants: dict[tuple[str, tuple[int, ...]], int] = {}
    for item in items:
        _count_new_rows(item, need, calls, callbacks)
        d = item.decision
        if d is not None and creates(item.event, d) and d.responsible_id not in active:
            queue = queue_of(item.event)
            wants[queue] = wants.get(queue, 0) + 1
    await alloc.reserve(need)
    picks = {q: deque(await _round_robin(s, db, q, n, roles)) for q, n in wants.items()}
    return Round(repo, alloc, active, calls, callbacks, picks)


# Whether any of the numbers (a sorted array) has an open task at all.
_ANY_OPEN_TASK = (
    "SELECT 1 FROM activities WHERE kind = 'task' AND done IS false"
    " AND counterparty = ANY($1::varchar[]) LIMIT 1"
)


async def _open_callbacks(
    s: AsyncSession, db: Database, phones: Sequence[str]
) -> dict[str, list[Activity]]:
    """`open_callbacks` of the round's numbers. On PostgreSQL most rounds' numbers have no
    open task: a plain read through asyncpg says so, and the ORM read (which costs the worker
    several times more) is made only when some number has one. The round's earlier writes
    are flushed (its decisions' reads flushed them), so both reads see the same rows."""
    if not db.is_sqlite and not await fetch(s, _ANY_OPEN_TASK, sorted(set(phones))):
        return {p: [] for p in phones}
    return await open_callbacks(s, phones)


@cache
def _calls_by_keys(pg: bool) -> Any:
    """The activities whose channel and external id are among the parameters "channels" and
    "external_ids" (cross pairs too, as `pairs_in`'s), built once: no construction nor cache
    key per round."""
    return select(Activity).where(
        among(Activity.channel, "channels", pg=pg),
        among(Activity.external_id, "external_ids", pg=pg),
    )


async def _round_robin(
    s: AsyncSession,
    db: Database,
    queue: tuple[str, tuple[int, ...]],
    n: int,
    roles: Mapping[int, str],
) -> list[int]:
    """The responsibles of `n` new records from one distribution queue (`roles`: the active
    reps' roles, read by the batch)."""
    name, members = queue
    if not set(roles).intersection(members or roles):
        return []  # nobody to hand them to
    if db.is_sqlite:  # one writer at a time anyway
        return await next_in_queue(s, name, members, n, roles)
    # Committed on its own (one statement on a connection outside the batch's transaction),
    # so concurrent new leads do not wait on each other's commit; a pick whose lead then
    # rolls back only skips a turn. The pick is one UPSERT, so two at a time neither collide
    # on the first row nor take the same turn.
    async with db.autocommit() as conn:
        return await next_in_rotation(conn, name, rotation(members, roles), n)


def queue_of(event: InboundEvent) -> tuple[str, tuple[int, ...]]:
    """The distribution queue for an event's new records: its line's own, or the default."""
    members = event.meta.get("queue")
    if not members:
        return _DEFAULT_QUEUE
    return (f"{event.channel.value}:{event.line}", tuple(int(r) for r in members))


_DEFAULT_QUEUE: tuple[str, tuple[int, ...]] = ("default", ())


def _count_new_rows(
    item: Item,
    need: dict[Any, int],
    calls: dict[tuple[str, str], Activity],
    callbacks: dict[str, list[Activity]],
) -> None:
    """The records the item's decision will create, so their ids come in one reservation."""
    d, e = item.decision, item.event
    if d is None or d.outcome is Outcome.IGNORED:
        return
    if imports_contact(e, d):
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
    phone = item.phone
    if e.channel is Channel.CALL and e.meta.get("missed") and phone and not callbacks.get(phone):
        need[Activity] += 1


def _union(groups: Iterable[Iterable[Identity]]) -> list[Identity]:
    return list(dict.fromkeys(i for group in groups for i in group))
