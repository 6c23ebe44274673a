"""Paging and filters shared by the list use cases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from crm.dto import Actor
from crm.errors import InvalidInput

MAX_LIMIT = 200


@dataclass(frozen=True, slots=True)
class ListFilter:
    """Filters for leads and deals; None means "any"."""

    status: str | None = None  # lead status code or deal stage code
    semantic: str | None = None  # process | success | failure
    source: str | None = None
    responsible_id: int | None = None
    unassigned: bool = False
    is_return_customer: bool | None = None
    is_repeated_approach: bool | None = None  # deals only
    created_from: datetime | None = None
    created_to: datetime | None = None
    pipeline: str | None = None  # deals only
    offset: int = 0
    limit: int = 50

    def checked(self) -> ListFilter:
        if self.offset < 0:
            raise InvalidInput("offset must not be negative")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
        if self.semantic not in (None, "process", "success", "failure"):
            raise InvalidInput("semantic must be process, success or failure")
        return self


def visible_to(actor: Actor, responsible: Any) -> Any:
    """Rights as a filter: a rep sees own and unassigned records, supervisors everything."""
    if actor.sees_everything:
        return true()
    return (responsible == actor.rep_id) | responsible.is_(None)


def apply_common(query: Select[Any], model: Any, semantic: Any, flt: ListFilter) -> Select[Any]:
    """The filters leads and deals share (`semantic` is the model's semantic column)."""
    if flt.semantic:
        query = query.where(semantic == flt.semantic)
    if flt.source:
        query = query.where(model.source == flt.source)
    if flt.responsible_id is not None:
        query = query.where(model.responsible_id == flt.responsible_id)
    if flt.unassigned:
        query = query.where(model.responsible_id.is_(None))
    if flt.is_return_customer is not None:
        query = query.where(model.is_return_customer.is_(flt.is_return_customer))
    if flt.created_from:
        query = query.where(model.created_at >= flt.created_from)
    if flt.created_to:
        query = query.where(model.created_at < flt.created_to)
    return query


async def page_of(
    session: AsyncSession, query: Select[Any], order_col: Any, offset: int, limit: int
) -> tuple[list[Any], int]:
    if offset < 0 or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"offset must be >= 0 and limit between 1 and {MAX_LIMIT}")
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(await session.scalars(query.order_by(order_col.desc()).offset(offset).limit(limit)))
    return rows, total
