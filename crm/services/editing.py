"""The one shape of changing a lead, deal, contact or company in place, whichever use case
asks (`Edits` for leads and deals, `Records` for contacts and companies): load it, check the
actor's right to it, refuse duplicates if asked, set the given fields, add phones / emails /
handles, write the timeline and return the record's view. Giving any of them to another rep
has one shape too (`assign`): the bot's, the console's, the API's and an integration's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from crm.db import Database
from crm.dto import Actor
from crm.errors import Forbidden
from crm.models import Company, Contact, Deal, Lead, OutboxMessage, utcnow
from crm.services.access import act_as, active_rep, check_access, get_or_404
from crm.services.duplicates import refuse_duplicates
from crm.services.rows import OWNER_MODELS, add_comms, add_timeline
from matching.model import EventIdentities

Row = TypeVar("Row", Lead, Deal, Contact, Company)
View = TypeVar("View")

KIND_OF: dict[Any, str] = {model: kind for kind, model in OWNER_MODELS.items()}


def patch(row: Any, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Set the given (not None) values; (before, after) of what changed, for the timeline."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for attr, value in values.items():
        if value is not None and getattr(row, attr) != value:
            before[attr], after[attr] = getattr(row, attr), value
            setattr(row, attr, value)
    row.modified_at = utcnow()
    return before, after


async def edit(
    db: Database,
    model: type[Row],
    views: Callable[[AsyncSession, Sequence[Row]], Awaitable[list[View]]],
    ident: int,
    values: Mapping[str, Any],
    actor: Actor,
    *,
    ids: EventIdentities | None = None,
    check_duplicates: bool = False,
) -> View:
    """Set `values` (None: keep) on record `ident` and add what is new of `ids`. With
    `check_duplicates`, a value another record holds refuses the edit (`DuplicateWarning`,
    as a hand-made record's save). A company named in `values` must be the actor's to work,
    and only a supervisor gives the record to a rep other than the actor."""
    what = KIND_OF[model]
    async with db.transaction() as s:
        row: Row = await get_or_404(s, model, ident, what)
        check_access(actor, row.responsible_id, f"{what} #{ident}")
        if ids is not None and check_duplicates:
            await refuse_duplicates(db, s, ids, actor, (what, ident))
        # Looked up before any change: a lookup flushes what is set.
        company_id = values.get("company_id")
        if company_id is not None:
            company = await get_or_404(s, Company, company_id, "company")
            check_access(actor, company.responsible_id, f"company #{company_id}")
        responsible_id = values.get("responsible_id")
        if responsible_id not in (None, row.responsible_id):
            if responsible_id != actor.rep_id and not actor.sees_everything:
                raise Forbidden(f"only a supervisor can give a {what} to another rep")
            await active_rep(s, responsible_id)
        before, after = patch(row, values)
        if ids is not None:
            added = await add_comms(s, what, ident, ids)
            if added:
                after["added"] = ", ".join(added)
        add_timeline(s, what, ident, "updated", actor, before, after)
        return (await views(s, [row]))[0]


async def assign(
    db: Database,
    model: type[Row],
    views: Callable[[AsyncSession, Sequence[Row]], Awaitable[list[View]]],
    ident: int,
    rep_id: int,
    actor: Actor,
) -> View:
    """Give a record to an active rep: supervisors, admins and the system only. A lead or
    deal that changes hands tells its new rep ("assigned", in the same transaction) unless
    that rep gave it to themselves. A lead a person gives counts as taken (their first
    action: no escalation, no Take button), through the bot, the console or their API token
    alike; one the system gives (no rep) stays to be taken."""
    what = KIND_OF[model]
    if not actor.sees_everything:
        raise Forbidden(f"only a supervisor can reassign a {what}")
    async with db.transaction() as s:
        await active_rep(s, rep_id)
        act_as(actor)
        row: Row = await get_or_404(s, model, ident, what)
        before = {"responsible_id": row.responsible_id}
        row.responsible_id, row.modified_at = rep_id, utcnow()
        if isinstance(row, Lead) and actor.rep_id is not None and row.taken_at is None:
            row.taken_at = row.modified_at
        add_timeline(s, what, ident, "assigned", actor, before, {"responsible_id": rep_id})
        if what in _TOLD and before["responsible_id"] != rep_id and rep_id != actor.rep_id:
            s.add(
                OutboxMessage(
                    rep_id=rep_id,
                    kind="assigned",
                    payload={f"{what}_id": ident, "by_rep_id": actor.rep_id},
                    created_at=row.modified_at,
                    next_attempt_at=row.modified_at,
                )
            )
        await s.flush()
        return (await views(s, [row]))[0]


# The records whose new rep gets an "Assigned to you" card (the bot has none for a company).
_TOLD = frozenset({"lead", "deal"})
