"""Records typed in by hand: /app/new/contact, /app/new/company, /app/new/deal, /app/new/lead.

Each form posts to itself and the crm service (`crm.handmade`) does the work: it checks the
phones, emails and messenger handles against every known record, as intake would match them.
A hit re-renders the form with the holders and two ways on: attach the data to one of them, or
save anyway. Our own script (create.js) asks `/app/new/check` as the user leaves a phone or
email field, so the warning shows before the submit; the submit alone does everything without
the script. Contacts and companies are picked by search: the script fills the hidden id from
`/app/new/find`; without it the server resolves the typed text and lists the choices when it is
not exactly one record.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from console.duplicates import hit_json, record_url
from console.web import (
    PREFIX,
    STATUS,
    Context,
    Refused,
    api,
    crm_of,
    current_actor,
    flash,
    page,
    redirect,
    render,
)
from crm.dto import Actor
from crm.errors import CrmError, NotFound
from crm.facade import Crm
from crm.identity import Comms
from crm.services.handmade import (
    ATTACHABLE,
    CompanyDraft,
    ContactDraft,
    DealDraft,
    DuplicateHit,
    DuplicateWarning,
    LeadDraft,
    Saved,
    Target,
)
from httpkit import read_form
from matching.channels import sources

NEW = f"{PREFIX}/new"
KINDS = ("contact", "company", "deal", "lead")
ROWS = 2  # empty new-contact rows a company form starts with
MAX_ROWS = 20  # new contacts in one company form (as the write API takes)
MAX_TEXT = 200  # a field's characters (the write API's limit, within the columns)
MAX_COMMENT = 20_000
MAX_ITEMS = 20  # phones or emails in one field
MAX_ID = 2**31 - 1  # ids are 32-bit on PostgreSQL: a larger one would fail the query
MAX_AMOUNT = Decimal(10) ** 16  # the amount column: 18 digits, 2 of them decimals
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tabs and line breaks are text
CURRENCY = re.compile(r"[A-Z]{3}")
FIND_LIMIT = 10
# What a hit's data may be put onto, per form (a company only merges into a company).
ATTACH_TO = {
    "contact": ("lead", "contact", "company"),
    "company": ("company",),
    "lead": ("lead", "contact", "company"),
}
SPLIT = re.compile(r"[,;\n]+")
RECORD_ID = re.compile(r"#?(\d{1,12})")

Form = MultiDictProxy[Any]
# A lead's source: the channels' codes and the ones a person reports.
SOURCES = list(dict.fromkeys(("OTHER", *sources(), "RECOMMENDATION", "PARTNER")))


# --- reading the form -------------------------------------------------------------------------


def _text(form: Form, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _texts(form: Form, name: str) -> list[str]:
    return [v.strip() if isinstance(v, str) else "" for v in form.getall(name, [])]


def _split(raw: str) -> tuple[str, ...]:
    """Several phones or emails typed into one field, separated by commas or semicolons."""
    return tuple(p.strip() for p in SPLIT.split(raw) if p.strip())


def _id(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and len(raw) <= 12 and 0 < int(raw) <= MAX_ID else None


def _chosen(form: Form, name: str) -> int | None:
    """The picked id: the script's hidden field, or a choice ticked without the script."""
    return next((i for i in map(_id, _texts(form, name)) if i is not None), None)


def _comms(values: dict[str, str], prefix: str = "") -> Comms:
    return Comms(
        phones=_split(values.get(f"{prefix}phones", "")),
        emails=_split(values.get(f"{prefix}emails", "")),
        telegram=_split(values.get(f"{prefix}telegram", "")),
        whatsapp=_split(values.get(f"{prefix}whatsapp", "")),
    )


@dataclass
class Row:
    """A new contact typed into a company form."""

    name: str = ""
    phones: str = ""
    emails: str = ""

    @property
    def empty(self) -> bool:
        return not (self.name or self.phones or self.emails)

    def draft(self, owner_id: int | None) -> ContactDraft:
        comms = Comms(phones=_split(self.phones), emails=_split(self.emails))
        return ContactDraft(name=self.name or None, comms=comms, owner_id=owner_id)


@dataclass
class Pick:
    """A contact or company chosen by search: `id` once chosen, else what was typed and, when
    that was not exactly one record, the records it could mean."""

    kind: str
    id: int | None = None
    label: str = ""
    query: str = ""
    choices: list[tuple[int, str]] = field(default_factory=list)
    problem: str = ""


@dataclass
class Draft:
    """One form as typed, to save or to show again."""

    kind: str
    values: dict[str, str] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    picks: dict[str, Pick] = field(default_factory=dict)
    members: list[Pick] = field(default_factory=list)  # existing contacts joining a company
    member_choices: list[tuple[int, str]] = field(default_factory=list)
    shown_rows: int = 0  # new-contact rows the form had, filled or not
    member_problem: str = ""

    @property
    def unresolved(self) -> bool:
        return any(p.query and p.id is None for p in self.picks.values()) or bool(
            self.member_choices or self.member_problem
        )


FIELDS = {
    "contact": ("first_name", "last_name", "phones", "emails", "telegram", "whatsapp", "comments"),
    "company": ("title", "phones", "emails"),
    "deal": ("title", "stage", "amount", "currency"),
    "lead": ("title", "name", "company_title", "phones", "emails", "source", "comments"),
}
PICKS = {"contact": ("company",), "deal": ("contact", "company")}


def _label(kind: str, record: Any) -> str:
    if kind == "contact":
        company = f" · {record.company_title}" if record.company_title else ""
        phones = f" · {', '.join(record.phones[:1])}" if record.phones else ""
        return f"{record.name} #{record.id}{company}{phones}"
    return f"{record.title} #{record.id}"


async def _by_id(crm: Crm, actor: Actor, kind: str, record_id: int) -> tuple[int, str] | None:
    getter = crm.records.get_contact if kind == "contact" else crm.records.get_company
    try:
        record = await getter(record_id, actor)
    except CrmError:
        return None  # unknown or not theirs: as if nothing matched
    return record.id, _label(kind, record)


async def find(crm: Crm, actor: Actor, kind: str, query: str) -> list[tuple[int, str]]:
    """Contacts or companies the actor may see whose name, phone or email matches, or the one
    numbered `#12`."""
    query = query.strip()
    if CONTROL.search(query) or len(query) > MAX_TEXT:
        return []  # nobody's name holds them (and PostgreSQL refuses a NUL)
    number = RECORD_ID.fullmatch(query)
    if number and (query.startswith("#") or len(query) < 5):
        hit = await _by_id(crm, actor, kind, int(number.group(1)))
        return [hit] if hit else []
    found = await crm.search.find(query, actor, limit=FIND_LIMIT)
    if kind == "contact":
        return [(c.id, _label("contact", c)) for c in found.contacts]
    return [(cid, f"{title} #{cid}") for cid, title in found.companies]


async def _resolve(crm: Crm, actor: Actor, pick: Pick) -> Pick:
    """The chosen record's label, or what the typed text finds (chosen when exactly one)."""
    if pick.id is not None:
        hit = await _by_id(crm, actor, pick.kind, pick.id)
        if hit is None:
            return Pick(pick.kind, query=pick.query, problem=f"{pick.kind} #{pick.id} not found")
        return Pick(pick.kind, hit[0], hit[1])
    if not pick.query:
        return pick
    choices = await find(crm, actor, pick.kind, pick.query)
    if len(choices) == 1:
        return Pick(pick.kind, choices[0][0], choices[0][1])
    problem = (
        f"several {pick.kind} records match {pick.query!r}: choose one"
        if choices
        else f"no {pick.kind} matches {pick.query!r}"
    )
    return Pick(pick.kind, query=pick.query, choices=choices, problem=problem)


async def read_draft(request: web.Request, kind: str) -> tuple[Draft, str]:
    """The form as typed and the button pressed (`action`)."""
    form: Form = await read_form(request)
    crm, actor = crm_of(request), current_actor(request)
    draft = Draft(kind, {name: _text(form, name) for name in FIELDS[kind]})
    draft.values["owner_id"] = _text(form, "owner_id")
    for name in PICKS.get(kind, ()):
        pick = Pick(name, _chosen(form, f"{name}_id"), query=_text(form, f"{name}_q"))
        draft.picks[name] = await _resolve(crm, actor, pick)
    if kind == "company":
        names, phones, emails = (_texts(form, f"row_{f}") for f in ("name", "phones", "emails"))
        rows = [Row(*parts) for parts in zip(names, phones, emails, strict=False)]
        draft.rows = [r for r in rows if not r.empty][:MAX_ROWS]
        draft.shown_rows = len(rows)
        seen: set[int] = set()
        for raw in _texts(form, "member_id"):
            member_id = _id(raw)
            if member_id is not None and member_id not in seen:
                seen.add(member_id)
                draft.members.append(await _resolve(crm, actor, Pick("contact", member_id)))
        query = _text(form, "member_q")
        if query:
            everyone = await find(crm, actor, "contact", query)
            found = [c for c in everyone if c[0] not in seen]
            if not everyone:
                draft.member_problem = f"no contact matches {query!r}"
                draft.values["member_q"] = query
            elif len(found) == 1 and _text(form, "action") != "find":
                draft.members.append(Pick("contact", found[0][0], found[0][1]))
            else:  # listed to tick (Find, or several match); all ticked already: done
                draft.member_choices = found
    return draft, _text(form, "action") or "save"


# --- rendering --------------------------------------------------------------------------------


async def _owners(crm: Crm, actor: Actor) -> list[tuple[int, str]]:
    """Whom a supervisor may give the record to; a rep's records are their own (no choice)."""
    if not actor.sees_everything:
        return []
    return [(r.id, r.name) for r in await crm.reps.all(include_inactive=False)]


def _stages(crm: Crm) -> list[tuple[str, list[tuple[str, str]]]]:
    """Pipelines with their open stages, as `pipeline:stage` options."""
    return [
        (p.name, [(f"{p.code}:{s.code}", s.name) for s in p.stages if s.semantic == "process"])
        for p in crm.config.pipelines
    ]


TITLES = {
    "contact": "New contact",
    "company": "New company",
    "deal": "New deal",
    "lead": "New lead",
}


async def form_page(
    request: web.Request,
    draft: Draft,
    *,
    status: int = 200,
    hits: Sequence[DuplicateHit] = (),
    error: str = "",
) -> web.StreamResponse:
    crm, actor = crm_of(request), current_actor(request)
    rows = draft.rows or [Row() for _ in range(ROWS)] if draft.kind == "company" else []
    attachable = ATTACH_TO.get(draft.kind, ())
    context: Context = {
        "title": TITLES[draft.kind],
        "kind": draft.kind,
        "v": draft.values,
        "rows": rows,
        "picks": draft.picks,
        "members": [m for m in draft.members if m.id is not None],
        "member_choices": draft.member_choices,
        "owners": await _owners(crm, actor),
        "stages": _stages(crm),
        "sources": SOURCES,
        "currency": crm.config.currency,
        "hits": [
            hit_json(h) | {"attach": h.owner_type in attachable and not h.hidden} for h in hits
        ],
        "error": error,
    }
    return render(request, f"create_{draft.kind}.html", context, status=status)


# --- saving -----------------------------------------------------------------------------------


def _owner(draft: Draft) -> int | None:
    return _id(draft.values.get("owner_id", ""))


def _amount(raw: str) -> Decimal | None:
    if not raw:
        return None
    try:
        amount = Decimal(raw.replace(" ", "").replace(",", "."))
    except InvalidOperation:
        raise Refused(422, f"amount {raw!r} is not a number") from None
    if not amount.is_finite():
        raise Refused(422, f"amount {raw!r} is not a number")
    if amount >= MAX_AMOUNT or amount != amount.quantize(Decimal("0.01")):
        raise Refused(422, f"amount {raw!r}: below {MAX_AMOUNT:,} with at most 2 decimals")
    return amount


def check_text(draft: Draft) -> None:
    """What the columns and PostgreSQL take: no control characters (a NUL fails the query),
    lengths within the columns, at most MAX_ITEMS phones or emails a field."""
    fields = [(name, value) for name, value in draft.values.items()]
    for row in draft.rows:
        fields += [("row_name", row.name), ("row_phones", row.phones), ("row_emails", row.emails)]
    for name, value in fields:
        label = name.removeprefix("row_").replace("_", " ")
        limit = MAX_COMMENT if name == "comments" else MAX_TEXT
        if len(value) > limit:
            raise Refused(422, f"{label} is longer than {limit} characters")
        if CONTROL.search(value):
            raise Refused(422, f"{label} holds control characters")
        if len(_split(value)) > MAX_ITEMS:
            raise Refused(422, f"{label}: at most {MAX_ITEMS}, separated by commas")


def _target(action: str, kind: str) -> Target | None:
    """`attach:lead:12` → ("lead", 12), for the kinds this form may attach to."""
    parts = action.split(":")
    if len(parts) == 3 and parts[0] == "attach" and parts[1] in ATTACH_TO.get(kind, ()):
        record_id = _id(parts[2])
        if record_id is not None:
            return parts[1], record_id
    return None


async def save(crm: Crm, actor: Actor, draft: Draft, action: str) -> Saved:
    check_text(draft)
    v, owner = draft.values, _owner(draft)
    force, attach_to = action == "force", _target(action, draft.kind)
    if draft.kind == "deal":
        if v["currency"] and not CURRENCY.fullmatch(v["currency"].upper()):
            raise Refused(422, f"currency {v['currency']!r} is not a 3-letter code such as EUR")
        pipeline, _, stage = v.get("stage", "").partition(":")
        contact, company = draft.picks["contact"], draft.picks["company"]
        deal = DealDraft(
            title=v["title"],
            contact_id=contact.id,
            company_id=company.id,
            pipeline=pipeline or None,
            stage=stage or None,
            amount=_amount(v["amount"]),
            currency=v["currency"].upper() or None,
            owner_id=owner,
        )
        return await crm.handmade.create_deal(deal, actor)
    if draft.kind == "contact":
        contact_draft = ContactDraft(
            first_name=v["first_name"] or None,
            last_name=v["last_name"] or None,
            comms=_comms(v),
            company_id=draft.picks["company"].id,
            owner_id=owner,
            comments=v["comments"] or None,
        )
        return await crm.handmade.create_contact(
            contact_draft, actor, force=force, attach_to=attach_to
        )
    if draft.kind == "company":
        company_draft = CompanyDraft(
            title=v["title"],
            comms=_comms(v),
            contacts=tuple(r.draft(owner) for r in draft.rows),
            contact_ids=tuple(m.id for m in draft.members if m.id is not None),
            owner_id=owner,
        )
        return await crm.handmade.create_company(
            company_draft, actor, force=force, attach_to=attach_to
        )
    lead = LeadDraft(
        title=v["title"],
        name=v["name"] or None,
        company_title=v["company_title"] or None,
        comms=_comms(v),
        source=v["source"] if v["source"] in SOURCES else "OTHER",
        owner_id=owner,
        comments=v["comments"] or None,
    )
    return await crm.handmade.create_lead(lead, actor, force=force, attach_to=attach_to)


def saved_message(saved: Saved) -> str:
    record = saved.record
    name = getattr(record, "title", None) or getattr(record, "name", "")
    if saved.attached:
        return f"Added to {saved.record_type} #{saved.id} {name}."
    members = f" with contacts #{', #'.join(map(str, saved.contact_ids))}" * bool(saved.contact_ids)
    return f"{saved.record_type.capitalize()} #{saved.id} {name} saved{members}."


# --- handlers ---------------------------------------------------------------------------------


def _kind(request: web.Request) -> str:
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise Refused(404, f"records of kind {kind!r} cannot be created here")
    return kind


@page("create_contact.html")
async def new_form(request: web.Request) -> web.StreamResponse:
    """An empty form; `?contact_id=` / `?company_id=` preselect a deal's client."""
    kind = _kind(request)
    crm, actor = crm_of(request), current_actor(request)
    draft = Draft(kind, {name: "" for name in FIELDS[kind]} | {"owner_id": ""})
    for name in PICKS.get(kind, ()):
        chosen = _id(request.query.get(f"{name}_id", ""))
        draft.picks[name] = await _resolve(crm, actor, Pick(name, chosen))
    return await form_page(request, draft)


@page("create_contact.html")
async def submit(request: web.Request) -> web.StreamResponse:
    kind = _kind(request)
    crm, actor = crm_of(request), current_actor(request)
    draft, action = await read_draft(request, kind)
    if action == "add_row" and kind == "company":
        blank = max(draft.shown_rows - len(draft.rows), 0) + 1
        draft.rows = [*draft.rows, *(Row() for _ in range(blank))][:MAX_ROWS]
        return await form_page(request, draft)
    if action == "find" or draft.unresolved:
        problems = [p.problem for p in draft.picks.values() if p.problem]
        problems += [draft.member_problem] if draft.member_problem else []
        if draft.member_choices and action != "find":
            problems.append("tick the existing contacts that join the company")
        status = 200 if action == "find" else 422
        return await form_page(request, draft, status=status, error="; ".join(problems))
    try:
        saved = await save(crm, actor, draft, action)
    except DuplicateWarning as warning:
        return await form_page(request, draft, status=409, hits=warning.hits)
    except (CrmError, Refused) as err:
        code = err.status if isinstance(err, Refused) else _status(err)
        return await form_page(request, draft, status=code, error=str(err))
    response = redirect(record_url(saved.record_type, saved.id))
    flash(response, saved_message(saved))
    return response


def _status(err: CrmError) -> int:
    return next((code for kind, code in STATUS.items() if isinstance(err, kind)), 400)


@api
async def check(request: web.Request) -> Context:
    """The records that already hold these phones / emails (the forms' scripts ask as the
    user types). `record=lead:12`: the record being edited, whose own values are no hit."""
    q = request.query
    phones, emails = q.get("phone", ""), q.get("email", "")
    if CONTROL.search(phones + emails) or len(phones) + len(emails) > 2 * MAX_TEXT:
        raise Refused(422, "a phone or email is too long or holds control characters")
    comms = Comms(phones=_split(phones)[:MAX_ITEMS], emails=_split(emails)[:MAX_ITEMS])
    edited = _edited(q.get("record", ""))
    hits = await crm_of(request).handmade.check(comms, current_actor(request), ignore=edited)
    return {"hits": [hit_json(h) for h in hits]}


def _edited(raw: str) -> Target | None:
    """`lead:12` → ("lead", 12); empty: None (a new record)."""
    if not raw:
        return None
    kind, _, number = raw.partition(":")
    record_id = _id(number)
    if kind not in ATTACHABLE or record_id is None:
        raise Refused(422, "record must be lead:N, contact:N or company:N")
    return kind, record_id


@api
async def find_records(request: web.Request) -> Context:
    """Contacts or companies for a picker: `?kind=contact&q=anna`."""
    kind = request.query.get("kind", "")
    if kind not in ("contact", "company"):
        raise Refused(422, "kind must be contact or company")
    query = request.query.get("q", "").strip()[:MAX_TEXT]
    if len(query) < 2 and not RECORD_ID.fullmatch(query):
        return {"results": []}
    try:
        found = await find(crm_of(request), current_actor(request), kind, query)
    except NotFound:
        found = []
    return {"results": [{"id": i, "label": label} for i, label in found]}


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get(f"{NEW}/check", check, allow_head=False),
        web.get(f"{NEW}/find", find_records, allow_head=False),
        web.get(f"{NEW}/{{kind}}", new_form, allow_head=False),
        web.post(f"{NEW}/{{kind}}", submit),
    ]
