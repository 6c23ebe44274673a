"""The pipeline board: leads by status or deals by stage as columns of cards, with filters,
counts and sums, keyset-paged columns, and moves through the lead and deal services.

Every column reads the (status | stage, created_at, id) indexes newest first, so a page costs
the same at 1,000,000 records as at 1,000; counts and sums come from the counters the database
triggers keep (crm/counters.py) when the filters are none or an owner / the queue, else from one
GROUP BY for the board.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig, StatusDef
from crm.db import Database
from crm.dto import Actor
from crm.errors import InvalidInput
from crm.identity import identities_from_values
from crm.models import (
    Activity,
    ActivityBinding,
    BoardCounter,
    Communication,
    Company,
    Contact,
    Deal,
    Lead,
    Stage,
    utcnow,
)
from crm.services.access import check_access, get_or_404
from crm.services.cursor import decode_cursor, encode_cursor
from crm.services.deals import Deals
from crm.services.leads import Leads
from crm.services.listing import MAX_LIMIT, visible_to
from crm.services.pipelines import pipeline_by_code
from crm.services.search import contains_pattern
from crm.services.views import comms_of, rep_names
from matching.channels import CHANNELS, Channel

KINDS = ("lead", "deal")


@dataclass(frozen=True, slots=True)
class BoardFilters:
    """What the board shows; None / False means "any". `owner_id` and `unassigned` exclude
    each other; `source` is a source code (CALL) or a channel (call); `repeat` True shows
    repeat clients only, False new ones only; `created_to` is exclusive."""

    owner_id: int | None = None
    unassigned: bool = False
    source: str | None = None
    repeat: bool | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    text: str | None = None

    def checked(self) -> BoardFilters:
        if self.owner_id is not None and self.unassigned:
            raise InvalidInput("choose an owner or unassigned, not both")
        for when in (self.created_from, self.created_to):
            if when is not None and when.tzinfo is None:
                raise InvalidInput("dates need a timezone")
        if self.created_from and self.created_to and self.created_from >= self.created_to:
            raise InvalidInput("the date range ends before it starts")
        return self

    @property
    def source_code(self) -> str | None:
        if not self.source:
            return None
        try:
            return CHANNELS[Channel(self.source.lower())].source
        except ValueError:
            return self.source.upper()


@dataclass(frozen=True, slots=True)
class Card:
    kind: str  # lead | deal
    id: int
    title: str
    column: str  # status or stage code
    client_name: str | None
    contact_id: int | None
    company_id: int | None
    phone: str | None  # the first, as a rep reads it
    email: str | None
    owner_id: int | None
    owner_name: str | None
    source: str | None
    repeat: bool  # a known client's (Bitrix24's repeat lead / deal)
    created_at: datetime
    amount: Decimal | None = None  # deals
    currency: str | None = None
    overdue_callback: bool = False  # an open call-back or task past its due time
    # The earliest due time of its open call-backs and tasks: a page flips the overdue badge
    # itself when it passes, with no change to tell it (falling due writes nothing).
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CardPage:
    cards: list[Card]
    next_cursor: str | None  # None: the column ends here


@dataclass(frozen=True, slots=True)
class Column:
    code: str
    name: str
    semantic: str  # process | success | failure
    count: int
    sums: dict[str, Decimal]  # deals: amount per currency
    cards: list[Card]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class BoardView:
    kind: str
    pipeline: str | None  # deals: the pipeline's code
    columns: list[Column] = field(default_factory=list)


class Board:
    def __init__(self, db: Database, config: CrmConfig, leads: Leads, deals: Deals) -> None:
        self.db = db
        self.config = config
        self.leads = leads
        self.deals = deals

    async def columns(
        self,
        kind: str,
        filters: BoardFilters,
        actor: Actor,
        pipeline: str | None = None,
        per_column: int = 20,
    ) -> BoardView:
        """Every column with its count, sums (deals) and first page of cards."""
        model = self._model(kind)
        filters = filters.checked()
        _check_limit(per_column)
        async with self.db.read() as s:
            defs, pipe_code = await self._column_defs(s, kind, pipeline)
            where = await self._where(s, model, filters, actor)
            owners = _counted_owners(filters, actor)
            if owners is _LIVE:
                counts, sums = await self._totals(s, kind, defs, where)
            else:
                counts, sums = await _counters(s, kind, defs, owners)
            out = []
            for code, name, semantic, key in defs:
                page = await self._page(s, kind, key, where, None, per_column)
                out.append(
                    Column(
                        code=code,
                        name=name,
                        semantic=semantic,
                        count=counts.get(key, 0),
                        sums=dict(sums.get(key, {})),
                        cards=page.cards,
                        next_cursor=page.next_cursor,
                    )
                )
            return BoardView(kind=kind, pipeline=pipe_code, columns=out)

    async def column_page(
        self,
        kind: str,
        column_code: str,
        filters: BoardFilters,
        actor: Actor,
        *,
        after: str | None = None,
        limit: int = 20,
        pipeline: str | None = None,
    ) -> CardPage:
        """The cards of one column after `after` (a column's or page's `next_cursor`)."""
        model = self._model(kind)
        filters = filters.checked()
        _check_limit(limit)
        cursor = None
        if after:
            at, (ident,) = decode_cursor(after, 1, "board")
            cursor = (at, ident)
        async with self.db.read() as s:
            defs, _ = await self._column_defs(s, kind, pipeline)
            key = next((d[3] for d in defs if d[0] == column_code), None)
            if key is None:
                raise InvalidInput(f"the board has no column {column_code!r}")
            where = await self._where(s, model, filters, actor)
            return await self._page(s, kind, key, where, cursor, limit)

    async def card(self, kind: str, ident: int, actor: Actor) -> Card:
        """One card as the board shows it (after a move, or for a live update)."""
        model = self._model(kind)
        async with self.db.read() as s:
            row = await get_or_404(s, model, ident, kind)
            check_access(actor, row.responsible_id, f"{kind} #{ident}")
            return (await self._cards(s, kind, [row]))[0]

    async def cards_of_activity(self, activity_id: int) -> list[tuple[str, int]]:
        """The (kind, id) of the leads and deals a call-back or task is on: the cards whose
        overdue badge and due time it changes when set, done or snoozed. None for an activity
        without a due time (a call, a mail, a comment: intake's change of the record itself
        already updates its card)."""
        async with self.db.read() as s:
            rows = await s.execute(
                select(ActivityBinding.owner_type, ActivityBinding.owner_id)
                .join(Activity, Activity.id == ActivityBinding.activity_id)
                .where(
                    ActivityBinding.activity_id == activity_id,
                    ActivityBinding.owner_type.in_(KINDS),
                    Activity.due_at.is_not(None),
                )
            )
            return [(str(kind), int(ident)) for kind, ident in rows]

    async def move(self, kind: str, ident: int, to_column: str, actor: Actor, **extra: Any) -> Card:
        """Drop a card on a column, through the lead / deal services (their rules and rights).

        Leads: an open status changes the status (a closed lead is reopened first); a failure
        status junks it and needs `reason`; the success status converts it only with
        `convert=True` (and an optional `amount`). Deals: a stage of the deal's pipeline; a
        won stage needs an amount (on the deal or as `amount`), a lost one a `reason`."""
        self._model(kind)
        reason = str(extra.get("reason") or "").strip() or None
        amount = _amount(extra.get("amount"))
        if kind == "lead":
            await self._move_lead(
                ident, to_column, actor, reason, amount, bool(extra.get("convert"))
            )
        else:
            await self._move_deal(ident, to_column, actor, reason, amount)
        return await self.card(kind, ident, actor)

    async def _move_lead(
        self,
        ident: int,
        code: str,
        actor: Actor,
        reason: str | None,
        amount: Decimal | None,
        convert: bool,
    ) -> None:
        target = self.config.status(code)
        if target is None:
            raise InvalidInput(f"the board has no column {code!r}")
        lead = await self.leads.get(ident, actor)
        if lead.status == target.code:
            return
        if target.semantic == "success":
            if not convert:
                raise InvalidInput(
                    f"a lead cannot be dragged to {target.name!r}: convert it "
                    "(that makes its contact and deal)"
                )
            await self.leads.convert(ident, actor, amount=amount)
        elif target.semantic == "failure":
            if reason is None:
                raise InvalidInput(f"say why lead #{ident} goes to {target.name!r}")
            if not lead.is_open:
                await self.leads.reopen(ident, actor)
            await self.leads.junk(ident, reason, actor, status=target.code)
        else:
            if not lead.is_open:  # a converted lead is refused here, with the reason
                lead = await self.leads.reopen(ident, actor)
            if lead.status != target.code:
                await self.leads.change_status(ident, target.code, actor)

    async def _move_deal(
        self, ident: int, code: str, actor: Actor, reason: str | None, amount: Decimal | None
    ) -> None:
        deal = await self.deals.get(ident, actor)
        if deal.stage == code:
            return
        stages = {c: (name, sem) for c, name, sem in await self.deals.stages(deal.pipeline)}
        if code not in stages:
            raise InvalidInput(f"pipeline {deal.pipeline_name!r} has no stage {code!r}")
        name, semantic = stages[code]
        if semantic == "success":
            if amount is None and deal.amount is None:
                raise InvalidInput(f"a deal goes to {name!r} with its amount: enter it")
            if amount is not None:
                await self.deals.set_amount(ident, amount, actor)
        elif semantic == "failure" and reason is None:
            raise InvalidInput(f"say why deal #{ident} goes to {name!r}")
        # The dropped-on stage itself (a pipeline may have several lost stages).
        await self.deals.move(ident, code, actor, pipeline=deal.pipeline, reason=reason)

    # --- queries ---------------------------------------------------------------------------

    @staticmethod
    def _model(kind: str) -> Any:
        if kind == "lead":
            return Lead
        if kind == "deal":
            return Deal
        raise InvalidInput(f"the board shows leads or deals, not {kind!r}")

    async def _column_defs(
        self, s: AsyncSession, kind: str, pipeline: str | None
    ) -> tuple[list[tuple[str, str, str, Any]], str | None]:
        """(code, name, semantic, key) per column; the key is what the rows store."""
        if kind == "lead":
            if pipeline:
                raise InvalidInput("leads have no pipeline")
            statuses: tuple[StatusDef, ...] = self.config.lead_statuses
            return [(st.code, st.name, st.semantic, st.code) for st in statuses], None
        pipe = await pipeline_by_code(s, pipeline)
        stages = await s.scalars(
            select(Stage).where(Stage.pipeline_id == pipe.id).order_by(Stage.sort, Stage.id)
        )
        return [(st.code, st.name, st.semantic, st.id) for st in stages], pipe.code

    async def _where(
        self, s: AsyncSession, model: Any, flt: BoardFilters, actor: Actor
    ) -> list[Any]:
        where = [visible_to(actor, model.responsible_id)]
        if flt.owner_id is not None:
            where.append(model.responsible_id == flt.owner_id)
        if flt.unassigned:
            where.append(model.responsible_id.is_(None))
        if flt.source_code:
            where.append(model.source == flt.source_code)
        if flt.repeat is not None:
            where.append(model.is_return_customer.is_(flt.repeat))
        if flt.created_from:
            where.append(model.created_at >= flt.created_from)
        if flt.created_to:
            where.append(model.created_at < flt.created_to)
        text = (flt.text or "").strip()
        if text:
            where.append(await self._text_clause(s, model, text))
        return where

    async def _text_clause(self, s: AsyncSession, model: Any, text: str) -> Any:
        """A phone or email finds the records holding it (theirs or their client's); other
        text the title, the lead's name and the client's name (as /find does)."""
        ids = identities_from_values(
            [text] if "@" not in text else [],
            [text] if "@" in text else [],
            self.config.default_region,
        )
        values = [p.e164 for p in ids.phones if p.e164] + list(ids.emails)
        if values:
            holders: dict[str, set[int]] = defaultdict(set)
            for owner_type, owner_id in await s.execute(
                select(Communication.owner_type, Communication.owner_id).where(
                    Communication.kind.in_(("phone", "email")), Communication.value.in_(values)
                )
            ):
                holders[owner_type].add(owner_id)
            clauses = [
                model.contact_id.in_(sorted(holders["contact"])),
                model.company_id.in_(sorted(holders["company"])),
            ]
            if model is Lead:
                clauses.append(Lead.id.in_(sorted(holders["lead"])))
            return or_(*clauses)
        if len(text) < 2:
            raise InvalidInput("search for at least two characters")
        pattern = contains_pattern(text.lower())
        clauses = [
            func.lower(model.title).like(pattern, escape="\\"),
            model.contact_id.in_(
                select(Contact.id).where(func.lower(Contact.name).like(pattern, escape="\\"))
            ),
            model.company_id.in_(
                select(Company.id).where(func.lower(Company.title).like(pattern, escape="\\"))
            ),
        ]
        if model is Lead:
            clauses.append(func.lower(func.coalesce(Lead.name, "")).like(pattern, escape="\\"))
        return or_(*clauses)

    async def _totals(
        self, s: AsyncSession, kind: str, defs: list[tuple[str, str, str, Any]], where: list[Any]
    ) -> tuple[dict[Any, int], dict[Any, dict[str, Decimal]]]:
        """Counts (and deal sums per currency) of every column in one GROUP BY."""
        counts: dict[Any, int] = defaultdict(int)
        sums: dict[Any, dict[str, Decimal]] = defaultdict(dict)
        keys = [d[3] for d in defs]
        if kind == "lead":
            rows = await s.execute(
                select(Lead.status, func.count())
                .where(Lead.status.in_(keys), *where)
                .group_by(Lead.status)
            )
            for key, n in rows:
                counts[key] = int(n)
            return counts, sums
        deal_rows = await s.execute(
            select(Deal.stage_id, Deal.currency, func.count(), func.sum(Deal.amount))
            .where(Deal.stage_id.in_(keys), *where)
            .group_by(Deal.stage_id, Deal.currency)
        )
        for stage_id, currency, n, total in deal_rows:
            counts[stage_id] += int(n)
            if total is not None:
                sums[stage_id][currency] = Decimal(total).quantize(Decimal("0.01"))
        return counts, sums

    async def live_totals(
        self, kind: str, filters: BoardFilters, actor: Actor, pipeline: str | None = None
    ) -> tuple[dict[str, int], dict[str, dict[str, Decimal]]]:
        """Counts and sums per column code counted from the records (what the counters
        must equal; tests and checks compare them)."""
        model = self._model(kind)
        async with self.db.read() as s:
            defs, _ = await self._column_defs(s, kind, pipeline)
            where = await self._where(s, model, filters.checked(), actor)
            counts, sums = await self._totals(s, kind, defs, where)
            return _by_code(defs, counts, sums)

    async def counted_totals(
        self, kind: str, filters: BoardFilters, actor: Actor, pipeline: str | None = None
    ) -> tuple[dict[str, int], dict[str, dict[str, Decimal]]]:
        """Counts and sums per column code as the board reads them (from the counters when
        the filters allow)."""
        view = await self.columns(kind, filters, actor, pipeline=pipeline, per_column=1)
        return (
            {c.code: c.count for c in view.columns if c.count},
            {c.code: c.sums for c in view.columns if c.sums},
        )

    async def _page(
        self,
        s: AsyncSession,
        kind: str,
        key: Any,
        where: list[Any],
        cursor: tuple[datetime, int] | None,
        limit: int,
    ) -> CardPage:
        model = self._model(kind)
        column = Lead.status if kind == "lead" else Deal.stage_id
        query: Select[Any] = select(model).where(column == key, *where)
        if cursor is not None:
            query = query.where(tuple_(model.created_at, model.id) < tuple_(*cursor))
        rows = list(
            await s.scalars(
                query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
            )
        )
        more = len(rows) > limit
        rows = rows[:limit]
        cards = await self._cards(s, kind, rows)
        nxt = encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
        return CardPage(cards=cards, next_cursor=nxt)

    async def _cards(self, s: AsyncSession, kind: str, rows: list[Any]) -> list[Card]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        contact_ids = sorted({r.contact_id for r in rows if r.contact_id})
        company_ids = sorted({r.company_id for r in rows if r.company_id})
        contacts = await _labels(s, Contact.id, Contact.name, contact_ids)
        companies = await _labels(s, Company.id, Company.title, company_ids)
        own = await comms_of(s, "lead", ids) if kind == "lead" else {}
        client_comms = await comms_of(s, "contact", contact_ids)
        company_comms = await comms_of(s, "company", company_ids)
        names = await rep_names(s, (r.responsible_id for r in rows))
        now = utcnow()
        due: dict[int, datetime] = {
            owner_id: at
            for owner_id, at in await s.execute(
                select(ActivityBinding.owner_id, func.min(Activity.due_at))
                .join(Activity, Activity.id == ActivityBinding.activity_id)
                .where(
                    ActivityBinding.owner_type == kind,
                    ActivityBinding.owner_id.in_(ids),
                    Activity.done.is_(False),
                    Activity.due_at.is_not(None),
                )
                .group_by(ActivityBinding.owner_id)
            )
            if at is not None
        }
        codes: dict[int, str] = {}
        if kind == "deal":
            codes = await _labels(s, Stage.id, Stage.code, {r.stage_id for r in rows})
        out = []
        for r in rows:
            comms = (
                own.get(r.id, [])
                + client_comms.get(r.contact_id or 0, [])
                + company_comms.get(r.company_id or 0, [])
            )
            phone = next((c.display or c.raw for c in comms if c.kind == "phone"), None)
            email = next((c.display or c.raw for c in comms if c.kind == "email"), None)
            client = (
                (r.name if kind == "lead" else None)
                or contacts.get(r.contact_id or 0)
                or companies.get(r.company_id or 0)
                or (r.company_title if kind == "lead" else None)
            )
            out.append(
                Card(
                    kind=kind,
                    id=r.id,
                    title=r.title,
                    column=r.status if kind == "lead" else codes[r.stage_id],
                    client_name=client,
                    contact_id=r.contact_id,
                    company_id=r.company_id,
                    phone=phone,
                    email=email,
                    owner_id=r.responsible_id,
                    owner_name=names.get(r.responsible_id or 0),
                    source=r.source,
                    repeat=bool(r.is_return_customer),
                    created_at=r.created_at,
                    amount=r.amount if kind == "deal" else None,
                    currency=r.currency if kind == "deal" else None,
                    overdue_callback=r.id in due and due[r.id] < now,
                    due_at=due.get(r.id),
                )
            )
        return out


_LIVE = frozenset({-1})  # count the records: a filter the counters do not know


def _counted_owners(flt: BoardFilters, actor: Actor) -> frozenset[int] | None:
    """The counters' owners (0: nobody) the board sums, None for all of them, or _LIVE when
    the filters need a live count (source, repeat, dates, text: selective and indexed)."""
    if flt.source or flt.repeat is not None or flt.created_from or flt.created_to:
        return _LIVE
    if (flt.text or "").strip():
        return _LIVE
    owners: frozenset[int] | None = None
    if not actor.sees_everything:
        owners = frozenset({actor.rep_id or 0, 0})
    if flt.owner_id is not None:
        owners = frozenset({flt.owner_id}) & (owners or {flt.owner_id})
    if flt.unassigned:
        owners = frozenset({0}) & (owners or {0})
    return owners


async def _counters(
    s: AsyncSession, kind: str, defs: list[tuple[str, str, str, Any]], owners: frozenset[int] | None
) -> tuple[dict[Any, int], dict[Any, dict[str, Decimal]]]:
    """Counts and sums from board_counters: a few rows per column (its owners, currencies and
    write slots), whatever the tables hold."""
    counts: dict[Any, int] = defaultdict(int)
    sums: dict[Any, dict[str, Decimal]] = defaultdict(dict)
    keys = {str(d[3]): d[3] for d in defs}
    query = (
        select(
            BoardCounter.col,
            BoardCounter.currency,
            func.sum(BoardCounter.n),
            func.sum(BoardCounter.priced),
            func.sum(BoardCounter.amount),
        )
        .where(BoardCounter.kind == kind, BoardCounter.col.in_(list(keys)))
        .group_by(BoardCounter.col, BoardCounter.currency)
    )
    if owners is not None:
        query = query.where(BoardCounter.responsible_id.in_(sorted(owners)))
    for col, currency, n, priced, total in await s.execute(query):
        key = keys[col]
        counts[key] += int(n)
        if priced:
            sums[key][currency] = Decimal(total).quantize(Decimal("0.01"))
    return counts, sums


def _by_code(
    defs: list[tuple[str, str, str, Any]],
    counts: dict[Any, int],
    sums: dict[Any, dict[str, Decimal]],
) -> tuple[dict[str, int], dict[str, dict[str, Decimal]]]:
    return (
        {code: counts[key] for code, _, _, key in defs if counts.get(key)},
        {code: dict(sums[key]) for code, _, _, key in defs if sums.get(key)},
    )


async def _labels(s: AsyncSession, key: Any, label: Any, ids: Iterable[int]) -> dict[int, str]:
    return {k: v for k, v in await s.execute(select(key, label).where(key.in_(sorted(ids))))}


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"a column page holds between 1 and {MAX_LIMIT} cards")


def _amount(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        raise InvalidInput(f"{value!r} is not an amount") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidInput("an amount is a number of zero or more")
    return amount
