"""The console over plain HTTP: sign-in redirects, static files, refusals mapped in one place,
the CLI's sign-in link."""

from __future__ import annotations

import os
from typing import Any

import aiohttp
from aiohttp import web

from console.web import api, crm_of, current_actor, page
from crm.facade import Crm
from crm.services.leads import LeadInput
from tests.conftest import leadbot_run
from tests.console.conftest import console_url


async def _signed_in(service: Any, rep_id: int) -> tuple[dict[str, str], str]:
    """Cookies and CSRF token of a fresh session."""
    signed = await service.crm.web_sessions.redeem(
        await service.crm.web_sessions.create_link(rep_id)
    )
    return {"leadbot_session": signed.session_token}, signed.csrf_token


async def test_without_a_session_pages_redirect_and_fetches_get_401(console: Any) -> None:
    service = await console()
    base = console_url(service)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/app/", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/app/signin"
        async with http.get(f"{base}/app/signin") as r:
            assert r.status == 200 and "/web" in await r.text()
        async with http.get(f"{base}/app/", headers={"Accept": "application/json"}) as r:
            assert r.status == 401 and (await r.json())["error"] == "unauthenticated"
        async with http.post(f"{base}/app/logout", allow_redirects=False) as r:
            assert r.status == 303  # nothing to sign out of
        async with http.get(f"{base}/app/login/forged-token") as r:
            assert r.status == 403 and "/web" in await r.text()


async def test_static_files_are_cached_and_unknown_ones_are_404(console: Any) -> None:
    service = await console()
    base = console_url(service)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/app/static/console.js") as r:
            assert r.status == 200 and r.content_type == "text/javascript"
            assert "max-age" in r.headers["Cache-Control"]
            assert "function csrfFetch" in await r.text()
        async with http.get(f"{base}/app/static/console.css") as r:
            assert r.status == 200 and r.content_type == "text/css"
        async with http.get(f"{base}/app/static/..%2Fpages.py") as r:
            assert r.status == 404


async def test_pages_are_not_cached_and_escape_user_text(console: Any) -> None:
    service = await console()
    rep = await service.crm.reps.add("<script>alert(1)</script> Rita")
    cookies, _ = await _signed_in(service, rep.id)
    async with (
        aiohttp.ClientSession(cookies=cookies) as http,
        http.get(f"{console_url(service)}/app/") as r,
    ):
        body = await r.text()
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)" in body


def _probe_routes() -> list[web.AbstractRouteDef]:
    """Routes shaped like the page builders' (`page` / `api`) on the running service."""

    @api
    async def lead(request: web.Request) -> dict[str, Any]:
        found = await crm_of(request).leads.get(
            int(request.match_info["id"]), current_actor(request)
        )
        return {"id": found.id}

    @page("message.html")
    async def lead_page(request: web.Request) -> dict[str, Any]:
        await crm_of(request).leads.get(int(request.match_info["id"]), current_actor(request))
        return {"title": "Lead", "message": "found"}

    @api
    async def bad(request: web.Request) -> dict[str, Any]:
        await crm_of(request).deals.create(" ")
        return {}

    return [
        web.get("/app/probe/lead/{id}", lead),
        web.get("/app/probe/page/{id}", lead_page),
        web.post("/app/probe/bad", bad),
    ]


class _Probe:
    def __init__(self, service: Any) -> None:
        self.service = service

    def routes(self) -> list[web.AbstractRouteDef]:
        return _probe_routes()

    async def start(self) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """Nothing to stop."""


async def test_crm_refusals_become_404_403_422_as_json_or_page(console: Any) -> None:
    service = await console(extra=[_Probe])
    crm: Crm = service.crm
    rita = await crm.reps.add("Rita Rep")
    paul = await crm.reps.add("Paul Other")
    pauls = await crm.leads.create(LeadInput("Paul's lead", responsible_id=paul.id))
    cookies, csrf = await _signed_in(service, rita.id)
    base = console_url(service)
    async with aiohttp.ClientSession(cookies=cookies) as http:
        async with http.get(f"{base}/app/probe/lead/9999") as r:
            assert r.status == 404 and (await r.json())["error"] == "not_found"
        async with http.get(f"{base}/app/probe/lead/{pauls.id}") as r:
            assert r.status == 403 and (await r.json())["error"] == "forbidden"
        async with http.get(f"{base}/app/probe/page/{pauls.id}") as r:
            assert r.status == 403 and r.content_type == "text/html"
            assert "Not possible" in await r.text()
        async with http.post(f"{base}/app/probe/bad", headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 422 and "title" in (await r.json())["detail"]
        async with http.post(f"{base}/app/probe/bad") as r:  # no token: refused before
            assert r.status == 403


async def test_the_cli_prints_a_link_that_signs_in(console: Any, tmp_path: Any) -> None:
    service = await console()
    rep = await service.crm.reps.add("Rita Rep", telegram_user_id=777000111)
    base = console_url(service)
    env = {
        **os.environ,
        "LEADBOT_DATABASE__URL": service.settings.database.url,
        "LEADBOT_HTTP__PUBLIC_URL": base,
    }
    for who in (str(rep.id), "777000111"):
        code, out, err = await leadbot_run("web", "link", who, env=env)
        assert code == 0, err
        link = out.strip()
        assert link.startswith(f"{base}/app/login/")
        async with aiohttp.ClientSession() as http, http.get(link, allow_redirects=False) as r:
            assert r.status == 303 and "leadbot_session" in r.cookies
    code, _, err = await leadbot_run("web", "link", "4242", env=env)
    assert code == 2 and "rep #4242" in err
    off = {**env, "LEADBOT_CONSOLE__ENABLED": "false"}
    code, _, err = await leadbot_run("web", "link", str(rep.id), env=off)
    assert code == 2 and "console is off" in err


async def test_a_broken_form_body_is_refused_not_a_server_error(console: Any) -> None:
    service = await console()
    rep = await service.crm.reps.add("Rita Rep")
    cookies, _ = await _signed_in(service, rep.id)
    bodies = [
        (b"--B\r\n\r\nx\r\n--B--\r\n", "multipart/form-data"),
        (
            b"--B\r\nContent-Disposition: form-data\r\n\r\nx\r\n--B--\r\n",
            "multipart/form-data; boundary=B",
        ),
        (b"_csrf=%ff%fe", "application/x-www-form-urlencoded"),
    ]
    async with aiohttp.ClientSession(cookies=cookies) as http:
        for body, ctype in bodies:
            headers = {"Content-Type": ctype}
            url = f"{console_url(service)}/app/logout"
            async with http.post(url, data=body, headers=headers) as r:
                assert 400 <= r.status < 500, (ctype, r.status, await r.text())
    assert await service.crm.web_sessions.resolve(cookies["leadbot_session"]) is not None
