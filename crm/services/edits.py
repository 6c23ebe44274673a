"""Field edits of leads and deals that have no use case of their own (title, name, comments,
source, phones / emails added): what an integration's `*.update` call changes. Status, stage,
amount and responsible keep their own use cases (`Leads`, `Deals`) and their rules."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import SYSTEM, Actor, DealView, LeadView
from crm.errors import InvalidInput
from crm.identity import identities_from_values
from crm.models import Deal, Lead, utcnow
from crm.services.access import check_access, get_or_404
from crm.services.rows import add_comms, add_timeline
from crm.services.views import deal_views, lead_views


@dataclass(frozen=True, slots=True)
class LeadEdit:
    """None leaves a field as it is; phones and emails are added, never replaced."""

    title: str | None = None
    name: str | None = None
    company_title: str | None = None
    source: str | None = None
    comments: str | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DealEdit:
    title: str | None = None
    source: str | None = None
    currency: str | None = None


def _changes(record: Any, edit: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Set the edit's given fields on the record; the old values of what changed."""
    before: dict[str, Any] = {}
    for f in fields(edit):
        value = getattr(edit, f.name)
        if f.name in skip or value is None:
            continue
        if isinstance(value, str):
            value = value.strip()
            if f.name == "title" and not value:
                raise InvalidInput("the title must not be empty")
        if getattr(record, f.name) != value:
            before[f.name] = getattr(record, f.name)
            setattr(record, f.name, value)
    return before


class Edits:
    def __init__(self, db: Database, config: CrmConfig) -> None:
        self.db = db
        self.config = config

    async def lead(self, lead_id: int, edit: LeadEdit, actor: Actor = SYSTEM) -> LeadView:
        async with self.db.transaction() as s:
            lead: Lead = await get_or_404(s, Lead, lead_id, "lead")
            check_access(actor, lead.responsible_id, f"lead #{lead_id}")
            before = _changes(lead, edit, skip=("phones", "emails"))
            ids = identities_from_values(edit.phones, edit.emails, self.config.default_region)
            added = await add_comms(s, "lead", lead.id, ids)
            if before or added:
                lead.modified_at = utcnow()
                after = {k: getattr(lead, k) for k in before} | {"added": added}
                add_timeline(s, "lead", lead.id, "updated", actor, before=before, after=after)
            return (await lead_views(s, self.config, [lead]))[0]

    async def deal(self, deal_id: int, edit: DealEdit, actor: Actor = SYSTEM) -> DealView:
        async with self.db.transaction() as s:
            deal: Deal = await get_or_404(s, Deal, deal_id, "deal")
            check_access(actor, deal.responsible_id, f"deal #{deal_id}")
            before = _changes(deal, edit)
            if before:
                deal.modified_at = utcnow()
                after = {k: getattr(deal, k) for k in before}
                add_timeline(s, "deal", deal.id, "updated", actor, before=before, after=after)
            return (await deal_views(s, [deal]))[0]
