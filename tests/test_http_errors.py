"""Errors the HTTP server itself answers (a method a route does not take, a path nobody
serves) are JSON and keep the headers that tell the client what to do, on every route of
every component."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from channels.phone.component import phone_component
from channels.webform.routes import forms_component
from channels.whatsapp.routes import whatsapp_component
from console.component import console_component
from leadbot.api import api_component
from tests.phone.conftest import PHONE_SETTINGS

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


async def _allowed(app: web.Application, method: str, path: str) -> set[str] | None:
    """The methods the router allows on `path` when `method` is not one (None: it is)."""
    match = await app.router.resolve(make_mocked_request(method, path, app=app))
    refusal = match.http_exception
    if refusal is None:  # another route serves this method here (/app/new/{kind} for check)
        return None
    assert isinstance(refusal, web.HTTPMethodNotAllowed), (method, path, match)
    return set(refusal.allowed_methods)


async def test_every_route_answers_other_methods_405_with_allow(start_service: Any) -> None:
    service = await start_service(
        components=[
            api_component,
            phone_component,
            whatsapp_component,
            forms_component,
            console_component,
        ],
        phone=PHONE_SETTINGS,
        whatsapp={"verify_token": "verify", "app_secret": "secret"},
        forms=[{"key": "contact"}],
    )
    # What the router serves: each path (placeholders filled in) and the methods it takes.
    served: dict[str, set[str]] = {}
    app = service.web_app()
    for resource in app.router.resources():
        path = re.sub(r"\{[^}]+\}", "1", resource.canonical)
        served.setdefault(path, set()).update(route.method for route in resource)
    assert {
        "/api/v1/leads",
        "/hooks/calls",
        "/hooks/whatsapp",
        "/forms/1",
        "/healthz",
        "/app/logout",
    } <= set(served)
    base = f"http://127.0.0.1:{service.port}"
    async with aiohttp.ClientSession() as http:
        for path, methods in sorted(served.items()):
            # Under /rest/ a catch-all answers every other method with Bitrix24's own
            # ERROR_METHOD_NOT_FOUND body, as Bitrix24 does (tests/phone/test_bitrix_clients.py).
            if path.startswith("/rest/"):
                continue
            for method in sorted(METHODS - methods):
                # Every route that matches the path counts (/app/new/check is also a
                # /app/new/{kind}), as the router itself resolves it.
                allowed = await _allowed(app, method, path)
                if allowed is None:
                    continue
                async with http.request(method, base + path) as r:
                    assert r.status == 405, (method, path)
                    assert (await r.json())["error"] == "method_not_allowed", (method, path)
                    assert set(r.headers["Allow"].split(",")) == allowed, (method, path)
        async with http.get(base + "/nothing-here") as r:
            assert r.status == 404 and (await r.json())["error"] == "not_found"
            assert "Allow" not in r.headers


async def test_a_switched_off_channel_names_the_setting_that_turns_it_on(
    start_service: Any,
) -> None:
    # A first run has no channel configured: a documented curl against a channel's path must
    # say what to set, not a bare "Not Found" that looks like a wrong URL.
    service = await start_service(
        components=[api_component, phone_component, whatsapp_component, forms_component]
    )
    base = f"http://127.0.0.1:{service.port}"
    cases = [
        ("POST", "/hooks/calls", "phone.webhook_secret"),
        ("GET", "/hooks/calls/lookup?number=%2B4930123456", "phone.lookup_token"),
        ("POST", "/hooks/twilio/voice", "phone.twilio_auth_token"),
        ("POST", "/hooks/twilio/status", "phone.twilio_auth_token"),
        ("POST", "/hooks/twilio/recording", "phone.twilio_auth_token"),
        ("POST", "/hooks/twilio/sms", "sms.account_sid"),
        ("GET", "/rest/1/b24secret/telephony.externalcall.register.json", "phone.bitrix_token"),
        ("POST", "/rest/1/b24secret/batch", "phone.bitrix_token"),
        ("GET", "/hooks/whatsapp?hub.mode=subscribe", "whatsapp.verify_token"),
        ("POST", "/hooks/whatsapp", "whatsapp.app_secret"),
        ("POST", "/forms/contact", "[[forms]]"),
    ]
    async with aiohttp.ClientSession() as http:
        for method, path, setting in cases:
            async with http.request(method, base + path, data=b"{}") as r:
                body = await r.json()
                assert r.status == 404, (path, body)
                assert body["error"] == "not_configured", (path, body)
                assert setting in body["detail"], (path, body)
        # Anything else is still the plain 404, and so is a path under a channel's prefix
        # that no channel ever serves.
        for path in ("/nothing-here", "/hooks/twilio/other", "/forms/a/b", "/hooks/callsx"):
            async with http.post(base + path) as r:
                assert r.status == 404 and (await r.json())["error"] == "not_found", path
