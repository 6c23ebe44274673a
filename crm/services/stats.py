"""Team numbers for a period: inbound contacts per channel and day, the funnel, new vs repeat,
speed to lead, overdue call-backs, lost reasons, won amounts and counts per rep.

Every number is an aggregate the database computes (GROUP BY, window functions for the
percentiles), the same on SQLite and PostgreSQL; Python only shapes the few result rows.
Days are the CRM's local days (`crm.timezone`): the period's day boundaries are computed here
and the database sorts rows into them, so no time-zone support is needed in SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Float, and_, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import SYSTEM, Actor
from crm.errors import Forbidden, InvalidInput
from crm.models import Activity, Deal, InboundEventLog, Lead, Rep, utcnow
from matching.model import Outcome

PERIODS = ("today", "week", "month")
MAX_DAYS = 92  # a quarter: one CASE branch a day sorts the inbound events into days

# Inbound events that made or reached a record count; these did not ("processing": a row
# intake has not finished).
NOT_COUNTED = (Outcome.IGNORED.value, Outcome.DUPLICATE.value, "processing")
KIND_OF = {
    Outcome.NEW_LEAD.value: "new",
    Outcome.NEW_DEAL.value: "new",
    Outcome.NEW_REPEAT_LEAD.value: "repeat",
    Outcome.NEW_REPEAT_DEAL.value: "repeat",
    Outcome.ATTACHED_LEAD.value: "attached",
    Outcome.ATTACHED_DEAL.value: "attached",
    Outcome.ATTACHED_CLIENT.value: "attached",
}


@dataclass(frozen=True, slots=True)
class Period:
    name: str  # today | week | month | days
    start: datetime  # UTC, inclusive: the first day's local midnight
    end: datetime  # UTC, exclusive
    days: tuple[date, ...]  # the local days it covers
    bounds: tuple[datetime, ...]  # UTC start of each day, then `end`

    @property
    def label(self) -> str:
        first, last = self.days[0], self.days[-1]
        return first.isoformat() if first == last else f"{first.isoformat()} – {last.isoformat()}"


def span(first: date, last: date, tz: ZoneInfo, name: str = "days") -> Period:
    """The local days `first` … `last` (both included) as a period."""
    count = (last - first).days + 1
    if count < 1 or count > MAX_DAYS:
        raise InvalidInput(f"a period covers 1 to {MAX_DAYS} days")
    days = tuple(first + timedelta(days=n) for n in range(count))
    bounds = tuple(
        datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)
        for d in (*days, last + timedelta(days=1))
    )
    return Period(name, bounds[0], bounds[-1], days, bounds)


def named_period(name: str, now: datetime, tz: ZoneInfo) -> Period:
    """today, week (since Monday) or month (since the 1st), up to the end of today."""
    today = now.astimezone(tz).date()
    firsts = {
        "today": today,
        "week": today - timedelta(days=today.weekday()),
        "month": today.replace(day=1),
    }
    if name not in firsts:
        raise InvalidInput(f"unknown period “{name[:20]}”: use {', '.join(PERIODS)}")
    return span(firsts[name], today, tz, name)


@dataclass(frozen=True, slots=True)
class ChannelDay:
    day: date
    channel: str
    count: int


@dataclass(frozen=True, slots=True)
class Funnel:
    leads: int  # leads created in the period
    converted: int  # … of them converted
    deals: int  # deals created in the period (from a lead or directly)
    won: int  # … of them won


@dataclass(frozen=True, slots=True)
class NewVsRepeat:
    new: int  # inbound contacts that opened a record for a new person
    repeat: int  # … a record for a known client (repeat lead / deal)
    attached: int  # … added to a record that was open already


@dataclass(frozen=True, slots=True)
class TakeTime:
    """Speed to lead: lead created → taken, over the leads created in the period and taken.
    Percentiles by nearest rank (the median of an even count is the lower middle)."""

    rep_id: int | None  # None: the whole team (or the owner asked for)
    rep_name: str
    taken: int
    median_seconds: float
    p90_seconds: float


@dataclass(frozen=True, slots=True)
class ReasonCount:
    kind: str  # deal (lost) | lead (junk)
    reason: str  # "" when none was given
    count: int


@dataclass(frozen=True, slots=True)
class Money:
    currency: str
    amount: Decimal
    deals: int


@dataclass(frozen=True, slots=True)
class RepNumbers:
    rep_id: int
    rep_name: str
    new: int  # leads created in the period and assigned to the rep
    taken: int  # leads the rep took in the period
    converted: int  # deals converted from a lead in the period
    won: int
    lost: int
    overdue: int  # open call-backs and tasks past due now


@dataclass(frozen=True, slots=True)
class StatsReport:
    period: Period
    owner_id: int | None  # None: the whole team
    inbound: tuple[ChannelDay, ...]
    funnel: Funnel
    new_vs_repeat: NewVsRepeat
    take_team: TakeTime | None  # None: nothing taken
    take_times: tuple[TakeTime, ...]  # per rep, fastest median first
    overdue_callbacks: int
    lost_reasons: tuple[ReasonCount, ...]  # most frequent first
    won: tuple[Money, ...]
    reps: tuple[RepNumbers, ...]

    @property
    def inbound_total(self) -> int:
        return sum(c.count for c in self.inbound)

    def inbound_by_channel(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.inbound:
            out[c.channel] = out.get(c.channel, 0) + c.count
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    def reasons(self, kind: str) -> tuple[ReasonCount, ...]:
        return tuple(r for r in self.lost_reasons if r.kind == kind)


def _within(col: Any, p: Period) -> ColumnElement[bool]:
    return and_(col >= p.start, col < p.end)


def _count_if(cond: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


class Stats:
    def __init__(
        self, db: Database, config: CrmConfig, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.tz = ZoneInfo(config.timezone)

    def period(self, name: str, now: datetime | None = None) -> Period:
        """today / week / month in the CRM's time zone."""
        return named_period(name.lower(), now or self.clock(), self.tz)

    def days(self, first: date, last: date) -> Period:
        return span(first, last, self.tz)

    async def report(
        self,
        period: Period,
        actor: Actor = SYSTEM,
        *,
        owner_id: int | None = None,
        now: datetime | None = None,
    ) -> StatsReport:
        """The numbers of `period`, of one owner or the whole team. A rep sees only their own
        (asking for nobody means themselves); supervisors and admins anyone's."""
        owner = _owner(actor, owner_id)
        now = now or self.clock()
        async with self.db.read() as s:
            names: dict[int, str] = {i: n for i, n in await s.execute(select(Rep.id, Rep.name))}
            if owner is not None and owner not in names:
                raise InvalidInput(f"rep #{owner} does not exist")
            inbound, nvr = await self._inbound(s, period, owner)
            team, per_rep = await self._take_times(s, period, owner, names)
            reps, overdue = await self._per_rep(s, period, owner, now, names)
            return StatsReport(
                period=period,
                owner_id=owner,
                inbound=inbound,
                funnel=await self._funnel(s, period, owner),
                new_vs_repeat=nvr,
                take_team=team,
                take_times=per_rep,
                overdue_callbacks=overdue,
                lost_reasons=await self._reasons(s, period, owner),
                won=await self._won(s, period, owner),
                reps=reps,
            )

    # --- the queries ------------------------------------------------------------------------

    async def _inbound(
        self, s: AsyncSession, p: Period, owner: int | None
    ) -> tuple[tuple[ChannelDay, ...], NewVsRepeat]:
        ev = InboundEventLog
        inner = p.bounds[1:-1]  # the midnights inside the period
        day: Any = (
            case(*((ev.received_at < b, i) for i, b in enumerate(inner)), else_=len(inner))
            if inner
            else literal(0)
        )
        # NOT IN: an IN list would lead SQLite to the outcome index instead of the time range.
        counted = ev.outcome.not_in(NOT_COUNTED)
        rows = select(day.label("day"), ev.channel.label("channel"), ev.outcome.label("outcome"))
        rows = rows.where(_within(ev.received_at, p), ev.direction == "incoming", counted)
        if owner is not None:
            rows = (
                rows.outerjoin(Lead, Lead.id == ev.lead_id)
                .outerjoin(Deal, Deal.id == ev.deal_id)
                .where(func.coalesce(Deal.responsible_id, Lead.responsible_id) == owner)
            )
        # Grouped outside: PostgreSQL does not match a CASE of bound values in GROUP BY.
        sub = rows.subquery()
        grouped = await s.execute(
            select(sub.c.day, sub.c.channel, sub.c.outcome, func.count()).group_by(
                sub.c.day, sub.c.channel, sub.c.outcome
            )
        )
        # At most days × channels × outcomes rows: added up here.
        per_day: dict[tuple[int, str], int] = {}
        kinds = {"new": 0, "repeat": 0, "attached": 0}
        for d, channel, outcome, n in grouped:
            per_day[(int(d), channel)] = per_day.get((int(d), channel), 0) + int(n)
            kind = KIND_OF.get(outcome)
            if kind is not None:
                kinds[kind] += int(n)
        inbound = tuple(ChannelDay(p.days[d], c, n) for (d, c), n in sorted(per_day.items()))
        return inbound, NewVsRepeat(**kinds)

    async def _funnel(self, s: AsyncSession, p: Period, owner: int | None) -> Funnel:
        leads = select(func.count(), _count_if(Lead.status_semantic == "success")).where(
            _within(Lead.created_at, p)
        )
        deals = select(func.count(), _count_if(Deal.stage_semantic == "success")).where(
            _within(Deal.created_at, p)
        )
        if owner is not None:
            leads = leads.where(Lead.responsible_id == owner)
            deals = deals.where(Deal.responsible_id == owner)
        made, converted = (await s.execute(leads)).one()
        opened, won = (await s.execute(deals)).one()
        return Funnel(int(made), int(converted), int(opened), int(won))

    def _seconds(self) -> Any:
        if self.db.is_sqlite:
            days = func.julianday(Lead.taken_at) - func.julianday(Lead.created_at)
            return cast(days * 86400.0, Float)
        return cast(func.extract("epoch", Lead.taken_at - Lead.created_at), Float)

    async def _take_times(
        self, s: AsyncSession, p: Period, owner: int | None, names: dict[int, str]
    ) -> tuple[TakeTime | None, tuple[TakeTime, ...]]:
        secs = self._seconds()
        where = [
            _within(Lead.created_at, p),
            Lead.taken_at.is_not(None),
            Lead.responsible_id.is_not(None),
        ]
        if owner is not None:
            where.append(Lead.responsible_id == owner)

        async def ranked(by_rep: bool) -> list[Any]:
            part = [Lead.responsible_id] if by_rep else None
            sub = (
                select(
                    Lead.responsible_id.label("rep"),
                    secs.label("secs"),
                    func.row_number().over(partition_by=part, order_by=secs).label("rn"),
                    func.count().over(partition_by=part).label("n"),
                )
                .where(*where)
                .subquery()
            )
            # Nearest rank: the median is row ceil(n/2), p90 row ceil(9n/10).
            median = func.max(case((sub.c.rn == (sub.c.n + 1) // 2, sub.c.secs)))
            p90 = func.max(case((sub.c.rn == (sub.c.n * 9 + 9) // 10, sub.c.secs)))
            query = select(func.min(sub.c.rep), func.count(), median, p90)
            if by_rep:
                query = query.group_by(sub.c.rep)
            return list(await s.execute(query))

        def view(row: Any, rep_id: int | None, name: str) -> TakeTime:
            return TakeTime(rep_id, name, int(row[1]), round(row[2], 1), round(row[3], 1))

        whole = [r for r in await ranked(False) if r[1]]
        team = view(whole[0], None, "Team") if whole else None
        per_rep = [view(r, r[0], names.get(r[0], f"rep #{r[0]}")) for r in await ranked(True)]
        per_rep.sort(key=lambda t: (t.median_seconds, t.rep_name))
        return team, tuple(per_rep)

    async def _reasons(
        self, s: AsyncSession, p: Period, owner: int | None
    ) -> tuple[ReasonCount, ...]:
        deal_reason = func.coalesce(Deal.lost_reason, "")
        lost = select(deal_reason, func.count()).where(
            Deal.stage_semantic == "failure", _within(Deal.closed_at, p)
        )
        # A junked lead keeps no junk time; its last change is when it was junked, unless
        # someone touched it later.
        lead_reason = func.coalesce(Lead.junk_reason, "")
        junk = select(lead_reason, func.count()).where(
            Lead.status_semantic == "failure", _within(Lead.modified_at, p)
        )
        if owner is not None:
            lost = lost.where(Deal.responsible_id == owner)
            junk = junk.where(Lead.responsible_id == owner)
        out = [
            ReasonCount(kind, str(reason), int(n))
            for kind, query, col in (("deal", lost, deal_reason), ("lead", junk, lead_reason))
            for reason, n in await s.execute(query.group_by(col))
        ]
        out.sort(key=lambda r: (-r.count, r.kind, r.reason))
        return tuple(out)

    async def _won(self, s: AsyncSession, p: Period, owner: int | None) -> tuple[Money, ...]:
        query = select(Deal.currency, func.sum(func.coalesce(Deal.amount, 0)), func.count()).where(
            Deal.stage_semantic == "success", _within(Deal.closed_at, p)
        )
        if owner is not None:
            query = query.where(Deal.responsible_id == owner)
        rows = await s.execute(query.group_by(Deal.currency).order_by(Deal.currency))
        return tuple(Money(c, Decimal(a).quantize(Decimal("0.01")), int(n)) for c, a, n in rows)

    async def _per_rep(
        self,
        s: AsyncSession,
        p: Period,
        owner: int | None,
        now: datetime,
        names: dict[int, str],
    ) -> tuple[tuple[RepNumbers, ...], int]:
        # One indexed range per query (an OR of two ranges would read the whole table).
        closed = _within(Deal.closed_at, p)
        queries = [
            select(Lead.responsible_id, func.count()).where(_within(Lead.created_at, p)),
            select(Lead.responsible_id, func.count()).where(_within(Lead.taken_at, p)),
            select(Deal.responsible_id, func.count()).where(
                _within(Deal.created_at, p), Deal.lead_id.is_not(None)
            ),
            select(Deal.responsible_id, func.count()).where(
                closed, Deal.stage_semantic == "success"
            ),
            select(Deal.responsible_id, func.count()).where(
                closed, Deal.stage_semantic == "failure"
            ),
            select(Activity.responsible_id, func.count()).where(
                Activity.done.is_(False), Activity.due_at.is_not(None), Activity.due_at < now
            ),
        ]
        counts: dict[int, list[int]] = {}
        total_overdue = 0
        for column, query in enumerate(queries):
            rep_col = query.selected_columns[0]
            if owner is not None:
                query = query.where(rep_col == owner)
            for rep, n in await s.execute(query.group_by(rep_col)):
                if column == len(queries) - 1:
                    total_overdue += int(n)
                if rep is not None:
                    counts.setdefault(rep, [0] * len(queries))[column] = int(n)
        reps = [
            RepNumbers(rep, names.get(rep, f"rep #{rep}"), *values)
            for rep, values in counts.items()
        ]
        reps.sort(key=lambda r: r.rep_name.lower())
        return tuple(reps), total_overdue


def _owner(actor: Actor, owner_id: int | None) -> int | None:
    if actor.sees_everything:
        return owner_id
    if owner_id is not None and owner_id != actor.rep_id:
        raise Forbidden("a rep sees only their own numbers")
    return actor.rep_id
