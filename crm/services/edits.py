"""Field edits of leads and deals that have no use case of their own (title, name, comments,
source, phones / emails / handles added): the REST API's PATCH and an integration's `*.update`.
Status, stage and responsible keep their own use cases (`Leads`, `Deals`) and their rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import SYSTEM, Actor, DealView, LeadView
from crm.errors import InvalidInput
from crm.models import Deal, Lead, utcnow
from crm.services.access import check_access, get_or_404
from crm.services.duplicates import refuse_duplicates
from crm.services.handmade import Comms, identities
from crm.services.rows import add_comms, add_timeline
from crm.services.views import deal_views, lead_views
from matching.model import EventIdentities


@dataclass(frozen=True, slots=True)
class LeadPatch:
    """Fields to change (None: keep); comms are added, never replaced."""

    title: str | None = None
    name: str | None = None
    company_title: str | None = None
    comments: str | None = None
    source: str | None = None
    comms: Comms = field(default_factory=Comms)


@dataclass(frozen=True, slots=True)
class DealPatch:
    title: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    source: str | None = None


async def _patch(row: Any, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Set the given (not None) values; (before, after) of what changed, for the timeline."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for attr, value in values.items():
        if value is not None and getattr(row, attr) != value:
            before[attr], after[attr] = getattr(row, attr), value
            setattr(row, attr, value)
    row.modified_at = utcnow()
    return before, after


class Edits:
    """Editing leads and deals field by field (contacts and companies: `Records`)."""

    def __init__(self, db: Database, config: CrmConfig) -> None:
        self.db = db
        self.config = config

    async def update_lead(
        self,
        lead_id: int,
        patch: LeadPatch,
        actor: Actor = SYSTEM,
        *,
        check_duplicates: bool = False,
    ) -> LeadView:
        """With `check_duplicates`, a phone, email or handle another record holds refuses the
        edit (`DuplicateWarning`, as a hand-made record's save)."""
        if patch.title is not None and not patch.title.strip():
            raise InvalidInput("a lead needs a title")
        ids = identities(patch.comms, self.config.default_region)
        values = {k: getattr(patch, k) for k in ("name", "company_title", "comments", "source")}
        views = await self._edit(Lead, lead_id, patch.title, values, actor, ids, check_duplicates)
        return cast(LeadView, views)

    async def update_deal(self, deal_id: int, patch: DealPatch, actor: Actor = SYSTEM) -> DealView:
        if patch.title is not None and not patch.title.strip():
            raise InvalidInput("a deal needs a title")
        if patch.amount is not None and (patch.amount < 0 or not patch.amount.is_finite()):
            raise InvalidInput("amount must be a number not below 0")
        values = {k: getattr(patch, k) for k in ("amount", "currency", "source")}
        return cast(DealView, await self._edit(Deal, deal_id, patch.title, values, actor, None))

    async def _edit(
        self,
        model: Any,
        ident: int,
        title: str | None,
        values: dict[str, Any],
        actor: Actor,
        ids: EventIdentities | None,
        check_duplicates: bool = False,
    ) -> LeadView | DealView:
        what = model.__tablename__.removesuffix("s")
        async with self.db.transaction() as s:
            row = await get_or_404(s, model, ident, what)
            check_access(actor, row.responsible_id, f"{what} #{ident}")
            if ids is not None and check_duplicates:
                await refuse_duplicates(self.db, s, ids, (what, ident))
            values["title"] = title.strip() if title else None
            before, after = await _patch(row, values)
            if ids is not None:
                added = await add_comms(s, what, ident, ids)
                if added:
                    after["added"] = ", ".join(added)
            add_timeline(s, what, ident, "updated", actor, before, after)
            if what == "lead":
                return (await lead_views(s, self.config, [row]))[0]
            return (await deal_views(s, [row]))[0]
