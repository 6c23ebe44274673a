"""The admin pages (/app/admin/…): reps, the exception list, API tokens, channel health and
the effective settings.

Admins only. The pages refuse everyone else with 403 before calling anything, and the crm
services refuse them again (`require_admin` in crm.services.reps and the tokens service), so
hiding the menu link is not what protects them. Every action is a plain form POST (works
without JavaScript) that redirects back with a one-line message; the two secrets made here,
an invite code and a new API token, are shown once on the page that answers the POST and
never stored in readable form.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from console.web import (
    PREFIX,
    Context,
    Refused,
    crm_of,
    current_actor,
    flash,
    page,
    redirect,
    render,
    state_of,
)
from crm.dto import Actor
from crm.services.reps import ROLES, invite_text
from crm.services.tokens import SCOPES
from httpkit import read_form

ADMIN = f"{PREFIX}/admin"
SECTIONS = (
    ("reps", "Reps"),
    ("exceptions", "Exception list"),
    ("tokens", "API tokens"),
    ("health", "Channel health"),
    ("settings", "Settings"),
)


def admin_actor(request: web.Request) -> Actor:
    """The signed-in admin; anyone else is refused here (and again by the services)."""
    actor = current_actor(request)
    if actor.role != "admin":
        raise Refused(403, "the admin pages are for admins")
    return actor


async def _form(request: web.Request) -> dict[str, str]:
    form = await read_form(request)
    return {k: v.strip() for k, v in form.items() if isinstance(v, str)}


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise Refused(404, f"no such number {raw[:20]!r}")
    return int(raw)


def _back(section: str, message: str) -> web.Response:
    response = redirect(f"{ADMIN}/{section}")
    flash(response, message)
    return response


def _context(section: str, title: str, **more: object) -> Context:
    return {"title": title, "section": section, "sections": SECTIONS, **more}


async def _to_reps(request: web.Request) -> web.Response:
    return redirect(f"{ADMIN}/reps")


# --- reps -------------------------------------------------------------------------------------


async def _reps_context(request: web.Request, **more: object) -> Context:
    reps = await crm_of(request).reps.all()
    return _context("reps", "Reps", reps=reps, roles=ROLES, **more)


@page("admin_reps.html")
async def reps(request: web.Request) -> Context:
    admin_actor(request)
    return await _reps_context(request, invite=None)


@page("admin_reps.html")
async def invite_new(request: web.Request) -> web.StreamResponse:
    """Add a rep and show their invite (the code is shown only on this answer)."""
    actor = admin_actor(request)
    form = await _form(request)
    crm = crm_of(request)
    rep = await crm.reps.add(
        form.get("name", ""),
        role=form.get("role", "rep"),
        email=form.get("email") or None,
        actor=actor,
    )
    return await _show_invite(request, rep.id, rep.name, actor)


@page("admin_reps.html")
async def invite_again(request: web.Request) -> web.StreamResponse:
    """A new invite for an existing rep (the old one stops working)."""
    actor = admin_actor(request)
    rep = await crm_of(request).reps.get(_id(request))
    return await _show_invite(request, rep.id, rep.name, actor)


async def _show_invite(
    request: web.Request, rep_id: int, name: str, actor: Actor
) -> web.StreamResponse:
    code = await crm_of(request).reps.create_invite(rep_id, actor)
    invite = {"name": name, "text": invite_text(state_of(request).bot_username, code)}
    return render(request, "admin_reps.html", await _reps_context(request, invite=invite))


@page("admin_reps.html")
async def set_role(request: web.Request) -> web.StreamResponse:
    actor = admin_actor(request)
    form = await _form(request)
    rep = await crm_of(request).reps.set_role(_id(request), form.get("role", ""), actor)
    return _back("reps", f"{rep.name} is now {rep.role}.")


@page("admin_reps.html")
async def deactivate(request: web.Request) -> web.StreamResponse:
    actor = admin_actor(request)
    rep = await crm_of(request).reps.deactivate(_id(request), actor)
    return _back("reps", f"{rep.name} is deactivated and signed out everywhere.")


# --- the exception list -----------------------------------------------------------------------


@page("admin_exceptions.html")
async def exceptions(request: web.Request) -> Context:
    admin_actor(request)
    entries = await crm_of(request).exceptions.all()
    return _context("exceptions", "Exception list", entries=entries)


@page("admin_exceptions.html")
async def exception_add(request: web.Request) -> web.StreamResponse:
    actor = admin_actor(request)
    form = await _form(request)
    entry = await crm_of(request).exceptions.add(
        form.get("value", ""), form.get("comment") or None, actor
    )
    return _back("exceptions", f"{entry.value} is on the exception list.")


@page("admin_exceptions.html")
async def exception_remove(request: web.Request) -> web.StreamResponse:
    actor = admin_actor(request)
    value = (await _form(request)).get("value", "")
    await crm_of(request).exceptions.remove(value, actor)
    return _back("exceptions", f"{value} is off the exception list.")


# --- API tokens -------------------------------------------------------------------------------


async def _tokens_context(request: web.Request, actor: Actor, **more: object) -> Context:
    crm = crm_of(request)
    reps = await crm.reps.all()
    names = {r.id: r.name for r in reps}
    tokens = [
        {
            "id": t.id,
            "name": t.name,
            "active": t.active,
            "scopes": ", ".join(t.scopes),
            "acts_as": names.get(t.rep_id, f"rep #{t.rep_id}") if t.rep_id else "",
        }
        for t in await crm.tokens.all(actor)
    ]
    active = [r for r in reps if r.active]
    return _context("tokens", "API tokens", tokens=tokens, scopes=SCOPES, reps=active, **more)


@page("admin_tokens.html")
async def tokens(request: web.Request) -> Context:
    actor = admin_actor(request)
    return await _tokens_context(request, actor, created=None)


@page("admin_tokens.html")
async def token_create(request: web.Request) -> web.StreamResponse:
    """A new token, shown on this answer only (the database keeps its hash)."""
    actor = admin_actor(request)
    form = await _form(request)
    scopes = [v for v in (await read_form(request)).getall("scope", []) if isinstance(v, str)]
    rep = form.get("rep", "")
    if rep and not rep.isdigit():
        raise Refused(422, "the rep must be one of the list")
    token_id, token = await crm_of(request).tokens.create(
        form.get("name", ""), scopes=scopes, rep_id=int(rep) if rep else None, actor=actor
    )
    created = {"id": token_id, "token": token}
    return render(
        request, "admin_tokens.html", await _tokens_context(request, actor, created=created)
    )


@page("admin_tokens.html")
async def token_revoke(request: web.Request) -> web.StreamResponse:
    actor = admin_actor(request)
    token_id = _id(request)
    await crm_of(request).tokens.revoke(token_id, actor)
    return _back("tokens", f"Token #{token_id} is revoked: the API refuses it from now on.")


# --- channel health ---------------------------------------------------------------------------


@page("admin_health.html")
async def health(request: web.Request) -> Context:
    actor = admin_actor(request)
    h = crm_of(request).health
    return _context(
        "health",
        "Channel health",
        mailboxes=await h.mailboxes(actor),
        webhooks=await h.webhooks(actor),
        letters=await h.dead_letters(actor),
    )


@page("admin_health.html")
async def retry(request: web.Request) -> web.StreamResponse:
    actor = admin_actor(request)
    letter_id = request.match_info["id"]
    await crm_of(request).health.retry_dead_letter(letter_id, actor)
    return _back("health", f"Dead letter {letter_id} is back in the queue.")


# --- effective settings -----------------------------------------------------------------------


def flatten(doc: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings as (dotted key, value) rows: `mailboxes[0].host`, `http.port`."""
    if isinstance(doc, dict):
        return [
            row
            for key, value in doc.items()
            for row in flatten(value, f"{prefix}.{key}" if prefix else str(key))
        ]
    if isinstance(doc, list) and any(isinstance(v, dict | list) for v in doc):
        return [row for n, value in enumerate(doc) for row in flatten(value, f"{prefix}[{n}]")]
    return [(prefix, doc if isinstance(doc, str) else json.dumps(doc, ensure_ascii=False))]


@page("admin_settings.html")
async def settings(request: web.Request) -> Context:
    admin_actor(request)
    effective = state_of(request).effective_settings
    if effective is None:
        raise Refused(404, "this process shows no settings")
    return _context("settings", "Settings in force", rows=flatten(effective()))


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get(ADMIN, _to_reps, allow_head=False),
        web.get(f"{ADMIN}/", _to_reps, allow_head=False),
        web.get(f"{ADMIN}/reps", reps, allow_head=False),
        web.post(f"{ADMIN}/reps", invite_new),
        web.post(f"{ADMIN}/reps/{{id}}/invite", invite_again),
        web.post(f"{ADMIN}/reps/{{id}}/role", set_role),
        web.post(f"{ADMIN}/reps/{{id}}/deactivate", deactivate),
        web.get(f"{ADMIN}/exceptions", exceptions, allow_head=False),
        web.post(f"{ADMIN}/exceptions", exception_add),
        web.post(f"{ADMIN}/exceptions/remove", exception_remove),
        web.get(f"{ADMIN}/tokens", tokens, allow_head=False),
        web.post(f"{ADMIN}/tokens", token_create),
        web.post(f"{ADMIN}/tokens/{{id}}/revoke", token_revoke),
        web.get(f"{ADMIN}/health", health, allow_head=False),
        web.post(f"{ADMIN}/health/dead/{{id}}/retry", retry),
        web.get(f"{ADMIN}/settings", settings, allow_head=False),
    ]
