"""Record pages (`/app/lead/N`, `/app/contact/N`, `/app/company/N`, `/app/deal/N`) and the
actions on them.

A page shows the record, the records linked to it and its history (crm.history, newest
first, "Older" pages on with the history's keyset cursor). Each action is a plain form POST
(with the CSRF field) that calls the same crm service as the bot's button for it, then
redirects back to the record with a one-line confirmation; a refusal shows the service's
reason (`console.web.page`). An Edit adding a phone or email another record holds shows the
record again with the form as typed and the holders linked (409), and "Save anyway" sends it
with `force`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aiohttp import web

from console.duplicates import known_values
from console.web import (
    PREFIX,
    Context,
    Handler,
    Refused,
    crm_of,
    current_actor,
    flash,
    page,
    redirect,
    render,
)
from crm.dto import Actor, CommView, CompanyView, ContactView, DealView, LeadView
from crm.errors import Conflict
from crm.facade import Crm
from crm.identity import Comms
from crm.money import currency_code, parse_money
from crm.services.edits import DealPatch, LeadPatch
from crm.services.handmade import DuplicateWarning
from crm.services.records import ContactInput
from httpkit import read_form

KINDS = ("lead", "contact", "company", "deal")
HISTORY_PAGE = 25
# What a lead can be converted into, as the bot offers it (a repeat lead: a deal only).
CONVERSIONS = {
    "deal": ("deal",),
    "contact": ("contact",),
    "contact-company": ("contact", "company"),
    "all": ("contact", "company", "deal"),
}
# The longest a typed field may be (what the database column holds).
LIMITS = {
    "title": 300,
    "name": 300,
    "company_title": 300,
    "first_name": 150,
    "last_name": 150,
    "reason": 500,
    "other": 500,
    "currency": 10,
    "amount": 60,
}
OTHER = "__other__"  # the lost-reason choice "other (typed)"
Record = LeadView | ContactView | CompanyView | DealView


@dataclass(frozen=True, slots=True)
class Reach:
    """A phone, email or messenger id as the page shows it: a link where there is one."""

    kind: str
    text: str
    href: str | None
    key: str  # what identifies it for removal (its match key or raw text)


def reach(c: CommView) -> Reach:
    text = c.display or c.raw
    key = c.value or c.raw
    if c.kind == "phone" and c.value:
        return Reach("phone", text, f"tel:{c.value}", key)
    if c.kind == "email" and c.value:
        return Reach("email", text, f"mailto:{c.value}", key)
    if c.kind == "whatsapp":
        digits = (c.value or "").lstrip("+")
        return Reach("WhatsApp", text, f"https://wa.me/{digits}" if digits.isdigit() else None, key)
    if c.kind == "telegram":
        name = (c.label or "").lstrip("@")
        if name and name != "invalid":
            return Reach("Telegram", f"@{name}", f"https://t.me/{quote(name)}", key)
        # No username: the apps open a user's profile by id.
        href = f"tg://user?id={c.value}" if (c.value or "").isdigit() else None
        return Reach("Telegram", text, href, key)
    return Reach(c.kind.capitalize(), text, None, key)


# --- reading ---------------------------------------------------------------------------------


def _record_ref(request: web.Request) -> tuple[str, int]:
    kind = request.path.removeprefix(PREFIX).split("/")[1]  # routed per kind: /app/lead/{id}
    raw = request.match_info["id"]
    if kind not in KINDS or not raw.isdigit() or len(raw) > 12:
        raise Refused(404, f"there is no such page: {kind} {raw}")
    return kind, int(raw)


async def load(crm: Crm, kind: str, ident: int, actor: Actor) -> Record:
    """The record with the actor's rights (another rep's: Forbidden, shown as a 403 page)."""
    if kind == "lead":
        return await crm.leads.get(ident, actor)
    if kind == "deal":
        return await crm.deals.get(ident, actor)
    if kind == "contact":
        return await crm.records.get_contact(ident, actor)
    return await crm.records.get_company(ident, actor)


def _heading(kind: str, record: Record) -> str:
    if isinstance(record, ContactView):
        return record.name
    return record.title


@page("record.html")
async def record_page(request: web.Request) -> Context:
    kind, ident = _record_ref(request)
    return await record_context(request, kind, ident)


async def record_context(request: web.Request, kind: str, ident: int) -> Context:
    """What record.html shows of the record (the page, or an Edit refused for duplicates)."""
    crm, actor = crm_of(request), current_actor(request)
    record = await load(crm, kind, ident, actor)
    history = await crm.history.page(
        kind, ident, actor, after=request.query.get("after") or None, limit=HISTORY_PAGE
    )
    links = await crm.related.of(kind, ident, actor)
    reps = await crm.reps.all(include_inactive=False)
    names = {r.id: r.name for r in reps}
    config = crm.config
    owner_id = record.responsible_id
    context: Context = {
        "title": f"{kind.capitalize()} #{ident} · {_heading(kind, record)}",
        "heading": _heading(kind, record),
        "kind": kind,
        "record": record,
        "base": f"{PREFIX}/{kind}/{ident}",
        "owner": names.get(owner_id) if owner_id is not None else None,
        "reach": [reach(c) for c in getattr(record, "comms", [])],
        "links": links,
        "history": history.items,
        "older": history.next_cursor,
        "paged": bool(request.query.get("after")),
        "supervisor": actor.sees_everything,
        "me": actor.rep_id,
        "reps": reps,
        "rep_names": names,
        "now_local": datetime.now(ZoneInfo(config.timezone)).strftime("%Y-%m-%dT%H:%M"),
        "currency": config.currency,
        "lost_reasons": config.lost_reasons,
        "other": OTHER,
        "statuses": [s for s in config.lead_statuses if s.semantic == "process"],
        "stages": [],
        "is_open": getattr(record, "is_open", True),
        "editable_comms": kind != "deal",
        "typed": {},  # an Edit refused for duplicates: the fields as typed
        "known": [],  # … and the typed values other records hold
    }
    if isinstance(record, DealView):
        context["stages"] = [
            (code, name)
            for code, name, sem in await crm.deals.stages(record.pipeline)
            if sem == "process"
        ]
    return context


# --- acting ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Act:
    """One form POST on a record: who acts on which record with which fields."""

    crm: Crm
    actor: Actor
    kind: str
    ident: int
    form: dict[str, str]

    def field(self, name: str) -> str:
        """A typed field, refused when longer than the record can hold."""
        value = self.form.get(name, "")
        limit = LIMITS.get(name, 20_000)
        if len(value) > limit:
            what = name.replace("_", " ")
            raise Refused(422, f"the {what} is too long: at most {limit} characters")
        return value

    def done(self, text: str, kind: str | None = None, ident: int | None = None) -> Done:
        return Done(text, kind or self.kind, ident or self.ident)

    def currency(self, default: str) -> str:
        """The currency field as an ISO code (a code or symbol as typed; empty: `default`)."""
        typed = self.field("currency")
        code = currency_code(typed) if typed else default
        if code is None:
            raise Refused(422, f"I do not know the currency “{typed}”; use a code such as EUR")
        return code

    def money(self, default: str) -> tuple[Decimal, str] | None:
        """The typed amount as the bot reads it ("1 200,50", "$300"), in the currency field's
        currency unless it names its own; None when no amount is typed."""
        typed = self.field("amount")
        return parse_money(typed, self.currency(default)) if typed else None

    async def open_deal(self) -> DealView:
        deal = await self.crm.deals.get(self.ident, self.actor)
        if not deal.is_open:
            raise Conflict(f"deal #{self.ident} is closed already ({deal.stage_name})")
        return deal


@dataclass(frozen=True, slots=True)
class Done:
    """What an action did (a one-line confirmation) and the record to show next."""

    text: str
    kind: str
    ident: int
    tell_holder: bool = True  # the record's holder hears of it when someone else did it
    told: str | None = None  # what the holder hears, when not `text`


Action = Callable[[Act], Awaitable[Done]]


def action(*kinds: str) -> Callable[[Action], Handler]:
    """A record action for the given kinds of record (all four when none are named)."""

    def wrap(fn: Action) -> Handler:
        @page("message.html")
        async def handle(request: web.Request) -> web.StreamResponse:
            kind, ident = _record_ref(request)
            if kinds and kind not in kinds:
                raise Refused(404, f"a {kind} has no such action")
            form = await read_form(request)
            fields = {k: v.strip() for k, v in form.items() if isinstance(v, str)}
            crm, actor = crm_of(request), current_actor(request)
            try:
                done = await fn(Act(crm, actor, kind, ident, fields))
            except DuplicateWarning as warning:
                # The record again with the form as typed, the holders and "Save anyway".
                context = await record_context(request, kind, ident)
                context |= {"typed": fields, "known": known_values(warning.hits)}
                return render(request, "record.html", context, status=409)
            if done.tell_holder:  # as the bot tells a rep whose card someone else worked
                told = done.told or done.text
                await crm.outbox.tell_holder(kind, ident, actor.rep_id, told)
            response = redirect(f"{PREFIX}/{done.kind}/{done.ident}")
            flash(response, done.text)
            return response

        return handle

    return wrap


def _split(raw: str) -> tuple[str, ...]:
    """Several phones or emails typed in one field, separated by commas or new lines."""
    parts = tuple(p.strip() for p in raw.replace("\n", ",").split(",") if p.strip())
    if any(len(p) > 320 for p in parts):
        raise Refused(422, "a phone or email is at most 320 characters long")
    return parts


@action("lead")
async def take(a: Act) -> Done:
    lead = await a.crm.leads.get(a.ident, a.actor)
    if lead.responsible_id == a.actor.rep_id and lead.taken_at is not None:
        return a.done("You have this lead already.")
    if not lead.is_open:
        raise Conflict(f"lead #{a.ident} is closed already ({lead.status_name})")
    await a.crm.leads.take(a.ident, a.actor)
    return a.done("The lead is yours.")


@action("lead", "deal")
async def assign(a: Act) -> Done:
    raw = a.field("rep_id")
    if not raw.isdigit():
        raise Refused(422, "choose the rep to assign it to")
    if a.kind == "lead":
        view: LeadView | DealView = await a.crm.leads.assign(a.ident, int(raw), a.actor)
    else:
        view = await a.crm.deals.assign(a.ident, int(raw), a.actor)
    # The service queues the new holder's "Assigned to you" (as for the bot's reassign
    # button and the API), so the holder is not told "changed" as well.
    return Done(f"Assigned to {view.responsible_name}.", a.kind, a.ident, tell_holder=False)


@action()
async def comment(a: Act) -> Done:
    made = await a.crm.activities.comment(a.kind, a.ident, a.field("text"), a.actor)
    return Done("Comment added.", a.kind, a.ident, told=f"💬 {made.body}")


@action()
async def remind(a: Act) -> Done:
    """A call-back reminder at a local date and time, as the bot's ⏰ button schedules it."""
    raw = a.field("due")
    tz = ZoneInfo(a.crm.config.timezone)
    try:
        due = datetime.fromisoformat(raw).replace(tzinfo=tz)
    except ValueError:
        raise Refused(422, "give the call-back's date and time, like 2026-12-24T16:30") from None
    if due <= datetime.now(tz):
        raise Refused(422, f"{raw.replace('T', ' ')} is past: choose a later time")
    await a.crm.activities.schedule(
        a.kind, a.ident, due_at=due, subject="Call back", kind="call", actor=a.actor
    )
    return a.done(f"Call-back reminder set for {due:%Y-%m-%d %H:%M}.")


@action()
async def done(a: Act) -> Done:
    """A call-back or task of the record's history done, as the bot's ✅ Done."""
    raw = a.field("activity")
    if not raw.isdigit() or len(raw) > 12:
        raise Refused(422, "say which reminder is done")
    await a.crm.activities.complete(int(raw), a.actor, result="called back")
    return a.done("Done.")


@action("lead")
async def convert(a: Act) -> Done:
    into = CONVERSIONS.get(a.field("into"))
    if into is None:
        raise Refused(422, f"choose what to convert into: {', '.join(CONVERSIONS)}")
    money = a.money(a.crm.config.currency)  # refused before anything is converted
    result = await a.crm.leads.convert(a.ident, a.actor, into=into)
    if result.deal is not None:
        deal_id = result.deal.id
        if money is not None:  # as the bot's "Deal + amount…": the amount once the deal exists
            await a.crm.deals.set_amount(deal_id, money[0], a.actor, money[1])
        return a.done(f"Lead #{a.ident} converted into deal #{deal_id}.", "deal", deal_id)
    made = ", ".join(
        f"{k} #{v}"
        for k, v in (("contact", result.contact_id), ("company", result.company_id))
        if v
    )
    return a.done(f"Lead #{a.ident} converted: {made}.")


@action("deal")
async def win(a: Act) -> Done:
    deal = await a.open_deal()
    money = a.money(deal.currency)
    if money is not None:
        await a.crm.deals.set_amount(a.ident, money[0], a.actor, money[1])
    deal = await a.crm.deals.win(a.ident, a.actor)
    worth = f" — {deal.amount} {deal.currency}" if deal.amount is not None else ""
    return a.done(f"Deal #{a.ident}: {deal.stage_name}{worth}.")


@action("deal")
async def lose(a: Act) -> Done:
    chosen = a.field("reason")
    if chosen and chosen != OTHER and chosen not in a.crm.config.lost_reasons:
        raise Refused(422, "choose one of the listed reasons, or Other and type it")
    reason = a.field("other") if chosen in ("", OTHER) else chosen
    if not reason:
        raise Refused(422, "say why the deal was lost: choose a reason or type one")
    await a.open_deal()
    deal = await a.crm.deals.lose(a.ident, a.actor, reason)
    return a.done(f"Deal #{a.ident}: {deal.stage_name} — {deal.lost_reason}.")


@action("lead")
async def junk(a: Act) -> Done:
    reason = a.field("reason")[:500]
    if not reason:
        raise Refused(422, "say why the lead is junk")
    await a.crm.leads.junk(a.ident, reason, a.actor)
    return a.done(f"Junk: {reason}.")


@action("lead", "deal")
async def status(a: Act) -> Done:
    """A lead's status or a deal's stage (among the open ones; closing has its own forms)."""
    code = a.field("status")
    if a.kind == "lead":
        name = (await a.crm.leads.change_status(a.ident, code, a.actor)).status_name
    else:
        await a.open_deal()
        name = (await a.crm.deals.move(a.ident, code, a.actor)).stage_name
    return a.done(f"Now: {name}.")


@action("lead", "deal")
async def reopen(a: Act) -> Done:
    if a.kind == "lead":
        await a.crm.leads.reopen(a.ident, a.actor)
    else:
        await a.crm.deals.reopen(a.ident, a.actor)
    return a.done("Reopened.")


@action()
async def edit(a: Act) -> Done:
    """Fields of the record; phones and emails typed here are added to the ones it has. One
    another record holds refuses the save (`DuplicateWarning`) unless "Save anyway" (`force`)."""
    phones, emails = _split(a.field("phones")), _split(a.field("emails"))
    check = a.form.get("force") != "1"
    if a.kind == "contact":
        company = a.field("company_id").lstrip("#")
        if company and not company.isdigit():
            raise Refused(422, "the company is its number, like 12")
        data = ContactInput(
            first_name=a.field("first_name") or None,
            last_name=a.field("last_name") or None,
            company_id=int(company) if company else None,
            phones=phones,
            emails=emails,
        )
        await a.crm.records.update_contact(a.ident, data, a.actor, check_duplicates=check)
    elif a.kind == "company":
        title = a.field("title") or None
        await a.crm.records.update_company(
            a.ident,
            title=title,
            phones=phones,
            emails=emails,
            actor=a.actor,
            check_duplicates=check,
        )
    elif a.kind == "deal":
        money = a.money(a.crm.config.currency)
        typed = a.currency(a.crm.config.currency) if a.field("currency") else None
        amount, currency = money or (None, typed)
        patch = DealPatch(title=a.field("title") or None, amount=amount, currency=currency)
        await a.crm.edits.update_deal(a.ident, patch, a.actor)
    else:
        lead = LeadPatch(
            title=a.field("title") or None,
            name=a.field("name") or None,
            company_title=a.field("company_title") or None,
            comms=Comms(phones=phones, emails=emails),
        )
        await a.crm.edits.update_lead(a.ident, lead, a.actor, check_duplicates=check)
    return a.done("Saved.")


@action("lead", "contact", "company")
async def remove_comm(a: Act) -> Done:
    value = a.field("value")
    await a.crm.records.remove_comm(a.kind, a.ident, a.field("comm_kind"), value, a.actor)
    return a.done(f"Removed {value}.")


ACTIONS: dict[str, Handler] = {
    "take": take,
    "assign": assign,
    "comment": comment,
    "remind": remind,
    "done": done,
    "convert": convert,
    "win": win,
    "lose": lose,
    "junk": junk,
    "status": status,
    "reopen": reopen,
    "edit": edit,
    "remove-comm": remove_comm,
}


def routes() -> list[web.AbstractRouteDef]:
    out: list[web.AbstractRouteDef] = []
    for kind in KINDS:
        record = f"{PREFIX}/{kind}/{{id:[0-9]+}}"
        out.append(web.get(record, record_page, allow_head=False))
        out += [web.post(f"{record}/{name}", handler) for name, handler in ACTIONS.items()]
    return out
