"""The write routes of /api/v1: hand-made records with duplicate control, edits, comments,
call-back reminders, conversion, status and stage changes, win / lose, assignment. Each
calls the CRM service a console or the bot calls, as the token's actor (its rep, or the
system), so the same rights apply."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from crm.dto import ActivityView, CompanyView, ContactView, DealView, LeadView
from crm.facade import Crm
from crm.identity import Comms
from crm.services.edits import DealPatch, LeadPatch
from crm.services.handmade import (
    CompanyDraft,
    ContactDraft,
    DealDraft,
    LeadDraft,
    Saved,
    Target,
)
from crm.services.leads import ConversionResult
from crm.services.records import ContactInput
from leadbot.api.bodies import (
    Assign,
    Body,
    Comment,
    CommsFields,
    Convert,
    CreateCompany,
    CreateContact,
    CreateDeal,
    CreateLead,
    DealStage,
    Duplicates,
    LeadStatus,
    Lose,
    NewContact,
    Reminder,
    UpdateCompany,
    UpdateContact,
    UpdateDeal,
    UpdateLead,
    Win,
)
from leadbot.api.routes import ID, Answer, Args, Handler, Route
from leadbot.api.serialize import ref, to_json

REFUSALS = (403, 404, 409, 413, 422)
T = TypeVar("T")


def _comms(b: CommsFields) -> Comms:
    return Comms(tuple(b.phones), tuple(b.emails), tuple(b.telegram), tuple(b.whatsapp))


def _target(b: Duplicates) -> Target | None:
    return (b.attach_to.type, b.attach_to.id) if b.attach_to else None


def _draft(cls: type[T], b: Body, **given: Any) -> T:
    """A CRM input dataclass from a body: the fields both have, plus `given`."""
    names = {f.name for f in fields(cls)} - set(given)  # type: ignore[arg-type]
    return cls(**{k: v for k, v in b.model_dump().items() if k in names}, **given)


def _contact_draft(b: NewContact) -> ContactDraft:
    return _draft(ContactDraft, b, comms=_comms(b))


def _saved(saved: Saved) -> Answer:
    """201 for a new record; 200 when the data went onto an existing one."""
    return Answer(200 if saved.attached else 201, to_json(saved))


async def _create_contact(crm: Crm, args: Args) -> Any:
    b: CreateContact = args["body"]
    return _saved(
        await crm.handmade.create_contact(
            _contact_draft(b), args["actor"], force=b.force, attach_to=_target(b)
        )
    )


async def _create_company(crm: Crm, args: Args) -> Any:
    b: CreateCompany = args["body"]
    draft = _draft(
        CompanyDraft,
        b,
        comms=_comms(b),
        contacts=tuple(_contact_draft(c) for c in b.contacts),
        contact_ids=tuple(b.contact_ids),
    )
    return _saved(
        await crm.handmade.create_company(draft, args["actor"], force=b.force, attach_to=_target(b))
    )


async def _create_lead(crm: Crm, args: Args) -> Any:
    b: CreateLead = args["body"]
    draft = _draft(LeadDraft, b, comms=_comms(b))
    return _saved(
        await crm.handmade.create_lead(draft, args["actor"], force=b.force, attach_to=_target(b))
    )


async def _create_deal(crm: Crm, args: Args) -> Any:
    draft = _draft(DealDraft, args["body"])
    return _saved(await crm.handmade.create_deal(draft, args["actor"]))


async def _update_contact(crm: Crm, args: Args) -> Any:
    b: UpdateContact = args["body"]
    data = _draft(
        ContactInput,
        b,
        phones=tuple(b.phones),
        emails=tuple(b.emails),
        telegram=tuple(b.telegram),
        whatsapp=tuple(b.whatsapp),
    )
    return to_json(
        await crm.records.update_contact(
            args["id"], data, args["actor"], check_duplicates=not b.force
        )
    )


async def _update_company(crm: Crm, args: Args) -> Any:
    b: UpdateCompany = args["body"]
    return to_json(
        await crm.records.update_company(
            args["id"],
            title=b.title,
            phones=tuple(b.phones),
            emails=tuple(b.emails),
            telegram=tuple(b.telegram),
            whatsapp=tuple(b.whatsapp),
            actor=args["actor"],
            check_duplicates=not b.force,
        )
    )


async def _update_lead(crm: Crm, args: Args) -> Any:
    b: UpdateLead = args["body"]
    patch = _draft(LeadPatch, b, comms=_comms(b))
    return to_json(
        await crm.edits.update_lead(args["id"], patch, args["actor"], check_duplicates=not b.force)
    )


async def _update_deal(crm: Crm, args: Args) -> Any:
    patch = _draft(DealPatch, args["body"])
    return to_json(await crm.edits.update_deal(args["id"], patch, args["actor"]))


def _comment(owner_type: str) -> Handler:
    async def handler(crm: Crm, args: Args) -> Any:
        b: Comment = args["body"]
        return to_json(await crm.activities.comment(owner_type, args["id"], b.text, args["actor"]))

    return handler


def _reminder(owner_type: str) -> Handler:
    async def handler(crm: Crm, args: Args) -> Any:
        b: Reminder = args["body"]
        act = await crm.activities.schedule(
            owner_type,
            args["id"],
            due_at=b.due_at,
            subject=b.subject,
            kind="call",
            responsible_id=b.responsible_id,
            actor=args["actor"],
        )
        return to_json(act)

    return handler


async def _convert(crm: Crm, args: Args) -> Any:
    b: Convert = args["body"]
    result = await crm.leads.convert(
        args["id"],
        args["actor"],
        into=tuple(b.into) if b.into is not None else None,
        existing_deal_id=b.existing_deal_id,
        amount=b.amount,
    )
    return to_json(result)


async def _lead_status(crm: Crm, args: Args) -> Any:
    b: LeadStatus = args["body"]
    target = crm.config.status(b.status)
    if target is not None and target.semantic == "failure":
        return to_json(await crm.leads.junk(args["id"], b.reason, args["actor"], b.status))
    return to_json(await crm.leads.change_status(args["id"], b.status, args["actor"]))


async def _deal_stage(crm: Crm, args: Args) -> Any:
    b: DealStage = args["body"]
    return to_json(await crm.deals.move(args["id"], b.stage, args["actor"], pipeline=b.pipeline))


async def _win(crm: Crm, args: Args) -> Any:
    b: Win = args["body"]
    if b.amount is not None:
        await crm.deals.set_amount(args["id"], b.amount, args["actor"], b.currency)
    return to_json(await crm.deals.win(args["id"], args["actor"]))


async def _lose(crm: Crm, args: Args) -> Any:
    b: Lose = args["body"]
    return to_json(await crm.deals.lose(args["id"], args["actor"], b.reason))


def _assign(one: str) -> Handler:
    async def handler(crm: Crm, args: Args) -> Any:
        b: Assign = args["body"]
        assign = {
            "lead": crm.leads.assign,
            "deal": crm.deals.assign,
            "contact": crm.records.assign_contact,
            "company": crm.records.assign_company,
        }[one]
        return to_json(await assign(args["id"], b.rep_id, args["actor"]))

    return handler


SAVED_SCHEMA: dict[str, Any] = {"$ref": "#/components/schemas/SavedRecord"}


def _write(
    path: str,
    operation_id: str,
    summary: str,
    response: dict[str, Any],
    handler: Handler,
    body: type[Body],
    *,
    method: str = "POST",
    status: int = 200,
) -> Route:
    return Route(
        path,
        operation_id,
        summary,
        response,
        handler,
        (ID,) if "{id}" in path else (),
        method=method,
        body=body,
        scope="write",
        status=status,
        refusals=REFUSALS,
    )


def write_routes() -> list[Route]:
    creates: list[tuple[str, str, type[Body], Handler, str]] = [
        ("leads", "lead", CreateLead, _create_lead, "duplicate-checked"),
        ("contacts", "contact", CreateContact, _create_contact, "duplicate-checked"),
        ("companies", "company", CreateCompany, _create_company, "with its contacts, checked"),
        ("deals", "deal", CreateDeal, _create_deal, "on a contact and / or company"),
    ]
    updates: list[tuple[str, str, type[Body], Handler, type]] = [
        ("leads", "lead", UpdateLead, _update_lead, LeadView),
        ("contacts", "contact", UpdateContact, _update_contact, ContactView),
        ("companies", "company", UpdateCompany, _update_company, CompanyView),
        ("deals", "deal", UpdateDeal, _update_deal, DealView),
    ]
    routes = [
        _write(
            f"/{plural}",
            f"create_{one}",
            f"Create a {one} ({what}); 200 when attach_to put the data on a record",
            SAVED_SCHEMA,
            handler,
            body,
            status=201,
        )
        for plural, one, body, handler, what in creates
    ]
    routes += [
        _write(
            f"/{plural}/{{id}}",
            f"update_{one}",
            f"Change a {one}'s fields (phones and emails are added, never replaced"
            + (")" if one == "deal" else "; one another record holds is a 409 unless force)"),
            ref(view),
            handler,
            body,
            method="PATCH",
        )
        for plural, one, body, handler, view in updates
    ]
    for plural, one in (
        ("leads", "lead"),
        ("contacts", "contact"),
        ("companies", "company"),
        ("deals", "deal"),
    ):
        routes.append(
            _write(
                f"/{plural}/{{id}}/comments",
                f"comment_{one}",
                f"Comment on a {one}",
                ref(ActivityView),
                _comment(one),
                Comment,
                status=201,
            )
        )
        routes.append(
            _write(
                f"/{plural}/{{id}}/reminders",
                f"remind_{one}",
                f"A call-back reminder on a {one}",
                ref(ActivityView),
                _reminder(one),
                Reminder,
                status=201,
            )
        )
    routes += [
        _write(
            "/leads/{id}/convert",
            "convert_lead",
            "Convert a lead",
            ref(ConversionResult),
            _convert,
            Convert,
        ),
        _write(
            "/leads/{id}/status",
            "set_lead_status",
            "Change a lead's status (a failure status junks it, with the reason)",
            ref(LeadView),
            _lead_status,
            LeadStatus,
        ),
        _write(
            "/deals/{id}/stage",
            "move_deal",
            "Move a deal to a stage",
            ref(DealView),
            _deal_stage,
            DealStage,
        ),
        _write(
            "/deals/{id}/win",
            "win_deal",
            "Close a deal as won (optionally with its final amount)",
            ref(DealView),
            _win,
            Win,
        ),
        _write(
            "/deals/{id}/lose",
            "lose_deal",
            "Close a deal as lost, with the reason",
            ref(DealView),
            _lose,
            Lose,
        ),
    ]
    for plural, one, view in (
        ("leads", "lead", LeadView),
        ("deals", "deal", DealView),
        ("contacts", "contact", ContactView),
        ("companies", "company", CompanyView),
    ):
        routes.append(
            _write(
                f"/{plural}/{{id}}/assign",
                f"assign_{one}",
                f"Give a {one} to a rep (supervisors and the system)",
                ref(view),
                _assign(one),
                Assign,
            )
        )
    return routes


BODIES: list[type[Body]] = [
    CreateLead,
    CreateContact,
    CreateCompany,
    CreateDeal,
    UpdateLead,
    UpdateContact,
    UpdateCompany,
    UpdateDeal,
    Comment,
    Reminder,
    Convert,
    LeadStatus,
    DealStage,
    Win,
    Lose,
    Assign,
]
