"""Bitrix24 `crm.lead|contact|company|deal.list|get|add|update` on Leadbot's CRM services.

Reads are lists by a `RecordQuery` (SQL in the CRM, rights as a filter). Writes go through the
CRM like every channel: `crm.lead.add` and `crm.contact.add` with a phone or an email are an
inbound event decided by the matcher (an open lead of that phone is attached to, not
duplicated; the exception list refuses); the other writes call the use cases, which check the
rights of the token's user."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from channels.phone.bitrix_fields import Printer, selected
from channels.phone.bitrix_filters import ListRequest, list_request, paged
from channels.phone.bitrix_params import BitrixError
from channels.phone.bitrix_replies import Listed
from channels.phone.bitrix_values import (
    amount,
    comm_values,
    number,
    record_fields,
    record_id,
    text,
)
from crm.dto import Actor, IntakeResult
from crm.facade import Crm
from crm.identity import Comms
from crm.services.edits import DealPatch, LeadPatch
from crm.services.leads import LeadInput
from crm.services.querying import RecordQuery
from crm.services.records import ContactInput
from matching.event import Channel, InboundEvent
from matching.model import CrmMode
from matching.payloads import EventMeta

Method = Callable[[dict[str, Any], Actor], Awaitable[Any]]
Process = Callable[[InboundEvent], Awaitable[IntakeResult]]


class BitrixCrm:
    """The record methods; `crm` is the facade, `process` runs intake on one event now."""

    def __init__(self, crm: Crm, process: Process, printer: Callable[[], Printer]) -> None:
        self.crm = crm
        self.process = process
        self._printer = printer

    @property
    def printer(self) -> Printer:
        return self._printer()

    @property
    def pipelines(self) -> list[str]:
        return [p.code for p in self.crm.config.pipelines]

    def methods(self) -> dict[str, Method]:
        return {
            "crm.lead.list": self._lister("lead", self.crm.queries.leads),
            "crm.lead.get": self.lead_get,
            "crm.lead.add": self.lead_add,
            "crm.lead.update": self.lead_update,
            "crm.contact.list": self._lister("contact", self.crm.queries.contacts),
            "crm.contact.get": self.contact_get,
            "crm.contact.add": self.contact_add,
            "crm.contact.update": self.contact_update,
            "crm.company.list": self._lister("company", self.crm.queries.companies),
            "crm.company.get": self.company_get,
            "crm.company.add": self.company_add,
            "crm.company.update": self.company_update,
            "crm.deal.list": self._lister("deal", self.crm.queries.deals),
            "crm.deal.get": self.deal_get,
            "crm.deal.add": self.deal_add,
            "crm.deal.update": self.deal_update,
        }

    # --- shared -----------------------------------------------------------------------------

    def _lister(
        self,
        kind: str,
        load: Callable[[RecordQuery, Actor], Awaitable[tuple[list[Any], int | None]]],
    ) -> Method:
        """`crm.<kind>.list`: a page of records the webhook's rep may see."""

        async def run(params: dict[str, Any], actor: Actor) -> Listed:
            show = getattr(self.printer, kind)
            return await self.list_of(kind, params, lambda r: load(r.query, actor), show)

        return run

    async def _given_responsible(self, fields: Mapping[str, Any], actor: Actor) -> int | None:
        """ASSIGNED_BY_ID as given: a plain rep names only self, anybody names an active rep."""
        given = number(fields, "ASSIGNED_BY_ID")
        if given is None or given == actor.rep_id:
            return given
        if not actor.sees_everything:
            raise BitrixError("", "Access denied.")
        if not (await self.crm.reps.get(given)).active:
            raise BitrixError("", f"user #{given} is not active")
        return given

    async def _assignee(self, fields: Mapping[str, Any], actor: Actor) -> int | None:
        """The responsible of a new record: ASSIGNED_BY_ID, else the webhook's rep."""
        given = await self._given_responsible(fields, actor)
        return given if given is not None else actor.rep_id

    async def _decided(self, event: InboundEvent, what: str) -> IntakeResult:
        """Intake of a written record; the exception list and an event intake ignores are
        refused with the matcher's reason."""
        result = await self.process(event)
        if result.outcome == "ignored":
            raise BitrixError("", f"the {what} was not saved: {result.reason}")
        return result

    @staticmethod
    def _event(fields: Mapping[str, Any], phones: Sequence[str], emails: Sequence[str]) -> Any:
        return {
            "channel": Channel.IMPORT,
            "external_id": f"bitrix-rest:{uuid.uuid4().hex}",
            "occurred_at": datetime.now(UTC),
            "first_name": text(fields, "NAME"),
            "last_name": text(fields, "LAST_NAME"),
            "phones": tuple(phones),
            "emails": tuple(emails),
        }

    async def list_of(
        self,
        kind: str,
        params: Mapping[str, Any],
        load: Callable[[ListRequest], Awaitable[tuple[list[Any], int | None]]],
        show: Callable[[Any], dict[str, Any]],
    ) -> Listed:
        request = list_request(kind, params, self.pipelines)
        rows, total = await load(request)
        following, total = paged(request, len(rows), total)
        items = [selected(show(r), request.select) for r in rows]
        return Listed(items, following, total)

    # --- leads ------------------------------------------------------------------------------

    async def lead_get(self, params: dict[str, Any], actor: Actor) -> dict[str, Any]:
        return self.printer.lead(await self.crm.leads.get(record_id(params), actor))

    async def lead_add(self, params: dict[str, Any], actor: Actor) -> int:
        fields = record_fields(params)
        if (await self.crm.settings.get()).crm_mode is CrmMode.SIMPLE:
            # Simple mode has no leads: the matcher would make a contact and a deal, which is
            # not what a lead add answers for. Refused before anything is written.
            raise BitrixError(
                "",
                "leads are off: the CRM runs in simple mode (contacts and deals); "
                "use crm.contact.add and crm.deal.add",
            )
        phones, emails = comm_values(fields.get("PHONE")), comm_values(fields.get("EMAIL"))
        responsible = await self._assignee(fields, actor)
        contact_id, company_id = number(fields, "CONTACT_ID"), number(fields, "COMPANY_ID")
        title, source = text(fields, "TITLE"), text(fields, "SOURCE_ID") or "OTHER"
        comments = text(fields, "COMMENTS")
        status = self._settable_status(text(fields, "STATUS_ID"))
        if contact_id or company_id or not (phones or emails):
            # Nothing for the matcher to match, or the client is named: a lead of its own.
            who = " ".join(p for p in (text(fields, "NAME"), text(fields, "LAST_NAME")) if p)
            view = await self.crm.leads.create(
                LeadInput(
                    title=title or who or text(fields, "COMPANY_TITLE") or "Lead",
                    source=source,
                    name=who or None,
                    company_title=text(fields, "COMPANY_TITLE"),
                    responsible_id=responsible,
                    contact_id=contact_id,
                    company_id=company_id,
                    comments=comments,
                ),
                actor,
            )
            lead_id, created = view.id, True
        else:
            meta = EventMeta(queue=[responsible] if responsible else [])
            if title:
                meta["title"] = title
            event = InboundEvent(
                **self._event(fields, phones, emails),
                company_name=text(fields, "COMPANY_TITLE"),
                source=source,
                meta=meta,
            )
            result = await self._decided(event, "lead")
            if result.lead_id is None:
                raise BitrixError("", f"no lead was created or found: {result.reason}")
            lead_id, created = result.lead_id, ("lead", result.lead_id) in result.created
            if comments and created:
                await self.crm.edits.update_lead(lead_id, LeadPatch(comments=comments))
            elif comments:
                await self.crm.activities.comment("lead", lead_id, comments, actor)
        if status and created and status != self.crm.config.lead_statuses[0].code:
            await self.crm.leads.change_status(lead_id, status, actor)
        return lead_id

    def _settable_status(self, status: str | None) -> str | None:
        """A STATUS_ID a write may set, checked before anything is written (a write either
        happens whole or not at all)."""
        if status is None:
            return None
        target = self.crm.config.status(status)
        if target is None:
            known = ", ".join(s.code for s in self.crm.config.lead_statuses)
            raise BitrixError("", f"unknown STATUS_ID {status[:40]!r} (known: {known})")
        if target.semantic == "success":
            raise BitrixError("", f"{status} is set by converting the lead, not by a write")
        return status

    async def _new_responsible(self, given: int | None, current: int | None, actor: Actor) -> bool:
        """Whether ASSIGNED_BY_ID changes the responsible; refused up front when the webhook's
        rep may not reassign or the rep is not an active one."""
        if given is None or given == current:
            return False
        if not actor.sees_everything:
            raise BitrixError("", "Access denied.")
        rep = await self.crm.reps.get(given)
        if not rep.active:
            raise BitrixError("", f"user #{given} is not active")
        return True

    async def lead_update(self, params: dict[str, Any], actor: Actor) -> bool:
        lead_id, fields = record_id(params), record_fields(params)
        current = await self.crm.leads.get(lead_id, actor)
        status = self._settable_status(text(fields, "STATUS_ID"))
        status = status if status != current.status else None
        if status and not current.is_open:
            raise BitrixError("", f"lead #{lead_id} is closed ({current.status})")
        responsible = number(fields, "ASSIGNED_BY_ID")
        reassign = await self._new_responsible(responsible, current.responsible_id, actor)
        who = " ".join(p for p in (text(fields, "NAME"), text(fields, "LAST_NAME")) if p)
        await self.crm.edits.update_lead(
            lead_id,
            LeadPatch(
                title=text(fields, "TITLE"),
                name=who or None,
                company_title=text(fields, "COMPANY_TITLE"),
                source=text(fields, "SOURCE_ID"),
                comments=text(fields, "COMMENTS"),
                comms=Comms(
                    phones=comm_values(fields.get("PHONE")),
                    emails=comm_values(fields.get("EMAIL")),
                ),
            ),
            actor,
        )
        if status:
            await self.crm.leads.change_status(lead_id, status, actor)
        if reassign and responsible is not None:
            await self.crm.leads.assign(lead_id, responsible, actor)
        return True

    # --- contacts and companies -------------------------------------------------------------

    async def contact_get(self, params: dict[str, Any], actor: Actor) -> dict[str, Any]:
        return self.printer.contact(await self.crm.records.get_contact(record_id(params), actor))

    def _contact_input(self, fields: Mapping[str, Any], responsible: int | None) -> ContactInput:
        return ContactInput(
            first_name=text(fields, "NAME"),
            last_name=text(fields, "LAST_NAME"),
            company_id=number(fields, "COMPANY_ID"),
            responsible_id=responsible,
            phones=comm_values(fields.get("PHONE")),
            emails=comm_values(fields.get("EMAIL")),
            comments=text(fields, "COMMENTS"),
        )

    async def contact_add(self, params: dict[str, Any], actor: Actor) -> int:
        fields = record_fields(params)
        data = self._contact_input(fields, await self._assignee(fields, actor))
        if data.company_id is not None or not (data.phones or data.emails):
            return (await self.crm.records.create_contact(data, actor)).id
        queue = [data.responsible_id] if data.responsible_id else []
        event = InboundEvent(
            **self._event(fields, data.phones, data.emails),
            meta=EventMeta(import_as="contact", queue=queue),
        )
        result = await self._decided(event, "contact")
        if result.contact_id is None:
            raise BitrixError("", f"no contact was created or found: {result.reason}")
        return result.contact_id

    async def contact_update(self, params: dict[str, Any], actor: Actor) -> bool:
        fields = record_fields(params)
        responsible = await self._given_responsible(fields, actor)
        await self.crm.records.update_contact(
            record_id(params), self._contact_input(fields, responsible), actor
        )
        return True

    async def company_get(self, params: dict[str, Any], actor: Actor) -> dict[str, Any]:
        return self.printer.company(await self.crm.records.get_company(record_id(params), actor))

    async def company_add(self, params: dict[str, Any], actor: Actor) -> int:
        fields = record_fields(params)
        view = await self.crm.records.create_company(
            text(fields, "TITLE") or "",
            phones=comm_values(fields.get("PHONE")),
            emails=comm_values(fields.get("EMAIL")),
            responsible_id=await self._assignee(fields, actor),
            actor=actor,
        )
        return view.id

    async def company_update(self, params: dict[str, Any], actor: Actor) -> bool:
        fields = record_fields(params)
        responsible = await self._given_responsible(fields, actor)
        await self.crm.records.update_company(
            record_id(params),
            title=text(fields, "TITLE"),
            phones=comm_values(fields.get("PHONE")),
            emails=comm_values(fields.get("EMAIL")),
            responsible_id=responsible,
            actor=actor,
        )
        return True

    # --- deals ------------------------------------------------------------------------------

    async def deal_get(self, params: dict[str, Any], actor: Actor) -> dict[str, Any]:
        return self.printer.deal(await self.crm.deals.get(record_id(params), actor))

    def _stage(self, fields: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """(pipeline code, stage code) of CATEGORY_ID and STAGE_ID ("C<n>:CODE")."""
        pipelines = self.pipelines
        category = number(fields, "CATEGORY_ID")
        stage = text(fields, "STAGE_ID")
        if stage and stage.startswith("C") and ":" in stage:
            prefix, _, stage = stage.partition(":")
            category = int(prefix[1:]) if prefix[1:].isdigit() else category
        if category is None:
            return None, stage
        if not 0 <= category < len(pipelines):
            raise BitrixError("", f"CATEGORY_ID {category} does not exist")
        return pipelines[category], stage

    async def deal_add(self, params: dict[str, Any], actor: Actor) -> int:
        fields = record_fields(params)
        pipeline, stage = self._stage(fields)
        view = await self.crm.deals.create(
            text(fields, "TITLE") or "Deal",
            contact_id=number(fields, "CONTACT_ID"),
            company_id=number(fields, "COMPANY_ID"),
            pipeline=pipeline,
            stage=stage,
            amount=amount(fields, "OPPORTUNITY"),
            currency=text(fields, "CURRENCY_ID"),
            responsible_id=await self._assignee(fields, actor),
            source=text(fields, "SOURCE_ID"),
            actor=actor,
        )
        return view.id

    async def deal_update(self, params: dict[str, Any], actor: Actor) -> bool:
        deal_id, fields = record_id(params), record_fields(params)
        current = await self.crm.deals.get(deal_id, actor)
        # Everything checked before the first write: an update happens whole or not at all.
        pipeline, stage = self._stage(fields)
        target = (stage or current.stage, pipeline or current.pipeline)
        stages = [
            s.code for p in self.crm.config.pipelines if p.code == target[1] for s in p.stages
        ]
        if target[0] not in stages:
            raise BitrixError("", f"STAGE_ID {target[0][:40]!r} is no stage of that funnel")
        value = amount(fields, "OPPORTUNITY")
        responsible = number(fields, "ASSIGNED_BY_ID")
        reassign = await self._new_responsible(responsible, current.responsible_id, actor)
        await self.crm.edits.update_deal(
            deal_id,
            DealPatch(
                title=text(fields, "TITLE"),
                source=text(fields, "SOURCE_ID"),
                currency=text(fields, "CURRENCY_ID"),
            ),
            actor,
        )
        if target != (current.stage, current.pipeline):
            await self.crm.deals.move(deal_id, target[0], actor, pipeline=target[1])
        if value is not None:
            await self.crm.deals.set_amount(deal_id, value, actor, text(fields, "CURRENCY_ID"))
        if reassign and responsible is not None:
            await self.crm.deals.assign(deal_id, responsible, actor)
        return True
