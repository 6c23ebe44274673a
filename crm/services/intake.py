"""Intake: apply the matcher's decision to one inbound event, exactly once.

One transaction writes the event log row (its unique (channel, external id) is the truth about
"already processed"), the records the decision creates or changes, the activity and the outbox
rows for rep notifications. Events touching the same identity are serialized by
`Database.lock_identities`, so concurrent events never create two leads for one person.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import IntakeResult
from crm.models import (
    Activity,
    Company,
    Contact,
    Deal,
    InboundEventLog,
    Lead,
    OutboxMessage,
    Rep,
    utcnow,
)
from crm.repository import SqlCandidateRepository
from crm.services.calls import apply_call_rules
from crm.services.common import add_comms, add_timeline, bind_activity
from crm.services.exceptions import exception_hits
from crm.services.flags import recompute_client_flags
from crm.services.pipelines import pipeline_by_code, stage_by_code
from crm.services.reps import next_in_queue
from crm.services.runtime import current_match_settings
from matching.decide import decide
from matching.event import Channel, Direction, InboundEvent
from matching.finder import find_candidates
from matching.identities import event_identities
from matching.model import Candidates, Decision, EventIdentities, MatchSettings, Outcome

log = logging.getLogger(__name__)

SETTINGS_TTL = 2.0

ACTIVITY_KIND = {
    Channel.EMAIL: "email",
    Channel.CALL: "call",
    Channel.TELEGRAM: "message",
    Channel.WHATSAPP: "message",
    Channel.WEBFORM: "webform",
}
SOURCE = {
    Channel.EMAIL: "EMAIL",
    Channel.CALL: "CALL",
    Channel.TELEGRAM: "TELEGRAM",
    Channel.WHATSAPP: "WHATSAPP",
    Channel.WEBFORM: "WEBFORM",
    Channel.IMPORT: "IMPORT",
}


class SeenCache(Protocol):
    """Optional fast path for duplicates (Redis SET NX); the database stays the truth."""

    async def seen(self, key: str) -> bool: ...

    async def mark(self, key: str) -> None: ...


@dataclass
class _Applied:
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


class Intake:
    def __init__(
        self,
        db: Database,
        config: CrmConfig,
        *,
        seen: SeenCache | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.config = config
        self.seen = seen
        self.clock = clock
        self._settings: tuple[float, MatchSettings] | None = None

    async def process(self, event: InboundEvent) -> IntakeResult:
        key = f"{event.channel.value}:{event.external_id}"
        if self.seen is not None and await self.seen.seen(key):
            return await self._duplicate(event)
        try:
            result = await self._process(event)
        except IntegrityError:
            # Another worker committed the same event first (unique channel + external id).
            return await self._duplicate(event)
        if self.seen is not None:
            await self.seen.mark(key)
        return result

    async def _duplicate(self, event: InboundEvent) -> IntakeResult:
        async with self.db.read() as s:
            row = await _logged(s, event)
        if row is None:  # the cache said seen but the row is gone (restored backup): redo
            return await self._process(event)
        return IntakeResult(
            outcome=Outcome.DUPLICATE.value,
            reason=f"already processed as event #{row.id} ({row.outcome})",
            event_log_id=row.id,
            lead_id=row.lead_id,
            deal_id=row.deal_id,
            contact_id=row.contact_id,
            company_id=row.company_id,
            activity_id=row.activity_id,
        )

    async def _process(self, event: InboundEvent) -> IntakeResult:
        now = self.clock()
        ids = event_identities(event, self.config.default_region)
        async with self.db.transaction() as s:
            log_row = InboundEventLog(
                channel=event.channel.value,
                external_id=event.external_id,
                received_at=now,
                occurred_at=event.occurred_at,
                direction=event.direction.value,
                outcome="processing",
                reason="",
                payload=event.to_json(),
            )
            s.add(log_row)
            await s.flush()  # raises IntegrityError for a duplicate
            await self.db.lock_identities(s, [i.key for i in ids.matchable()])
            decision = await self._decide(s, event, ids, now)
            applied = await _Apply(s, self.db, self.config, event, ids, decision, now).run()
            if event.channel is Channel.CALL and decision.outcome is not Outcome.IGNORED:
                await apply_call_rules(s, event, ids, applied_bindings(applied), now, applied)
            outcome, reason = _stored_outcome(event, decision)
            log_row.outcome = outcome
            log_row.reason = reason
            log_row.lead_id, log_row.deal_id = applied.lead_id, applied.deal_id
            log_row.contact_id, log_row.company_id = applied.contact_id, applied.company_id
            log_row.activity_id = applied.activity_id
            await s.flush()
            for kind, payload in applied.notify:
                self._outbox(s, kind, payload, log_row, decision, applied)
            log.info(
                "event %s:%s → %s (%s)", event.channel.value, event.external_id, outcome, reason
            )
            return IntakeResult(
                outcome=outcome,
                reason=reason,
                event_log_id=log_row.id,
                lead_id=applied.lead_id,
                deal_id=applied.deal_id,
                contact_id=applied.contact_id,
                company_id=applied.company_id,
                activity_id=applied.activity_id,
                task_id=applied.task_id,
                created=applied.created,
                responsible_id=applied.responsible_id,
            )

    async def preview(self, event: InboundEvent) -> IntakeResult:
        """The outcome and reason `process` would give `event` now; nothing is written.

        The ids are those of the records it would attach to (none for records it would create).
        Used by dry runs (`leadbot import-csv --dry-run`).
        """
        now = self.clock()
        ids = event_identities(event, self.config.default_region)
        async with self.db.sessions() as s:
            try:
                seen = await _logged(s, event)
                if seen is not None:
                    return IntakeResult(
                        outcome=Outcome.DUPLICATE.value,
                        reason=f"already processed as event #{seen.id} ({seen.outcome})",
                        event_log_id=seen.id,
                    )
                decision = await self._decide(s, event, ids, now)
            finally:
                await s.rollback()
        outcome, reason = _stored_outcome(event, decision)
        return IntakeResult(
            outcome=outcome,
            reason=reason,
            lead_id=decision.lead_id,
            deal_id=decision.deal_id,
            contact_id=decision.contact_id,
            company_id=decision.company_id,
            responsible_id=decision.responsible_id,
        )

    async def _decide(
        self, s: AsyncSession, event: InboundEvent, ids: EventIdentities, now: datetime
    ) -> Decision:
        settings = await self._match_settings(s)
        cands = await find_candidates(SqlCandidateRepository(s), ids, settings)
        cands = await self._thread(s, event, cands)
        hits = await exception_hits(s, ids.exception_checked())
        return decide(event, ids, cands, settings, hits, now)

    def forget_settings(self) -> None:
        self._settings = None

    async def _match_settings(self, s: AsyncSession) -> MatchSettings:
        """The admin's runtime settings, re-read at most every SETTINGS_TTL seconds: a change
        made in /settings reaches every worker process within that time."""
        now = time.monotonic()
        if self._settings is None or now - self._settings[0] > SETTINGS_TTL:
            self._settings = (now, await current_match_settings(s, self.config.match))
        return self._settings[1]

    async def _thread(self, s: AsyncSession, event: InboundEvent, cands: Candidates) -> Candidates:
        """A mail reply goes where its thread lives, if that lead / deal is still open."""
        refs = [
            str(r) for r in (event.meta.get("in_reply_to"), *event.meta.get("references", ())) if r
        ]
        if not refs:
            return cands
        rows = await s.execute(
            select(InboundEventLog.lead_id, InboundEventLog.deal_id)
            .where(
                InboundEventLog.channel == event.channel.value,
                InboundEventLog.external_id.in_(refs),
            )
            .order_by(InboundEventLog.id.desc())
        )
        for lead_id, deal_id in rows:
            if deal_id is not None:
                deal = await s.get(Deal, deal_id)
                if deal is not None and deal.stage_semantic == "process":
                    return replace(cands, thread_deal_id=deal_id)
            if lead_id is not None:
                lead = await s.get(Lead, lead_id)
                if lead is not None and lead.status_semantic == "process":
                    return replace(cands, thread_lead_id=lead_id)
        return cands

    def _outbox(
        self,
        s: AsyncSession,
        kind: str,
        payload: dict[str, Any],
        log_row: InboundEventLog,
        decision: Decision,
        applied: _Applied,
    ) -> None:
        body = {
            "event_id": log_row.id,
            "channel": log_row.channel,
            "outcome": decision.outcome.value,
            "reason": decision.reason,
            "lead_id": applied.lead_id,
            "deal_id": applied.deal_id,
            "contact_id": applied.contact_id,
            "company_id": applied.company_id,
            "activity_id": applied.activity_id,
            **payload,
        }
        s.add(
            OutboxMessage(
                rep_id=applied.responsible_id,
                kind=kind,
                payload=body,
                created_at=log_row.received_at,
                next_attempt_at=log_row.received_at,
            )
        )


# Outcomes that create a lead or a deal; a contact import turns them into a contact instead.
_CREATING = frozenset(
    {Outcome.NEW_LEAD, Outcome.NEW_REPEAT_LEAD, Outcome.NEW_DEAL, Outcome.NEW_REPEAT_DEAL}
)


def _imports_contact(event: InboundEvent, decision: Decision) -> bool:
    return event.meta.get("import_as") == "contact" and decision.outcome in _CREATING


def _stored_outcome(event: InboundEvent, decision: Decision) -> tuple[str, str]:
    """Outcome and reason as logged and returned; a contact import never makes a lead/deal."""
    if not _imports_contact(event, decision):
        return decision.outcome.value, decision.reason
    why = decision.reason.partition(" → ")[0]
    if decision.contact_id is None and decision.company_id is None:
        return "new_contact", f"{why} → new contact (contact import)"
    return Outcome.ATTACHED_CLIENT.value, f"{why} → details merged into the client (contact import)"


# How far a call has got; events may arrive out of order (retries, several workers).
_STAGE_RANK = {"ringing": 0, "answered": 1, "ended": 2, "missed": 2}
_OUTCOME_KEYS = ("stage", "missed", "disposition")


def merge_call_meta(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Later events of a call refine its activity (duration, disposition, recording); an
    earlier stage that arrives late fills gaps but never takes the call's outcome back."""
    late = _STAGE_RANK.get(str(new.get("stage")), -1) < _STAGE_RANK.get(str(old.get("stage")), -1)
    merged = {**old, **{k: v for k, v in new.items() if v is not None}}
    if late:
        for key in _OUTCOME_KEYS:
            if key in old:
                merged[key] = old[key]
    return merged


async def _logged(s: AsyncSession, event: InboundEvent) -> InboundEventLog | None:
    """The event log row of an event already processed (unique channel + external id)."""
    return await s.scalar(
        select(InboundEventLog).where(
            InboundEventLog.channel == event.channel.value,
            InboundEventLog.external_id == event.external_id,
        )
    )


def applied_bindings(applied: _Applied) -> list[tuple[str, int | None]]:
    return [
        ("deal", applied.deal_id),
        ("lead", applied.lead_id),
        ("company", applied.company_id),
        ("contact", applied.contact_id),
    ]


class _Apply:
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
    ) -> None:
        self.s, self.db, self.config = s, db, config
        self.event, self.ids, self.d, self.now = event, ids, decision, now
        self.out = _Applied(contact_id=decision.contact_id, company_id=decision.company_id)
        self.labels: dict[str, str | None] = {h.id: h.username for h in event.handles}

    async def run(self) -> _Applied:
        o = self.d.outcome
        if o is Outcome.IGNORED:
            return self.out
        if o in (Outcome.NEW_REPEAT_LEAD, Outcome.NEW_REPEAT_DEAL) and self.out.company_id is None:
            # A known contact who works for a company: the new record belongs to both.
            contact = await self.s.get(Contact, self.out.contact_id or 0)
            self.out.company_id = contact.company_id if contact else None
        if _imports_contact(self.event, self.d):
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
        self._notify()
        return self.out

    # --- creating -------------------------------------------------------------------------

    async def _responsible(self) -> int | None:
        if self.d.responsible_id is not None and await self._active(self.d.responsible_id):
            return self.d.responsible_id
        queue = self.event.meta.get("queue") or ()
        name = f"{self.event.channel.value}:{self.event.line}" if queue else "default"
        members = [int(r) for r in queue]
        if self.db.is_sqlite:  # one writer at a time anyway
            return await next_in_queue(self.s, name, members)
        # Its own short transaction, so concurrent new leads do not wait on each other's
        # commit; a pick whose lead then rolls back only skips a turn.
        for attempt in range(3):
            try:
                async with self.db.transaction() as rr:
                    return await next_in_queue(rr, name, members)
            except IntegrityError:
                if attempt == 2:
                    raise
        return None

    async def _active(self, rep_id: int) -> bool:
        rep = await self.s.get(Rep, rep_id)
        return rep is not None and rep.active

    def _title(self) -> str:
        e = self.event
        if e.meta.get("title"):
            return str(e.meta["title"])[:300]
        who = e.display_name or " ".join(p for p in (e.first_name, e.last_name) if p)
        number = e.phones[0] if e.phones else None
        if e.channel is Channel.CALL:
            return f"{number or 'unknown number'} — incoming call"
        if e.channel is Channel.EMAIL:
            return (e.subject or f"Lead from e-mail {e.emails[0] if e.emails else who}")[:300]
        if e.channel is Channel.WEBFORM:
            return f"Web form {e.line or ''}: {who or number or (e.emails or ('',))[0]}"[:300]
        label = {Channel.TELEGRAM: "Telegram", Channel.WHATSAPP: "WhatsApp"}.get(e.channel)
        if label:
            return f"{label}: {who or number or 'new customer'}"[:300]
        return (who or e.company_name or number or (e.emails or ("Import",))[0])[:300]

    def _name(self) -> str | None:
        e = self.event
        joined = " ".join(p for p in (e.first_name, e.last_name) if p)
        return (e.display_name or joined or None) and (e.display_name or joined)[:300]

    async def _new_lead(self, repeat: bool) -> None:
        status = self.config.lead_statuses[0]
        resp = await self._responsible()
        lead = Lead(
            title=self._title(),
            status=status.code,
            status_semantic=status.semantic,
            source=self.event.source or SOURCE[self.event.channel],
            is_return_customer=repeat,
            name=self._name(),
            company_title=self.event.company_name,
            contact_id=self.out.contact_id if repeat else None,
            company_id=self.out.company_id if repeat else None,
            responsible_id=resp,
            utm=self.event.meta.get("utm") or None,
            created_at=self.now,
            modified_at=self.now,
        )
        self.s.add(lead)
        await self.s.flush()
        if repeat:
            await self._merge_into_client()
        else:
            await add_comms(
                self.s, "lead", lead.id, self.ids, handle_labels=self.labels, fresh=True
            )
        add_timeline(self.s, "lead", lead.id, "created", None, after={"reason": self.d.reason})
        self.out.lead_id, self.out.responsible_id = lead.id, resp
        self.out.created.append(("lead", lead.id))

    async def _new_deal(self, repeat: bool) -> None:
        resp = await self._responsible()
        if not repeat:
            await self._new_client(resp)
        else:
            await self._merge_into_client()
        pipeline = await pipeline_by_code(self.s, self.event.meta.get("pipeline"))
        stage = await stage_by_code(self.s, pipeline, None)
        deal = Deal(
            title=self._title(),
            pipeline_id=pipeline.id,
            stage_id=stage.id,
            stage_semantic=stage.semantic,
            currency=self.config.currency,
            contact_id=self.out.contact_id,
            company_id=self.out.company_id,
            origin_repeat=repeat,
            responsible_id=resp,
            source=self.event.source or SOURCE[self.event.channel],
            created_at=self.now,
            modified_at=self.now,
        )
        self.s.add(deal)
        await self.s.flush()
        add_timeline(self.s, "deal", deal.id, "created", None, after={"reason": self.d.reason})
        await recompute_client_flags(self.s, deal.contact_id, deal.company_id)
        self.out.deal_id, self.out.responsible_id = deal.id, resp
        self.out.created.append(("deal", deal.id))

    async def _new_client(self, resp: int | None) -> None:
        """A contact with the event's comms, and its company when the event names one."""
        if self.event.company_name:
            company = Company(
                title=self.event.company_name[:300],
                responsible_id=resp,
                created_at=self.now,
                modified_at=self.now,
            )
            self.s.add(company)
            await self.s.flush()
            self.out.company_id = company.id
            self.out.created.append(("company", company.id))
        contact = Contact(
            name=self._name() or self._title(),
            first_name=self.event.first_name,
            last_name=self.event.last_name,
            company_id=self.out.company_id,
            responsible_id=resp,
            created_at=self.now,
            modified_at=self.now,
        )
        self.s.add(contact)
        await self.s.flush()
        await add_comms(
            self.s, "contact", contact.id, self.ids, handle_labels=self.labels, fresh=True
        )
        self.out.contact_id = contact.id
        self.out.created.append(("contact", contact.id))

    async def _import_contact(self) -> None:
        """Contact import: a new contact for an unknown person, else merge into the client."""
        if self.out.contact_id is None and self.out.company_id is None:
            resp = await self._responsible()
            await self._new_client(resp)
            self.out.responsible_id = resp
        else:
            await self._attach_client()

    # --- attaching ------------------------------------------------------------------------

    async def _attach_lead(self) -> None:
        assert self.d.lead_id is not None
        lead = await self.s.get(Lead, self.d.lead_id)
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
            )
        if self.d.merge_into_lead:
            added = await add_comms(
                self.s,
                "lead",
                lead.id,
                self.ids,
                include_invalid=False,
                handle_labels=self.labels,
            )
            filled = {}
            if not lead.name and self._name():
                lead.name = filled["name"] = self._name()
            if not lead.company_title and self.event.company_name:
                lead.company_title = filled["company_title"] = self.event.company_name[:300]
            if added or filled:
                add_timeline(
                    self.s, "lead", lead.id, "merged", None, after={"added": added, **filled}
                )
        lead.modified_at = self.now
        self.out.lead_id = lead.id
        self.out.contact_id = self.out.contact_id or lead.contact_id
        self.out.company_id = self.out.company_id or lead.company_id
        self.out.responsible_id = lead.responsible_id
        await self._merge_into_client()

    async def _attach_deal(self) -> None:
        assert self.d.deal_id is not None
        deal = await self.s.get(Deal, self.d.deal_id)
        assert deal is not None
        deal.modified_at = self.now
        self.out.deal_id = deal.id
        self.out.contact_id = self.out.contact_id or deal.contact_id
        self.out.company_id = self.out.company_id or deal.company_id
        self.out.responsible_id = deal.responsible_id
        await self._merge_into_client()

    async def _attach_client(self) -> None:
        owner = await self._client_row()
        if owner is not None:
            owner.modified_at = self.now
            self.out.responsible_id = owner.responsible_id
        await self._merge_into_client()

    async def _client_row(self) -> Contact | Company | None:
        if self.out.contact_id is not None:
            return await self.s.get(Contact, self.out.contact_id)
        if self.out.company_id is not None:
            return await self.s.get(Company, self.out.company_id)
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
        )
        if added:
            add_timeline(self.s, owner_type, owner_id, "merged", None, after={"added": added})

    # --- the activity and notifications ---------------------------------------------------

    async def _activity(self) -> None:
        kind = ACTIVITY_KIND.get(self.event.channel)
        if kind is None:
            return
        e = self.event
        ext = str(e.meta.get("call_id") or e.external_id)
        act = None
        if e.meta.get("call_id"):  # several events of one call share one activity
            act = await self.s.scalar(
                select(Activity).where(
                    Activity.channel == e.channel.value, Activity.external_id == ext
                )
            )
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
            act = Activity(
                kind=kind,
                direction=e.direction.value,
                subject=(e.subject or self._title())[:500],
                body=(str(e.meta.get("body") or e.text or ""))[:50_000] or None,
                done=True,
                done_at=self.now,
                responsible_id=self.out.responsible_id,
                channel=e.channel.value,
                external_id=ext[:500],
                counterparty=counterparty,
                last_attempt_at=e.occurred_at,
                meta=meta,
                created_at=self.now,
            )
            self.s.add(act)
            await self.s.flush()
            self.out.activity_created = True
        else:
            act.meta = merge_call_meta(act.meta or {}, meta)
        await bind_activity(self.s, act.id, applied_bindings(self.out), fresh=fresh)
        self.out.activity_id = act.id

    def _notify(self) -> None:
        e = self.event
        if e.direction is Direction.OUTGOING or e.channel is Channel.IMPORT:
            return
        kind = {
            Outcome.NEW_LEAD: "new_lead",
            Outcome.NEW_REPEAT_LEAD: "repeat_lead",
            Outcome.NEW_DEAL: "new_deal",
            Outcome.NEW_REPEAT_DEAL: "repeat_deal",
        }.get(self.d.outcome)
        if kind is None and self.out.activity_created:
            kind = "activity"
        if kind is not None:
            self.out.notify.append((kind, {}))
