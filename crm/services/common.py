"""Helpers shared by the services: loading views, timeline entries, communications, rights."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig
from crm.dto import (
    ActivityView,
    Actor,
    CommView,
    CompanyView,
    ContactView,
    DealView,
    LeadView,
    RepView,
)
from crm.errors import Forbidden, NotFound
from crm.models import (
    Activity,
    ActivityBinding,
    Base,
    Communication,
    Company,
    Contact,
    Deal,
    Lead,
    Pipeline,
    Rep,
    Stage,
    TimelineEntry,
    utcnow,
)
from matching.model import CommKind, EventIdentities, PhoneNumber

OWNER_MODELS: dict[str, Any] = {"lead": Lead, "deal": Deal, "contact": Contact, "company": Company}


async def get_or_404(session: AsyncSession, model: Any, ident: int, what: str) -> Any:
    row = await session.get(model, ident)
    if row is None:
        raise NotFound(f"{what} #{ident} does not exist")
    return row


def check_access(actor: Actor, responsible_id: int | None, what: str) -> None:
    """A rep works own records and unassigned queue items; supervisors and admins everything."""
    if actor.sees_everything or responsible_id is None or responsible_id == actor.rep_id:
        return
    raise Forbidden(f"{what} belongs to another rep")


class RowSink:
    """Rows nobody reads back in the transaction (timeline, bindings, comms of a batch),
    written later in one multi-row INSERT per table instead of an ORM object each."""

    def __init__(self) -> None:
        self._rows: dict[Any, list[dict[str, Any]]] = defaultdict(list)

    def add(self, model: Any, **values: Any) -> None:
        self._rows[model].append(values)

    async def flush(self, session: AsyncSession) -> None:
        """Parents before children (the tables' foreign-key order); one statement per table
        and set of columns given."""
        order = {t: n for n, t in enumerate(Base.metadata.sorted_tables)}
        for model in sorted(self._rows, key=lambda m: order[m.__table__]):
            shapes: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
            for row in self._rows[model]:
                shapes[tuple(row)].append(row)
            for rows in shapes.values():
                await session.execute(insert(model.__table__), rows)
        self._rows.clear()


def _put(session: AsyncSession, sink: RowSink | None, model: Any, **values: Any) -> None:
    if sink is not None:
        sink.add(model, **values)
    else:
        session.add(model(**values))


def add_timeline(
    session: AsyncSession,
    owner_type: str,
    owner_id: int,
    action: str,
    actor: Actor | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    *,
    sink: RowSink | None = None,
) -> None:
    _put(
        session,
        sink,
        TimelineEntry,
        owner_type=owner_type,
        owner_id=owner_id,
        actor_id=actor.rep_id if actor else None,
        action=action,
        before=_jsonable(before),
        after=_jsonable(after),
        at=utcnow(),
    )


def _jsonable(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if data is None:
        return None
    return {
        k: (v if isinstance(v, str | int | float | bool | None) else str(v))
        for k, v in data.items()
    }


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
        out[c.owner_id].append(CommView(kind=c.kind, raw=c.raw_value, value=c.value, label=c.label))
    return out


async def add_comms(
    session: AsyncSession,
    owner_type: str,
    owner_id: int,
    ids: EventIdentities,
    *,
    include_invalid: bool = True,
    handle_labels: dict[str, str | None] | None = None,
    fresh: bool = False,
    held: set[tuple[str, str]] | None = None,
    sink: RowSink | None = None,
) -> list[str]:
    """Attach the event's phones / emails / handles the owner does not have yet.

    Returns the normalized values added (for the timeline). Invalid phones are kept raw with
    value None so a rep can still read them, but they never match anyone. `held`: what the
    owner is already known to hold of these (valid) values, from a lookup the caller made.
    """
    have: set[tuple[str, str]] = set(held or ())
    if not fresh and held is None:  # a record created in this transaction has nothing yet
        existing = await session.execute(
            select(Communication.kind, Communication.value, Communication.raw_value).where(
                Communication.owner_type == owner_type, Communication.owner_id == owner_id
            )
        )
        have = {(k, v if v is not None else f"raw:{r}") for k, v, r in existing}
    added: list[str] = []

    def _add(kind: str, raw: str, value: str | None, label: str | None = None) -> None:
        key = (kind, value if value is not None else f"raw:{raw}")
        if key in have:
            return
        have.add(key)
        _put(
            session,
            sink,
            Communication,
            kind=kind,
            raw_value=raw[:320],
            value=value,
            owner_type=owner_type,
            owner_id=owner_id,
            label=label,
        )
        added.append(value or raw)

    for phone in ids.phones:
        if phone.valid or include_invalid:
            _add(CommKind.PHONE.value, phone.raw, phone.e164, _phone_label(phone))
    for email in ids.emails:
        _add(CommKind.EMAIL.value, email, email)
    for handle in ids.handles:
        label = (handle_labels or {}).get(handle.value)
        _add(handle.kind.value, label or handle.value, handle.value, label)
    return added


def _phone_label(phone: PhoneNumber) -> str | None:
    if not phone.valid:
        return "invalid"
    return f"ext. {phone.extension}" if phone.extension else None


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


async def bind_activity(
    session: AsyncSession,
    activity_id: int,
    owners: Iterable[tuple[str, int | None]],
    fresh: bool = False,
    sink: RowSink | None = None,
) -> None:
    have: set[tuple[str, int]] = set()
    if not fresh:
        existing = await session.execute(
            select(ActivityBinding.owner_type, ActivityBinding.owner_id).where(
                ActivityBinding.activity_id == activity_id
            )
        )
        have = {(t, i) for t, i in existing}
    for owner_type, owner_id in owners:
        if owner_id is not None and (owner_type, owner_id) not in have:
            have.add((owner_type, owner_id))
            _put(
                session,
                sink,
                ActivityBinding,
                activity_id=activity_id,
                owner_type=owner_type,
                owner_id=owner_id,
            )
