"""Records as the read-only views the bot, the API and the console show (names of reps
resolved, pipelines and stages by name)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig
from crm.dto import (
    ActivityView,
    CommView,
    CompanyView,
    ContactView,
    DealView,
    LeadView,
    RepView,
)
from crm.identity import shown_comm
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


async def comms_of(
    session: AsyncSession, owner_type: str, owner_ids: Sequence[int]
) -> dict[int, list[CommView]]:
    out: dict[int, list[CommView]] = defaultdict(list)
    if not owner_ids:
        return out
    rows = await session.scalars(
        select(Communication)
        .where(Communication.owner_type == owner_type, Communication.owner_id.in_(owner_ids))
        .order_by(Communication.id)
    )
    for c in rows:
        out[c.owner_id].append(
            CommView(
                kind=c.kind,
                raw=c.raw_value,
                value=c.value,
                label=c.label,
                extension=c.extension,
                display=shown_comm(c.kind, c.raw_value, c.value, c.extension),
            )
        )
    return out


async def rep_names(session: AsyncSession, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await session.execute(select(Rep.id, Rep.name).where(Rep.id.in_(wanted)))
    return {i: n for i, n in rows}


def rep_view(rep: Rep) -> RepView:
    return RepView(
        id=rep.id,
        name=rep.name,
        role=rep.role,
        active=rep.active,
        telegram_user_id=rep.telegram_user_id,
        email=rep.email,
        phone=rep.phone,
        extension=rep.extension,
    )


async def lead_views(
    session: AsyncSession, config: CrmConfig, leads: Sequence[Lead]
) -> list[LeadView]:
    comms = await comms_of(session, "lead", [lead.id for lead in leads])
    names = await rep_names(session, (lead.responsible_id for lead in leads))
    out = []
    for lead in leads:
        status = config.status(lead.status)
        out.append(
            LeadView(
                id=lead.id,
                title=lead.title,
                status=lead.status,
                status_name=status.name if status else lead.status,
                status_semantic=lead.status_semantic,
                source=lead.source,
                is_return_customer=lead.is_return_customer,
                name=lead.name,
                company_title=lead.company_title,
                contact_id=lead.contact_id,
                company_id=lead.company_id,
                responsible_id=lead.responsible_id,
                responsible_name=names.get(lead.responsible_id or 0),
                comms=comms.get(lead.id, []),
                comments=lead.comments,
                junk_reason=lead.junk_reason,
                utm=lead.utm,
                taken_at=lead.taken_at,
                created_at=lead.created_at,
                modified_at=lead.modified_at,
            )
        )
    return out


async def deal_views(session: AsyncSession, deals: Sequence[Deal]) -> list[DealView]:
    stage_ids = {d.stage_id for d in deals}
    stages: dict[int, tuple[Stage, Pipeline]] = {}
    if stage_ids:
        rows = await session.execute(
            select(Stage, Pipeline)
            .join(Pipeline, Pipeline.id == Stage.pipeline_id)
            .where(Stage.id.in_(stage_ids))
        )
        stages = {st.id: (st, p) for st, p in rows.all()}
    names = await rep_names(session, (d.responsible_id for d in deals))
    out = []
    for d in deals:
        stage, pipeline = stages[d.stage_id]
        out.append(
            DealView(
                id=d.id,
                title=d.title,
                pipeline=pipeline.code,
                pipeline_name=pipeline.name,
                stage=stage.code,
                stage_name=stage.name,
                stage_semantic=d.stage_semantic,
                amount=d.amount,
                currency=d.currency,
                contact_id=d.contact_id,
                company_id=d.company_id,
                lead_id=d.lead_id,
                is_return_customer=d.is_return_customer,
                is_repeated_approach=d.is_repeated_approach,
                responsible_id=d.responsible_id,
                responsible_name=names.get(d.responsible_id or 0),
                source=d.source,
                created_at=d.created_at,
                modified_at=d.modified_at,
                closed_at=d.closed_at,
                lost_reason=d.lost_reason,
            )
        )
    return out


async def contact_views(session: AsyncSession, contacts: Sequence[Contact]) -> list[ContactView]:
    comms = await comms_of(session, "contact", [c.id for c in contacts])
    company_ids = {c.company_id for c in contacts if c.company_id}
    titles: dict[int, str] = {}
    if company_ids:
        rows = await session.execute(
            select(Company.id, Company.title).where(Company.id.in_(company_ids))
        )
        titles = {i: t for i, t in rows}
    return [
        ContactView(
            id=c.id,
            name=c.name,
            first_name=c.first_name,
            last_name=c.last_name,
            company_id=c.company_id,
            company_title=titles.get(c.company_id or 0),
            responsible_id=c.responsible_id,
            comms=comms.get(c.id, []),
            created_at=c.created_at,
            modified_at=c.modified_at,
        )
        for c in contacts
    ]


async def company_views(session: AsyncSession, companies: Sequence[Company]) -> list[CompanyView]:
    ids = [c.id for c in companies]
    comms = await comms_of(session, "company", ids)
    members: dict[int, list[int]] = defaultdict(list)
    if ids:
        rows = await session.execute(
            select(Contact.company_id, Contact.id)
            .where(Contact.company_id.in_(ids))
            .order_by(Contact.id)
        )
        for company_id, contact_id in rows:
            if company_id is not None:
                members[company_id].append(contact_id)
    return [
        CompanyView(
            id=c.id,
            title=c.title,
            responsible_id=c.responsible_id,
            comms=comms.get(c.id, []),
            contact_ids=members.get(c.id, []),
            created_at=c.created_at,
            modified_at=c.modified_at,
        )
        for c in companies
    ]


async def activity_views(session: AsyncSession, acts: Sequence[Activity]) -> list[ActivityView]:
    ids = [a.id for a in acts]
    binds: dict[int, list[tuple[str, int]]] = defaultdict(list)
    if ids:
        rows = await session.execute(
            select(ActivityBinding).where(ActivityBinding.activity_id.in_(ids))
        )
        for b in rows.scalars():
            binds[b.activity_id].append((b.owner_type, b.owner_id))
    return [
        ActivityView(
            id=a.id,
            kind=a.kind,
            direction=a.direction,
            subject=a.subject,
            body=a.body,
            due_at=a.due_at,
            done=a.done,
            done_at=a.done_at,
            result=a.result,
            responsible_id=a.responsible_id,
            author_id=a.author_id,
            channel=a.channel,
            counterparty=a.counterparty,
            attempts=a.attempts,
            last_attempt_at=a.last_attempt_at,
            meta=a.meta or {},
            bindings=sorted(binds.get(a.id, [])),
            created_at=a.created_at,
        )
        for a in acts
    ]
