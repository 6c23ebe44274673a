"""What every console handler shares: who is signed in, CSRF, rendering, and errors.

Page builders write handlers in one of two shapes:

    @page("lead.html")
    async def lead(request: web.Request) -> Context:
        actor = current_actor(request)
        return {"lead": await crm_of(request).leads.get(int(request.match_info["id"]), actor)}

    @api
    async def move(request: web.Request) -> Context:   # called with csrfFetch() from a script
        ...
        return {"ok": True}

`page` renders the template with the returned dict (or passes a response on, e.g. a redirect
after a form POST); `api` answers JSON. Both sign the visitor in from the session cookie
(pages redirect to the sign-in page, JSON gets 401), require the CSRF token on POST, PUT, PATCH
and DELETE (403), and turn crm errors into 404 / 403 / 422 / 409 in one place (`refusal`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web

from crm.dto import Actor
from crm.errors import Conflict, CrmError, Forbidden, InvalidInput, NotFound
from crm.facade import Crm
from crm.services.websessions import WebSessionView
from httpkit import read_form

log = logging.getLogger(__name__)

Context = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PageHandler = Callable[[web.Request], Awaitable[Context | web.StreamResponse]]
ApiHandler = Callable[[web.Request], Awaitable[Context | list[Any]]]

SESSION_COOKIE = "leadbot_session"
FLASH_COOKIE = "leadbot_flash"
FLASH_ERROR_COOKIE = "leadbot_flash_error"  # the same, shown as an error
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
PREFIX = "/app"
SIGN_IN_PATH = f"{PREFIX}/signin"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JINJA = web.AppKey("console.jinja", jinja2.Environment)  # aiohttp_jinja2's environment key
SESSION = web.RequestKey("console.session", WebSessionView)  # the signed-in session

# The status a refused crm call answers with.
STATUS = {NotFound: 404, Forbidden: 403, InvalidInput: 422, Conflict: 409}


@dataclass(frozen=True, slots=True)
class ConsoleState:
    """Kept on the aiohttp app for the handlers (`CONSOLE`)."""

    crm: Crm
    public_url: str
    secure_cookies: bool
    static_version: str
    # For invite links (t.me/<bot_username>?start=<code>); None: the invite code alone.
    bot_username: str | None = None
    # The settings in force with secrets masked (the host's; the console cannot read config).
    effective_settings: Callable[[], dict[str, Any]] | None = None


CONSOLE = web.AppKey("console.state", ConsoleState)


class Refused(Exception):
    """A handler's own refusal: `status` and a sentence for the user."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def state_of(request: web.Request) -> ConsoleState:
    return request.config_dict[CONSOLE]


def crm_of(request: web.Request) -> Crm:
    """The crm facade, for handlers."""
    return state_of(request).crm


def current_session(request: web.Request) -> WebSessionView:
    """The signed-in session (set by `page` / `api` before the handler runs)."""
    return request[SESSION]


def current_actor(request: web.Request) -> Actor:
    """Who is acting, for the crm services: they enforce the rights."""
    return current_session(request).actor


def wants_json(request: web.Request) -> bool:
    """A script's fetch (csrfFetch sends JSON Accept and the CSRF header), not a page load."""
    accept = request.headers.get("Accept", "")
    return CSRF_HEADER in request.headers or (
        "application/json" in accept and "text/html" not in accept
    )


def page_number(request: web.Request) -> int:
    """The `?page=N` of a paged list (1 when absent or absurd)."""
    raw = request.query.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) <= 10_000 else 1


def redirect(location: str) -> web.Response:
    """A 303 See Other: after a form POST the browser loads the next page with GET."""
    return web.Response(status=303, headers={"Location": location})


# --- refusals ---------------------------------------------------------------------------------


def refusal(err: Exception) -> Refused:
    """A crm error or our own refusal as (status, sentence); the one mapping for the console."""
    if isinstance(err, Refused):
        return err
    status = next((code for kind, code in STATUS.items() if isinstance(err, kind)), 400)
    return Refused(status, str(err))


def json_refusal(status: int, reason: str) -> web.Response:
    codes = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 409: "conflict"}
    code = codes.get(status, "invalid")
    return web.json_response({"error": code, "detail": reason}, status=status)


def page_refusal(request: web.Request, status: int, reason: str) -> web.StreamResponse:
    context: Context = {"title": "Not possible", "message": reason, "status": status}
    return render(request, "message.html", context, status=status)


def refuse(request: web.Request, err: Exception, *, as_json: bool) -> web.StreamResponse:
    r = refusal(err)
    if as_json:
        return json_refusal(r.status, r.reason)
    return page_refusal(request, r.status, r.reason)


# --- sessions and CSRF ------------------------------------------------------------------------


async def signed_in(request: web.Request) -> WebSessionView | None:
    token = request.cookies.get(SESSION_COOKIE, "")
    return await crm_of(request).web_sessions.resolve(token) if token else None


def _origin_ok(request: web.Request) -> bool:
    """A browser names the page a request came from; it must be ours (public URL or the
    Host it was sent to)."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    public = urlsplit(state_of(request).public_url)
    ours = {f"{public.scheme}://{public.netloc}", f"{request.scheme}://{request.host}"}
    return origin.rstrip("/") in ours


async def check_csrf(request: web.Request, session: WebSessionView) -> Refused | None:
    if request.method not in UNSAFE:
        return None
    if not _origin_ok(request):
        return Refused(403, "this request came from another site (Origin) and was refused")
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await read_form(request)  # a broken body: BadInput, a 400 with the reason
        field = form.get(CSRF_FIELD)
        given = field if isinstance(field, str) else None
    if not given or not hmac.compare_digest(given.encode(), session.csrf_token.encode()):
        return Refused(
            403,
            "the form's security token is missing or stale: reload the page and try again",
        )
    return None


async def _enter(request: web.Request, *, as_json: bool) -> web.StreamResponse | None:
    """Sign the visitor in and check CSRF; a response when the request must stop here."""
    session = await signed_in(request)
    if session is None:
        if as_json:
            return json_refusal(401, "not signed in: ask the bot for a new /web link")
        return redirect(SIGN_IN_PATH)
    request[SESSION] = session
    refused = await check_csrf(request, session)
    if refused is not None:
        log.warning(
            "console: refused %s %s for rep #%s: %s",
            request.method,
            request.path,
            session.rep.id,
            refused.reason,
        )
        return refuse(request, refused, as_json=as_json)
    return None


# --- the two handler shapes -------------------------------------------------------------------


def page(template: str) -> Callable[[PageHandler], Handler]:
    """A signed-in page: the handler returns the template's context (or a response)."""

    def wrap(handler: PageHandler) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            as_json = wants_json(request)
            stop = await _enter(request, as_json=as_json)
            if stop is not None:
                return stop
            try:
                result = await handler(request)
            except (CrmError, Refused) as err:
                return refuse(request, err, as_json=as_json)
            if isinstance(result, web.StreamResponse):
                return result
            return render(request, template, result)

        return handle

    return wrap


def api(handler: ApiHandler) -> Handler:
    """A signed-in JSON endpoint for the console's scripts."""

    async def handle(request: web.Request) -> web.StreamResponse:
        stop = await _enter(request, as_json=True)
        if stop is not None:
            return stop
        try:
            return web.json_response(await handler(request))
        except (CrmError, Refused) as err:
            return refuse(request, err, as_json=True)

    return handle


# --- rendering --------------------------------------------------------------------------------


def flash(response: web.StreamResponse, text: str, *, error: bool = False) -> None:
    """A one-line message shown on the next page (e.g. after a redirect); `error`: shown as
    one (an action that could not be done)."""
    name = FLASH_ERROR_COOKIE if error else FLASH_COOKIE
    response.set_cookie(name, quote(text[:300]), path=PREFIX, httponly=True, samesite="Lax")


def render(
    request: web.Request, template: str, context: Context, *, status: int = 200
) -> web.StreamResponse:
    """A template with what base.html needs: the rep, the CSRF token, flash messages."""
    session: WebSessionView | None = request.get(SESSION)
    flashes = [
        (unquote(request.cookies[name]), name == FLASH_ERROR_COOKIE)
        for name in (FLASH_COOKIE, FLASH_ERROR_COOKIE)
        if name in request.cookies
    ]
    state = state_of(request)
    full = {
        "rep": session.rep if session else None,
        "csrf_token": session.csrf_token if session else "",
        "is_admin": session is not None and session.rep.role == "admin",
        # The quarantine page's link: supervisors and admins, when mailboxes are configured.
        "show_quarantine": session is not None
        and session.actor.sees_everything
        and state.crm.quarantine.folders is not None,
        "flashes": flashes,
        "static_version": state.static_version,
        "path": request.path,
        **context,
    }
    response = aiohttp_jinja2.render_template(template, request, full, status=status, app_key=JINJA)
    for name in (FLASH_COOKIE, FLASH_ERROR_COOKIE):
        if name in request.cookies:
            response.del_cookie(name, path=PREFIX)
    # Pages carry a CSRF token and personal data: never cached, never framed elsewhere.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response
