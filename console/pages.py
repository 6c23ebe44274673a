"""Sign-in, sign-out and the first page ("My work")."""

from __future__ import annotations

from aiohttp import web

from console import admin, board, dashboard, quarantine
from console.web import (
    PREFIX,
    SESSION_COOKIE,
    SIGN_IN_PATH,
    Context,
    crm_of,
    current_actor,
    flash,
    page,
    page_number,
    page_refusal,
    redirect,
    render,
    signed_in,
    state_of,
)
from crm.errors import Forbidden
from crm.services.listing import ListFilter

PAGE_SIZE = 25


async def login(request: web.Request) -> web.StreamResponse:
    """A one-time link from the bot's /web: a session cookie, then My work."""
    crm = crm_of(request)
    try:
        signed = await crm.web_sessions.redeem(request.match_info["token"])
    except Forbidden as err:
        return page_refusal(
            request, 403, f"{err}. Ask the bot for a new link with /web — it works once."
        )
    response = redirect(f"{PREFIX}/")
    response.set_cookie(
        SESSION_COOKIE,
        signed.session_token,
        path=PREFIX,
        httponly=True,
        samesite="Lax",
        secure=state_of(request).secure_cookies,
        max_age=int(crm.web_sessions.session_ttl.total_seconds()),
    )
    # The address bar held the (now used) link: keep it out of any Referer.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@page("message.html")
async def logout(request: web.Request) -> web.StreamResponse:
    await crm_of(request).web_sessions.end(request.cookies[SESSION_COOKIE])
    response = redirect(SIGN_IN_PATH)
    response.del_cookie(SESSION_COOKIE, path=PREFIX)
    flash(response, "You are signed out.")
    return response


async def sign_in(request: web.Request) -> web.StreamResponse:
    """Where a visitor without a session lands."""
    if await signed_in(request) is not None:
        return redirect(f"{PREFIX}/")
    return render(request, "signin.html", {"title": "Sign in"})


@page("my_work.html")
async def my_work(request: web.Request) -> Context:
    """Open leads and deals, newest first: a rep's own (the services see to that), everyone's
    for supervisors and admins."""
    crm, actor = crm_of(request), current_actor(request)
    number = page_number(request)
    flt = ListFilter(semantic="process", offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    leads, lead_total = await crm.leads.page(flt, actor)
    deals, deal_total = await crm.deals.page(flt, actor)
    return {
        "title": "My work" if not actor.sees_everything else "Open work",
        "leads": leads,
        "lead_total": lead_total,
        "deals": deals,
        "deal_total": deal_total,
        "page": number,
        "more": number * PAGE_SIZE < max(lead_total, deal_total),
    }


async def _to_my_work(_: web.Request) -> web.Response:
    return redirect(f"{PREFIX}/")


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get(f"{PREFIX}/login/{{token}}", login, allow_head=False),
        web.get(SIGN_IN_PATH, sign_in, allow_head=False),
        web.post(f"{PREFIX}/logout", logout),
        web.get(f"{PREFIX}/", my_work, allow_head=False),
        web.get(PREFIX, _to_my_work, allow_head=False),
        *dashboard.routes(),
        *admin.routes(),
        *board.routes(),
        *quarantine.routes(),
    ]
