"""Lists of records by a small typed filter spec, translated to SQL here: field conditions
(=, !=, <, <=, >, >=, LIKE, IN, their negations), an order and a page. Adapters that speak
another CRM's query language (the Bitrix24 REST drop-in) map it onto `RecordQuery` and never
filter rows themselves. Rights are a filter too (`visible_to`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlalchemy import ColumnElement, Select, exists, false, func, not_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import (
    SYSTEM,
    ActivityView,
    Actor,
    CompanyView,
    ContactView,
    DealView,
    LeadView,
    RepView,
)
from crm.errors import InvalidInput
from crm.identity import identities_from_values
from crm.models import (
    Activity,
    ActivityBinding,
    Communication,
    Company,
    Contact,
    Deal,
    Lead,
    Pipeline,
    Rep,
    Stage,
)
from crm.services.listing import visible_to
from crm.services.search import contains_pattern
from crm.services.views import (
    activity_views,
    company_views,
    contact_views,
    deal_views,
    lead_views,
    rep_view,
)

Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "like", "not_like", "in", "not_in"]
MAX_PAGE = 500
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Condition:
    """`field op value`; `value` is a tuple for in / not_in, a substring for like."""

    field: str
    op: Op
    value: Any


@dataclass(frozen=True, slots=True)
class RecordQuery:
    conditions: tuple[Condition, ...] = ()
    order: tuple[tuple[str, bool], ...] = (("id", False),)  # (field, descending)
    offset: int = 0
    limit: int = 50
    count: bool = True  # False: no total (a cheaper query, Bitrix24's start=-1)


def _comm_exists(owner_type: str, owner_id: Any, kind: str) -> Callable[[Condition, str], Any]:
    """A phone / email condition: some communication of the record has the value (matched in
    its normalized form, as the matcher stores it)."""

    def condition(c: Condition, region: str) -> Any:
        raw = c.value if isinstance(c.value, tuple) else (c.value,)
        texts = [str(v) for v in raw if v not in (None, "")]
        ids = identities_from_values(
            texts if kind == "phone" else [], texts if kind == "email" else [], region
        )
        values = [p.e164 for p in ids.phones if p.e164] + list(ids.emails)
        hit = exists().where(
            Communication.owner_type == owner_type,
            Communication.owner_id == owner_id,
            Communication.kind == kind,
            Communication.value.in_(values) if values else false(),
        )
        if c.op in ("eq", "in"):
            return hit
        if c.op in ("ne", "not_in"):
            return not_(hit)
        raise InvalidInput(f"{kind} can only be compared for equality")

    return condition


def _bound_to(owner_type: str) -> Callable[[Condition, str], Any]:
    def condition(c: Condition, region: str) -> Any:
        return exists().where(
            ActivityBinding.activity_id == Activity.id,
            ActivityBinding.owner_type == owner_type,
            _compare(ActivityBinding.owner_id, c),
        )

    return condition


def _owner_kind(c: Condition, region: str) -> Any:
    return exists().where(
        ActivityBinding.activity_id == Activity.id, _compare(ActivityBinding.owner_type, c)
    )


def _owner_id(c: Condition, region: str) -> Any:
    return exists().where(
        ActivityBinding.activity_id == Activity.id, _compare(ActivityBinding.owner_id, c)
    )


_stage_code = select(Stage.code).where(Stage.id == Deal.stage_id).scalar_subquery()
_pipeline_code = select(Pipeline.code).where(Pipeline.id == Deal.pipeline_id).scalar_subquery()

Special = Callable[[Condition, str], Any]


@dataclass(frozen=True, slots=True)
class Entity:
    model: Any
    columns: Mapping[str, Any]
    special: Mapping[str, Special]
    responsible: Any | None  # the column rights filter on; None: everybody sees all


ENTITIES: dict[str, Entity] = {
    "lead": Entity(
        Lead,
        {
            "id": Lead.id,
            "title": Lead.title,
            "name": Lead.name,
            "company_title": Lead.company_title,
            "status": Lead.status,
            "status_semantic": Lead.status_semantic,
            "source": Lead.source,
            "is_return_customer": Lead.is_return_customer,
            "contact_id": Lead.contact_id,
            "company_id": Lead.company_id,
            "responsible_id": Lead.responsible_id,
            "comments": Lead.comments,
            "created_at": Lead.created_at,
            "modified_at": Lead.modified_at,
        },
        {
            "phone": _comm_exists("lead", Lead.id, "phone"),
            "email": _comm_exists("lead", Lead.id, "email"),
        },
        Lead.responsible_id,
    ),
    "contact": Entity(
        Contact,
        {
            "id": Contact.id,
            "name": Contact.name,
            "first_name": Contact.first_name,
            "last_name": Contact.last_name,
            "company_id": Contact.company_id,
            "responsible_id": Contact.responsible_id,
            "comments": Contact.comments,
            "created_at": Contact.created_at,
            "modified_at": Contact.modified_at,
        },
        {
            "phone": _comm_exists("contact", Contact.id, "phone"),
            "email": _comm_exists("contact", Contact.id, "email"),
        },
        Contact.responsible_id,
    ),
    "company": Entity(
        Company,
        {
            "id": Company.id,
            "title": Company.title,
            "responsible_id": Company.responsible_id,
            "comments": Company.comments,
            "created_at": Company.created_at,
            "modified_at": Company.modified_at,
        },
        {
            "phone": _comm_exists("company", Company.id, "phone"),
            "email": _comm_exists("company", Company.id, "email"),
        },
        Company.responsible_id,
    ),
    "deal": Entity(
        Deal,
        {
            "id": Deal.id,
            "title": Deal.title,
            "stage": _stage_code,
            "pipeline": _pipeline_code,
            "stage_semantic": Deal.stage_semantic,
            "amount": Deal.amount,
            "currency": Deal.currency,
            "contact_id": Deal.contact_id,
            "company_id": Deal.company_id,
            "lead_id": Deal.lead_id,
            "is_return_customer": Deal.is_return_customer,
            "is_repeated_approach": Deal.is_repeated_approach,
            "responsible_id": Deal.responsible_id,
            "source": Deal.source,
            "created_at": Deal.created_at,
            "modified_at": Deal.modified_at,
            "closed_at": Deal.closed_at,
        },
        {},
        Deal.responsible_id,
    ),
    "activity": Entity(
        Activity,
        {
            "id": Activity.id,
            "kind": Activity.kind,
            "direction": Activity.direction,
            "subject": Activity.subject,
            "done": Activity.done,
            "due_at": Activity.due_at,
            "responsible_id": Activity.responsible_id,
            "author_id": Activity.author_id,
            "created_at": Activity.created_at,
        },
        {
            "owner_type": _owner_kind,
            "owner_id": _owner_id,
            "lead_id": _bound_to("lead"),
            "deal_id": _bound_to("deal"),
            "contact_id": _bound_to("contact"),
            "company_id": _bound_to("company"),
        },
        Activity.responsible_id,
    ),
    "rep": Entity(
        Rep,
        {
            "id": Rep.id,
            "name": Rep.name,
            "email": Rep.email,
            "phone": Rep.phone,
            "extension": Rep.extension,
            "active": Rep.active,
            "role": Rep.role,
            "created_at": Rep.created_at,
        },
        {},
        None,
    ),
}


def _compare(column: Any, c: Condition) -> ColumnElement[bool]:
    value = c.value
    if c.op in ("in", "not_in"):
        values = list(value) if isinstance(value, tuple | list) else [value]
        hit = column.in_(values) if values else false()
        return not_(hit) if c.op == "not_in" else hit
    if c.op in ("like", "not_like"):
        pattern = contains_pattern(str(value).lower())
        hit = func.lower(func.coalesce(column, "")).like(pattern, escape="\\")
        return not_(hit) if c.op == "not_like" else hit
    if value is None:
        if c.op == "eq":
            return column.is_(None)  # type: ignore[no-any-return]
        if c.op == "ne":
            return column.is_not(None)  # type: ignore[no-any-return]
        raise InvalidInput(f"{c.field} cannot be compared with an empty value")
    compare: dict[str, Callable[[Any, Any], Any]] = {
        "eq": lambda a, b: a == b,
        "ne": lambda a, b: (a != b) | a.is_(None),
        "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b,
        "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b,
    }
    return compare[c.op](column, value)  # type: ignore[no-any-return]


def build(entity: Entity, query: RecordQuery, actor: Actor, region: str) -> Select[Any]:
    """The SELECT of a query; unknown fields are the caller's to drop (an InvalidInput here)."""
    stmt = select(entity.model)
    if entity.responsible is not None:
        stmt = stmt.where(visible_to(actor, entity.responsible))
    for c in query.conditions:
        if c.field in entity.special:
            stmt = stmt.where(entity.special[c.field](c, region))
        elif c.field in entity.columns:
            stmt = stmt.where(_compare(entity.columns[c.field], c))
        else:
            raise InvalidInput(f"cannot filter by {c.field}")
    return stmt


def _ordered(entity: Entity, stmt: Select[Any], order: Sequence[tuple[str, bool]]) -> Select[Any]:
    keys = []
    for name, descending in order:
        column = entity.columns.get(name)
        if column is None:
            raise InvalidInput(f"cannot order by {name}")
        keys.append(column.desc() if descending else column.asc())
    if "id" not in [name for name, _ in order]:
        keys.append(entity.columns["id"].asc())  # a stable page order
    return stmt.order_by(*keys)


class Queries:
    """List use cases by `RecordQuery`: rows of one page and the total."""

    def __init__(self, db: Database, config: CrmConfig) -> None:
        self.db = db
        self.config = config

    async def _page(
        self,
        kind: str,
        query: RecordQuery,
        actor: Actor,
        views: Callable[[AsyncSession, list[Any]], Awaitable[list[V]]],
    ) -> tuple[list[V], int | None]:
        """One page of `kind` as views, and the total (None when not counted)."""
        if query.offset < 0 or not 1 <= query.limit <= MAX_PAGE:
            raise InvalidInput(f"offset must be >= 0 and limit between 1 and {MAX_PAGE}")
        entity = ENTITIES[kind]
        stmt = build(entity, query, actor, self.config.default_region)
        async with self.db.read() as s:
            total = None
            if query.count:
                total = await s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            page = _ordered(entity, stmt, query.order).offset(query.offset).limit(query.limit)
            return await views(s, list(await s.scalars(page))), total

    async def leads(
        self, query: RecordQuery, actor: Actor = SYSTEM
    ) -> tuple[list[LeadView], int | None]:
        return await self._page(
            "lead", query, actor, lambda s, rows: lead_views(s, self.config, rows)
        )

    async def contacts(
        self, query: RecordQuery, actor: Actor = SYSTEM
    ) -> tuple[list[ContactView], int | None]:
        return await self._page("contact", query, actor, contact_views)

    async def companies(
        self, query: RecordQuery, actor: Actor = SYSTEM
    ) -> tuple[list[CompanyView], int | None]:
        return await self._page("company", query, actor, company_views)

    async def deals(
        self, query: RecordQuery, actor: Actor = SYSTEM
    ) -> tuple[list[DealView], int | None]:
        return await self._page("deal", query, actor, deal_views)

    async def activities(
        self, query: RecordQuery, actor: Actor = SYSTEM
    ) -> tuple[list[ActivityView], int | None]:
        return await self._page("activity", query, actor, activity_views)

    async def reps(self, query: RecordQuery) -> tuple[list[RepView], int | None]:
        async def views(s: AsyncSession, rows: list[Rep]) -> list[RepView]:
            return [rep_view(r) for r in rows]

        return await self._page("rep", query, SYSTEM, views)


def fields_of(kind: str) -> frozenset[str]:
    """The fields a `RecordQuery` on `kind` may name."""
    entity = ENTITIES[kind]
    return frozenset(entity.columns) | frozenset(entity.special)
