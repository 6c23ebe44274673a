"""Deals: create, move between stages and pipelines, win, lose, reopen, list."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import SYSTEM, Actor, DealView
from crm.errors import Conflict, InvalidInput, NotFound
from crm.models import Company, Contact, Deal, Pipeline, Stage, utcnow
from crm.services.access import act_as, check_access, get_or_404
from crm.services.builders import deal_row
from crm.services.editing import assign
from crm.services.flags import recompute_client_flags
from crm.services.listing import ListFilter, apply_common, page_of, visible_to
from crm.services.pipelines import first_stage_with, pipeline_by_code, stage_by_code
from crm.services.rows import add_timeline
from crm.services.views import deal_views


class Deals:
    def __init__(self, db: Database, config: CrmConfig) -> None:
        self.db = db
        self.config = config

    async def create(
        self,
        title: str,
        *,
        contact_id: int | None = None,
        company_id: int | None = None,
        pipeline: str | None = None,
        stage: str | None = None,
        amount: Decimal | None = None,
        currency: str | None = None,
        responsible_id: int | None = None,
        source: str | None = None,
        actor: Actor = SYSTEM,
    ) -> DealView:
        if not title.strip():
            raise InvalidInput("a deal needs a title")
        if amount is not None and amount < 0:
            raise InvalidInput("amount must not be negative")
        async with self.db.transaction() as s:
            if contact_id is not None:
                await get_or_404(s, Contact, contact_id, "contact")
            if company_id is not None:
                await get_or_404(s, Company, company_id, "company")
            pipe = await pipeline_by_code(s, pipeline)
            st = await stage_by_code(s, pipe, stage)
            deal = Deal(
                **deal_row(
                    title=title.strip(),
                    stage=st,
                    amount=amount,
                    currency=currency or self.config.currency,
                    contact_id=contact_id,
                    company_id=company_id,
                    responsible_id=responsible_id,
                    source=source,
                    now=utcnow(),
                )
            )
            act_as(actor)
            s.add(deal)
            await s.flush()
            add_timeline(s, "deal", deal.id, "created", actor, after={"stage": st.code})
            await recompute_client_flags(s, contact_id, company_id)
            return (await deal_views(s, [deal]))[0]

    async def get(self, deal_id: int, actor: Actor = SYSTEM) -> DealView:
        async with self.db.read() as s:
            deal: Deal = await get_or_404(s, Deal, deal_id, "deal")
            check_access(actor, deal.responsible_id, f"deal #{deal_id}")
            return (await deal_views(s, [deal]))[0]

    async def move(
        self,
        deal_id: int,
        stage: str,
        actor: Actor = SYSTEM,
        *,
        pipeline: str | None = None,
        reason: str | None = None,
    ) -> DealView:
        """Move to a stage of its pipeline, or of another pipeline when `pipeline` is given;
        `reason` says why it closes (a lost deal's)."""
        async with self.db.transaction() as s:
            deal = await self._deal(s, deal_id, actor)
            pipe = (
                await pipeline_by_code(s, pipeline)
                if pipeline
                else await s.get(Pipeline, deal.pipeline_id)
            )
            assert pipe is not None
            target = await stage_by_code(s, pipe, stage)
            return await self._set_stage(s, deal, target, actor, reason)

    async def win(self, deal_id: int, actor: Actor = SYSTEM) -> DealView:
        async with self.db.transaction() as s:
            deal = await self._deal(s, deal_id, actor)
            return await self._set_stage(
                s, deal, await first_stage_with(s, deal.pipeline_id, "success"), actor
            )

    async def lose(
        self, deal_id: int, actor: Actor = SYSTEM, reason: str | None = None
    ) -> DealView:
        """Lose a deal; `reason` is one of `config.lost_reasons` or the rep's own words."""
        reason = (reason or "").strip()[:500] or None
        async with self.db.transaction() as s:
            deal = await self._deal(s, deal_id, actor)
            deal.lost_reason = reason
            return await self._set_stage(
                s, deal, await first_stage_with(s, deal.pipeline_id, "failure"), actor, reason
            )

    async def reopen(self, deal_id: int, actor: Actor = SYSTEM) -> DealView:
        async with self.db.transaction() as s:
            deal = await self._deal(s, deal_id, actor)
            if deal.stage_semantic == "process":
                raise Conflict(f"deal #{deal_id} is open already")
            return await self._set_stage(
                s, deal, await first_stage_with(s, deal.pipeline_id, "process"), actor
            )

    async def set_amount(
        self, deal_id: int, amount: Decimal, actor: Actor = SYSTEM, currency: str | None = None
    ) -> DealView:
        if amount < 0:
            raise InvalidInput("amount must not be negative")
        async with self.db.transaction() as s:
            deal = await self._deal(s, deal_id, actor)
            before = {"amount": deal.amount}
            deal.amount = amount
            deal.currency = currency or deal.currency
            deal.modified_at = utcnow()
            add_timeline(s, "deal", deal.id, "amount", actor, before, {"amount": amount})
            return (await deal_views(s, [deal]))[0]

    async def assign(self, deal_id: int, rep_id: int, actor: Actor = SYSTEM) -> DealView:
        """Give a deal to an active rep: supervisors, admins and the system only."""
        return await assign(self.db, Deal, deal_views, deal_id, rep_id, actor)

    async def stages(self, pipeline: str | None = None) -> list[tuple[str, str, str]]:
        """(code, name, semantic) of a pipeline's stages, in order."""
        async with self.db.read() as s:
            pipe = await pipeline_by_code(s, pipeline)
            rows = await s.scalars(
                select(Stage).where(Stage.pipeline_id == pipe.id).order_by(Stage.sort)
            )
            return [(st.code, st.name, st.semantic) for st in rows]

    async def page(self, flt: ListFilter, actor: Actor = SYSTEM) -> tuple[list[DealView], int]:
        flt = flt.checked()
        query = select(Deal)
        if flt.pipeline:
            query = query.join(Pipeline, Pipeline.id == Deal.pipeline_id).where(
                Pipeline.code == flt.pipeline
            )
        if flt.status:
            query = query.join(Stage, Stage.id == Deal.stage_id).where(Stage.code == flt.status)
        if flt.is_repeated_approach is not None:
            query = query.where(Deal.is_repeated_approach.is_(flt.is_repeated_approach))
        query = apply_common(query, Deal, Deal.stage_semantic, flt)
        query = query.where(visible_to(actor, Deal.responsible_id))
        async with self.db.read() as s:
            rows, total = await page_of(s, query, Deal.id, flt.offset, flt.limit)
            return await deal_views(s, rows), total

    async def _deal(self, s: AsyncSession, deal_id: int, actor: Actor) -> Deal:
        deal = await s.get(Deal, deal_id)
        if deal is None:
            raise NotFound(f"deal #{deal_id} does not exist")
        check_access(actor, deal.responsible_id, f"deal #{deal_id}")
        return deal

    async def _set_stage(
        self, s: AsyncSession, deal: Deal, target: Stage, actor: Actor, reason: str | None = None
    ) -> DealView:
        old = await s.get(Stage, deal.stage_id)
        before = {"stage": old.code if old else None, "pipeline_id": deal.pipeline_id}
        now = utcnow()
        deal.pipeline_id, deal.stage_id, deal.stage_semantic = (
            target.pipeline_id,
            target.id,
            target.semantic,
        )
        deal.modified_at = now
        deal.closed_at = now if target.semantic != "process" else None
        if target.semantic != "failure":
            deal.lost_reason = None
        action = {"success": "won", "failure": "lost"}.get(target.semantic, "stage")
        after = {"stage": target.code, "pipeline_id": target.pipeline_id, "reason": reason}
        add_timeline(s, "deal", deal.id, action, actor, before, after)
        await recompute_client_flags(s, deal.contact_id, deal.company_id)
        return (await deal_views(s, [deal]))[0]
