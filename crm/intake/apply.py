"""Applying a decision: one event's records, comms, activity, call rules, log update and
cards, written inside the intake transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstanceState
from sqlalchemy.orm.attributes import set_committed_value

from crm.changes import Change
from crm.config import CrmConfig
from crm.db import Database
from crm.dto import IntakeResult
from crm.intake.callmeta import merge_call_meta
from crm.intake.handover import hand_over
from crm.intake.labels import ACTIVITY_KIND, person_name, source_of, title
from crm.intake.notify import add_outbox, card_kind, one_card_per_event
from crm.intake.outcomes import imports_contact, stored_outcome
from crm.intake.rounds import Item, Round, queue_of
from crm.models import Activity, Company, Contact, Deal, Lead
from crm.repository import Row
from crm.services.builders import company_row, contact_row, deal_row, lead_row
from crm.services.calls import apply_call_rules
from crm.services.flags import recompute_client_flags
from crm.services.pipelines import pipeline_by_code, stage_by_code
from crm.services.rows import add_comms, add_timeline, bind_activity
from crm.tracking import KIND_OF_TABLE, clients_of, record, record_clients
from matching.channels import TITLE_CHARS
from matching.event import Channel, Direction, InboundEvent
from matching.model import Decision, EventIdentities, Outcome

log = logging.getLogger(__name__)


@dataclass
class Applied:
    lead_id: int | None = None
    deal_id: int | None = None
    contact_id: int | None = None
    company_id: int | None = None
    activity_id: int | None = None
    activity_created: bool = False
    task_id: int | None = None
    responsible_id: int | None = None
    created: list[tuple[str, int]] = field(default_factory=list)
    notify: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def applied_bindings(applied: Applied) -> list[tuple[str, int | None]]:
    return [
        ("deal", applied.deal_id),
        ("lead", applied.lead_id),
        ("company", applied.company_id),
        ("contact", applied.contact_id),
    ]


async def apply_item(
    s: AsyncSession,
    db: Database,
    config: CrmConfig,
    item: Item,
    rnd: Round,
    now: datetime,
    updates: list[dict[str, Any]],
) -> IntakeResult:
    """Write one decided event; its event-log update goes into `updates`."""
    event, ids, decision = item.event, item.ids, item.decision
    assert decision is not None
    applied = await Apply(s, db, config, event, ids, decision, now, rnd).run()
    if event.channel is Channel.CALL and decision.outcome is not Outcome.IGNORED:
        phone = item.phone
        await apply_call_rules(
            s,
            event,
            ids,
            applied_bindings(applied),
            now,
            applied,
            open_tasks=rnd.callbacks.get(phone, []) if phone else None,
            new_id=lambda: rnd.alloc.take(Activity),
            sink=rnd.sink,
        )
    outcome, reason = stored_outcome(event, decision)
    updates.append(
        {
            "id": item.log_id,
            "outcome": outcome,
            "reason": reason,
            "lead_id": applied.lead_id,
            "deal_id": applied.deal_id,
            "contact_id": applied.contact_id,
            "company_id": applied.company_id,
            "activity_id": applied.activity_id,
        }
    )
    for kind, payload in one_card_per_event(applied.notify):
        add_outbox(rnd.sink, kind, payload, item.log_id, event.channel, now, decision, applied)
    log.info("event %s:%s → %s (%s)", event.channel, event.external_id, outcome, reason)
    return IntakeResult(  # (not through `result`: its keyword arguments cost a dict a call)
        outcome=outcome,
        reason=reason,
        event_log_id=item.log_id,
        lead_id=applied.lead_id,
        deal_id=applied.deal_id,
        contact_id=applied.contact_id,
        company_id=applied.company_id,
        activity_id=applied.activity_id,
        task_id=applied.task_id,
        created=applied.created,
        responsible_id=applied.responsible_id,
    )


class Apply:
    """Turns one decision into records; runs inside the intake transaction."""

    def __init__(
        self,
        s: AsyncSession,
        db: Database,
        config: CrmConfig,
        event: InboundEvent,
        ids: EventIdentities,
        decision: Decision,
        now: datetime,
        rnd: Round,
    ) -> None:
        self.s, self.db, self.config, self.rnd = s, db, config, rnd
        self.event, self.ids, self.d, self.now = event, ids, decision, now
        self.out = Applied(contact_id=decision.contact_id, company_id=decision.company_id)
        self.labels: dict[str, str | None] = (
            {h.id: h.username for h in event.handles} if event.handles else {}
        )

    async def run(self) -> Applied:
        o = self.d.outcome
        if o is Outcome.IGNORED:
            return self.out
        if o in (Outcome.NEW_REPEAT_LEAD, Outcome.NEW_REPEAT_DEAL) and self.out.company_id is None:
            # A known contact who works for a company: the new record belongs to both.
            contact = await self._get(Contact, self.out.contact_id or 0)
            self.out.company_id = contact.company_id if contact else None
        if imports_contact(self.event, self.d):
            await self._import_contact()
        elif o is Outcome.NEW_LEAD:
            await self._new_lead(repeat=False)
        elif o is Outcome.NEW_REPEAT_LEAD:
            await self._new_lead(repeat=True)
        elif o is Outcome.NEW_DEAL:
            await self._new_deal(repeat=False)
        elif o is Outcome.NEW_REPEAT_DEAL:
            await self._new_deal(repeat=True)
        elif o is Outcome.ATTACHED_LEAD:
            await self._attach_lead()
        elif o is Outcome.ATTACHED_DEAL:
            await self._attach_deal()
        elif o is Outcome.ATTACHED_CLIENT:
            await self._attach_client()
        await self._activity()
        kind = card_kind(self.event, self.d, self.out.activity_created)
        if kind is not None:
            self.out.notify.append((kind, {}))
        return self.out

    # --- creating -------------------------------------------------------------------------

    def _responsible(self) -> int | None:
        if self.d.responsible_id is not None and self.d.responsible_id in self.rnd.active_reps:
            return self.d.responsible_id
        picks = self.rnd.picks.get(queue_of(self.event))
        return picks.popleft() if picks else None  # none: it waits in the unassigned queue

    async def _new_lead(self, repeat: bool) -> None:
        resp = self._responsible()
        lead_id = await self.rnd.alloc.take(Lead)
        # Written with the round's other rows: nothing reads the new lead back in this round.
        row = lead_row(
            self.config,
            id=lead_id,
            title=await self._title() if repeat else title(self.event),
            source=source_of(self.event),
            is_return_customer=repeat,
            name=person_name(self.event),
            company_title=self.event.company_name,
            contact_id=self.out.contact_id if repeat else None,
            company_id=self.out.company_id if repeat else None,
            responsible_id=resp,
            utm=self.event.meta.get("utm") or None,
            now=self.now,
        )
        stamps = {"created_at": row.pop("created_at"), "modified_at": row.pop("modified_at")}
        self.rnd.sink.add(Lead, stamps, **row)
        # Written around the ORM: its clients said here, or the commit would read them back.
        clients = clients_of(row["contact_id"], row["company_id"])
        record_clients(self.s.sync_session, ("lead", lead_id), clients)
        if repeat:
            await self._merge_into_client()
        else:
            await add_comms(
                self.s,
                "lead",
                lead_id,
                self.ids,
                handle_labels=self.labels,
                fresh=True,
                sink=self.rnd.sink,
            )
        add_timeline(
            self.s,
            "lead",
            lead_id,
            "created",
            None,
            after={"reason": self.d.reason},
            sink=self.rnd.sink,
        )
        self.out.lead_id, self.out.responsible_id = lead_id, resp
        self.out.created.append(("lead", lead_id))

    async def _title(self) -> str:
        """A repeat record of a nameless event (a call) is titled with the client it belongs
        to, not with a bare number. (A new client's record takes the event's title as it is,
        without a coroutine of this.)"""
        own = title(self.event)
        if person_name(self.event):
            return own
        # Both rows are in the session already (the round's preload); asking for an id that
        # is not there, or for a company when the contact has a name, would be a round trip.
        contact_id, company_id = self.out.contact_id, self.out.company_id
        contact = await self._get(Contact, contact_id) if contact_id is not None else None
        client = (contact.name or "") if contact is not None else ""
        if not client and company_id is not None:
            company = await self._get(Company, company_id)
            client = company.title if company is not None else ""
        return f"{client}: {own}"[:TITLE_CHARS] if client and client.strip() else own

    async def _new_deal(self, repeat: bool) -> None:
        resp = self._responsible()
        if not repeat:
            await self._new_client(resp)
        else:
            await self._merge_into_client()
        pipeline = await pipeline_by_code(self.s, self.event.meta.get("pipeline"))
        stage = await stage_by_code(self.s, pipeline, None)
        deal = Deal(
            **deal_row(
                id=await self.rnd.alloc.take(Deal),
                title=await self._title() if repeat else title(self.event),
                stage=stage,
                currency=self.config.currency,
                contact_id=self.out.contact_id,
                company_id=self.out.company_id,
                origin_repeat=repeat,
                responsible_id=resp,
                source=source_of(self.event),
                now=self.now,
            )
        )
        self.s.add(deal)
        add_timeline(
            self.s,
            "deal",
            deal.id,
            "created",
            None,
            after={"reason": self.d.reason},
            sink=self.rnd.sink,
        )
        await recompute_client_flags(self.s, deal.contact_id, deal.company_id)
        self.out.deal_id, self.out.responsible_id = deal.id, resp
        self.out.created.append(("deal", deal.id))

    async def _new_client(self, resp: int | None) -> None:
        """A contact with the event's comms, and its company when the event names one."""
        if self.event.company_name:
            company = Company(
                **company_row(
                    id=await self.rnd.alloc.take(Company),
                    title=self.event.company_name[:300],
                    responsible_id=resp,
                    now=self.now,
                )
            )
            self.s.add(company)
            self.out.company_id = company.id
            self.out.created.append(("company", company.id))
        contact = Contact(
            **contact_row(
                id=await self.rnd.alloc.take(Contact),
                name=person_name(self.event) or title(self.event),
                first_name=self.event.first_name,
                last_name=self.event.last_name,
                company_id=self.out.company_id,
                responsible_id=resp,
                now=self.now,
            )
        )
        self.s.add(contact)
        await add_comms(
            self.s,
            "contact",
            contact.id,
            self.ids,
            handle_labels=self.labels,
            fresh=True,
            sink=self.rnd.sink,
        )
        self.out.contact_id = contact.id
        self.out.created.append(("contact", contact.id))

    async def _import_contact(self) -> None:
        """Contact import: a new contact for an unknown person, else merge into the client."""
        if self.out.contact_id is None and self.out.company_id is None:
            resp = self._responsible()
            await self._new_client(resp)
            self.out.responsible_id = resp
        else:
            await self._attach_client()

    # --- attaching ------------------------------------------------------------------------

    async def _attach_lead(self) -> None:
        assert self.d.lead_id is not None
        lead = await self._get(Lead, self.d.lead_id)
        assert lead is not None
        if self.d.link_lead_to_client:
            lead.contact_id = lead.contact_id or self.d.contact_id
            lead.company_id = lead.company_id or self.d.company_id
            # A lead linked to a client is a repeat lead (R4.2): it converts into a deal only,
            # so the client is never duplicated.
            lead.is_return_customer = True
            add_timeline(
                self.s,
                "lead",
                lead.id,
                "linked",
                None,
                after={"contact_id": lead.contact_id, "company_id": lead.company_id},
                sink=self.rnd.sink,
            )
        if self.d.merge_into_lead:
            added = await add_comms(
                self.s,
                "lead",
                lead.id,
                self.ids,
                include_invalid=False,
                handle_labels=self.labels,
                held=self.rnd.repo.holds("lead", lead.id),
                sink=self.rnd.sink,
            )
            filled = {}
            if not lead.name and person_name(self.event):
                lead.name = filled["name"] = person_name(self.event)
            if not lead.company_title and self.event.company_name:
                lead.company_title = filled["company_title"] = self.event.company_name[:300]
            if added or filled:
                add_timeline(
                    self.s,
                    "lead",
                    lead.id,
                    "merged",
                    None,
                    after={"added": added, **filled},
                    sink=self.rnd.sink,
                )
        self._touch(lead)
        self.out.lead_id = lead.id
        self.out.contact_id = self.out.contact_id or lead.contact_id
        self.out.company_id = self.out.company_id or lead.company_id
        self.out.responsible_id = lead.responsible_id
        await self._merge_into_client()

    async def _attach_deal(self) -> None:
        assert self.d.deal_id is not None
        deal = await self._get(Deal, self.d.deal_id)
        assert deal is not None
        self._touch(deal)
        self.out.deal_id = deal.id
        self.out.contact_id = self.out.contact_id or deal.contact_id
        self.out.company_id = self.out.company_id or deal.company_id
        self.out.responsible_id = deal.responsible_id
        await self._merge_into_client()

    async def _attach_client(self) -> None:
        owner = await self._client_row()
        if owner is not None:
            self._touch(owner)
            self.out.responsible_id = owner.responsible_id
        await self._merge_into_client()

    async def _get(self, model: type[Row], row_id: int) -> Row | None:
        """A record of the session: the round's preload holds most, so no trip through the
        session's (greenlet-bridged) `get` for them."""
        row = self.rnd.repo.loaded(model, row_id)
        return row if row is not None else await self.s.get(model, row_id)

    def _touch(self, row: Lead | Deal | Contact | Company) -> None:
        """The record was written to now: its modified_at goes with the round's others in one
        UPDATE per table (`touched`), not in an ORM flush of one UPDATE each."""
        state: InstanceState[Any] = inspect(row)
        if state.persistent:
            set_committed_value(row, "modified_at", self.now)
            self.rnd.touched.append(row)
        else:  # created in this transaction and not flushed yet: its INSERT carries it
            row.modified_at = self.now

    async def _client_row(self) -> Contact | Company | None:
        if self.out.contact_id is not None:
            return await self._get(Contact, self.out.contact_id)
        if self.out.company_id is not None:
            return await self._get(Company, self.out.company_id)
        return None

    async def _merge_into_client(self) -> None:
        """New phones / emails / messenger ids go onto the client; nothing is overwritten."""
        if self.event.direction is Direction.OUTGOING:
            return
        owner_type, owner_id = (
            ("contact", self.out.contact_id)
            if self.out.contact_id is not None
            else ("company", self.out.company_id)
        )
        if owner_id is None:
            return
        added = await add_comms(
            self.s,
            owner_type,
            owner_id,
            self.ids,
            include_invalid=False,
            handle_labels=self.labels,
            held=self.rnd.repo.holds(owner_type, owner_id),
            sink=self.rnd.sink,
        )
        if added:
            add_timeline(
                self.s,
                owner_type,
                owner_id,
                "merged",
                None,
                after={"added": added},
                sink=self.rnd.sink,
            )

    # --- the activity and notifications ---------------------------------------------------

    async def _activity(self) -> None:
        kind = ACTIVITY_KIND.get(self.event.channel)
        if kind is None:
            return
        e = self.event
        ext = str(e.meta.get("call_id") or e.external_id)
        # Several events of one call share one activity.
        act = self.rnd.calls.get((e.channel.value, ext)) if e.meta.get("call_id") else None
        fresh = act is None
        meta = {k: v for k, v in e.meta.items() if k not in ("queue", "body")}
        if e.attachments:
            meta["attachments"] = [
                {"name": a.name, "content_type": a.content_type, "size": a.size}
                for a in e.attachments
            ]
        if act is None:
            counterparty = next((p.e164 for p in self.ids.phones if p.e164), None) or next(
                iter(self.ids.emails), None
            )
            act_id = await self.rnd.alloc.take(Activity)
            self.rnd.sink.add(
                Activity,
                {"done_at": self.now, "created_at": self.now},
                id=act_id,
                kind=kind,
                direction=str(e.direction),  # (str(): the value, without `.value`'s property)
                subject=(e.subject or title(self.event))[:500],
                body=(str(e.meta.get("body") or e.text or ""))[:50_000] or None,
                done=True,
                responsible_id=self.out.responsible_id,
                channel=str(e.channel),
                external_id=ext[:500],
                counterparty=counterparty,
                last_attempt_at=e.occurred_at,
                meta=meta,
            )
            self.out.activity_created = True
        else:
            act.meta = merge_call_meta(act.meta or {}, meta)
            act_id = act.id
            handed = await hand_over(self.s, e, act, self.rnd.active_reps, self.rnd.sink)
            if handed is not None:
                self.out.responsible_id = handed.rep_id
                self.out.notify.append(("assigned", handed.card()))
        await bind_activity(
            self.s, act_id, applied_bindings(self.out), fresh=fresh, sink=self.rnd.sink
        )
        self.out.activity_id = act_id


def touched(s: AsyncSession, rnd: Round, now: datetime) -> dict[Table, list[int]]:
    """The round's records an event went to, by table (tables and ids in order), to get their
    modified_at; the change each would have recorded as an ORM update (and, for leads and
    deals, the clients it has) are recorded here."""
    by_table: dict[Table, dict[int, Lead | Deal | Contact | Company]] = {}
    for row in rnd.touched:
        by_table.setdefault(cast(Table, type(row).__table__), {})[row.id] = row
    rnd.touched.clear()
    out: dict[Table, list[int]] = {}
    for table, rows in sorted(by_table.items(), key=lambda t: t[0].name):
        kind = KIND_OF_TABLE[table.name]
        ids = out[table] = sorted(rows)
        record(
            s.sync_session,
            [
                Change(kind, i, "changed", None, now, ("modified_at",), rows[i].responsible_id)
                for i in ids
            ],
        )
        if kind in ("lead", "deal"):
            for i in ids:
                row = rows[i]
                clients = clients_of(row.contact_id, row.company_id)  # type: ignore[union-attr]
                record_clients(s.sync_session, (kind, i), clients)
    return out
