"""Field edits of leads and deals that have no use case of their own (title, name, comments,
source, phones / emails / handles added): the REST API's PATCH and an integration's `*.update`.
Status, stage and responsible keep their own use cases (`Leads`, `Deals`) and their rules. The
edit itself is the one every record's (crm.services.editing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import SYSTEM, Actor, DealView, LeadView
from crm.errors import InvalidInput
from crm.identity import Comms, identities
from crm.models import Deal, Lead
from crm.services.editing import edit
from crm.services.views import deal_views, lead_views


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
        values["title"] = patch.title.strip() if patch.title else None
        return await edit(
            self.db,
            Lead,
            self._lead_views,
            lead_id,
            values,
            actor,
            ids=ids,
            check_duplicates=check_duplicates,
        )

    async def update_deal(self, deal_id: int, patch: DealPatch, actor: Actor = SYSTEM) -> DealView:
        if patch.title is not None and not patch.title.strip():
            raise InvalidInput("a deal needs a title")
        if patch.amount is not None and (patch.amount < 0 or not patch.amount.is_finite()):
            raise InvalidInput("amount must be a number not below 0")
        values = {k: getattr(patch, k) for k in ("amount", "currency", "source")}
        values["title"] = patch.title.strip() if patch.title else None
        return await edit(self.db, Deal, deal_views, deal_id, values, actor)

    async def _lead_views(self, s: AsyncSession, leads: Sequence[Lead]) -> list[LeadView]:
        return await lead_views(s, self.config, leads)
