"""`POST /forms/<form_key>`: web-form submissions over HTTP, one configured form per key.

The submission is checked (CORS origin, rate limit, honeypot, fields) and queued, and the page
gets its answer at once: for a plain HTML form (a browser posting a form, asking for text/html)
a 303 to the form's `success_redirect` or a small HTML page, also for a refusal (what was
wrong, a link back); JSON (`202 {"status": "received", "submission_id": …}`, or the error
body) for `fetch` / JSON clients. Intake runs from the queue, so a slow database never makes a
visitor wait.
"""

from __future__ import annotations

import html
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import parse_qsl

from aiohttp import web

from channels.webform.settings import FormSettings
from channels.webform.submission import (
    FormConfig,
    FormError,
    HoneypotTripped,
    RateLimiter,
    cors_headers,
    fields_from_json,
    fields_from_pairs,
    parse_submission,
    submission_id_for,
)
from crm.config import ConfigError
from httpkit import BadInput, client_address, json_error, networks, read_form, read_json
from matching.event import EventMeta, InboundEvent
from matching.text import clean_json

log = logging.getLogger(__name__)

_URLENCODED = "application/x-www-form-urlencoded"
_FORM_TYPES = (_URLENCODED, "multipart/form-data")


def form_config(settings: FormSettings, default_region: str) -> FormConfig:
    """The pure form config for one `[[forms]]` section; `ValueError` names the problem."""
    return FormConfig(
        key=settings.key,
        field_map=settings.field_map,
        # Without a region "030 1234567" could not be checked, so fall back to the CRM's one.
        region=settings.region or default_region,
        honeypot_field=settings.honeypot,
        duplicate_mode=settings.duplicate_mode,
        success_redirect=settings.success_redirect,
        cors_origins=settings.cors_origins,
        rate_limit_per_minute=settings.rate_limit_per_minute,
        responsible_queue=settings.queue,
        title_template=settings.title_template,
    )


class _Crm(Protocol):
    @property
    def default_region(self) -> str: ...


class _Http(Protocol):
    @property
    def trusted_proxies(self) -> Sequence[str]: ...


class FormsSettings(Protocol):
    """The settings the web-form channel reads."""

    @property
    def forms(self) -> Sequence[FormSettings]: ...

    @property
    def crm(self) -> _Crm: ...

    @property
    def http(self) -> _Http: ...


class FormsHost(Protocol):
    """What the web-form channel needs from the process that runs it."""

    @property
    def settings(self) -> FormsSettings: ...

    async def submit(self, event: InboundEvent) -> None: ...


class FormsComponent:
    def __init__(self, service: FormsHost, forms: list[FormConfig]) -> None:
        self.service = service
        self.forms = {cfg.key: cfg for cfg in forms}
        self.limiters: dict[str, RateLimiter] = {cfg.key: cfg.rate_limiter() for cfg in forms}
        self.proxies = networks(service.settings.http.trusted_proxies)

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.post("/forms/{form_key}", self.submit),
            web.options("/forms/{form_key}", self.preflight),
        ]

    async def start(self) -> None:
        """Nothing to start: forms only answer requests."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def preflight(self, request: web.Request) -> web.StreamResponse:
        cfg = self.forms.get(request.match_info["form_key"])
        if cfg is None:
            return json_error(404, "unknown_form", "there is no form with this key")
        headers = cors_headers(cfg, request.headers.get("Origin"))
        if not headers:
            return json_error(403, "origin_not_allowed", "this origin may not post to the form")
        return web.Response(status=204, headers=headers)

    async def submit(self, request: web.Request) -> web.StreamResponse:
        cfg = self.forms.get(request.match_info["form_key"])
        if cfg is None:
            return _refusal(request, 404, "unknown_form", "there is no form with this key")
        response = await self._submit(cfg, request)
        # Error answers carry the CORS headers too, so the page can show the reason.
        response.headers.update(cors_headers(cfg, request.headers.get("Origin")))
        return response

    async def _submit(self, cfg: FormConfig, request: web.Request) -> web.StreamResponse:
        client_ip = client_address(request, self.proxies)
        limiter, now = self.limiters[cfg.key], time.monotonic()
        if not limiter.allow(client_ip, now):
            wait = max(1, round(limiter.retry_after(client_ip, now)))
            response = _refusal(
                request, 429, "rate_limited", f"too many submissions; retry in {wait} s"
            )
            response.headers["Retry-After"] = str(wait)
            return response
        wants_json = _wants_json(request)
        try:
            fields = await _read_fields(request)
            submission_id = submission_id_for(fields, uuid.uuid4().hex)
            event = parse_submission(
                cfg,
                fields,
                client_ip=client_ip,
                submission_id=submission_id,
                now=datetime.now(UTC),
            )
        except FormError as err:
            return _refusal(request, err.status, "invalid_submission", err.reason)
        except HoneypotTripped:
            log.info("form %s: honeypot filled by %s, nothing created", cfg.key, client_ip)
            return _success(request, cfg, uuid.uuid4().hex, wants_json)
        meta: EventMeta = {**event.meta, "queue": list(cfg.responsible_queue)}
        if event.subject:
            meta["title"] = event.subject  # the form's title template names the lead
        await self.service.submit(replace(event, meta=meta))
        return _success(request, cfg, submission_id, wants_json)


async def _read_fields(request: web.Request) -> dict[str, str | list[str]]:
    if request.content_type != "application/json" and request.content_type not in _FORM_TYPES:
        raise FormError(
            415, "send application/x-www-form-urlencoded, multipart/form-data or application/json"
        )
    try:
        if request.content_type == "application/json":
            fields = fields_from_json(await read_json(request))
        elif request.content_type == _URLENCODED:
            fields = fields_from_pairs(_urlencoded_pairs(await request.read(), request.charset))
        else:
            posted = await read_form(request)
            # Uploaded files are not form fields we store; their names would only be noise.
            fields = fields_from_pairs((k, v) for k, v in posted.items() if isinstance(v, str))
    except BadInput as err:  # answered as a FormError: that reply carries the CORS headers
        raise FormError(err.status, err.detail) from None
    # Cleaned before it is validated: a name of control characters alone is no name.
    return clean_json(fields)


def _urlencoded_pairs(body: bytes, charset: str | None) -> list[tuple[str, str]]:
    """An url-encoded body's fields. A browser encodes them in the charset of the page the
    form is on: UTF-8 today, but a page served as ISO-8859-1 / Windows-1252 posts "Müller" as
    `M%FCller`, which aiohttp's own reading (UTF-8 with replacement) turns into "M\ufffdller".
    Not UTF-8, the body is read as Windows-1252 (the superset of Latin-1 browsers use)."""
    text = body.decode("latin-1")  # url-encoded is ASCII; stray 8-bit bytes kept one to one
    charset = charset or "utf-8"
    try:
        return parse_qsl(text, keep_blank_values=True, encoding=charset, errors="strict")
    except LookupError:  # a charset parameter nobody knows
        raise BadInput("bad_form", f"unknown charset {charset[:40]!r}", 415) from None
    except UnicodeDecodeError:
        return parse_qsl(text, keep_blank_values=True, encoding="cp1252", errors="replace")


def _wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return request.content_type == "application/json" or (
        "application/json" in accept and "text/html" not in accept
    )


def _wants_page(request: web.Request) -> bool:
    """A browser posting a plain HTML form: it shows whatever comes back to the visitor."""
    return request.content_type in _FORM_TYPES and "text/html" in request.headers.get("Accept", "")


def _success(
    request: web.Request, cfg: FormConfig, submission_id: str, wants_json: bool
) -> web.StreamResponse:
    if cfg.success_redirect and not wants_json:
        return web.Response(status=303, headers={"Location": cfg.success_redirect})
    if _wants_page(request):
        return _page(request, 200, "Thank you", "Your message has been received.")
    return web.json_response({"status": "received", "submission_id": submission_id}, status=202)


def _refusal(request: web.Request, status: int, code: str, reason: str) -> web.Response:
    if _wants_page(request):
        return _page(
            request, status, "Your message was not sent", f"{reason[:1].upper()}{reason[1:]}."
        )
    return json_error(status, code, reason)


def _page(request: web.Request, status: int, title: str, text: str) -> web.Response:
    """A small page for a visitor whose browser posted the form; every text escaped."""
    back = request.headers.get("Referer", "")
    link = (
        f'<p><a href="{html.escape(back)}">Back to the form</a></p>'
        if back.startswith(("https://", "http://"))
        else ""
    )
    body = (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head>"
        '<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto; padding: 0 1em">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{link}</body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html", charset="utf-8")


def forms_component(service: FormsHost) -> FormsComponent | None:
    """One route for every configured form; None when no form is configured."""
    sections = service.settings.forms
    if not sections:
        return None
    keys = [s.key for s in sections]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ConfigError(f"config error: forms: key {', '.join(repeated)} is used twice")
    try:
        forms = [form_config(s, service.settings.crm.default_region) for s in sections]
    except ValueError as exc:
        raise ConfigError(f"config error: forms: {exc}") from None
    return FormsComponent(service, forms)
