"""Bearer tokens: refused when missing, malformed, wrong or revoked; the CLI life cycle."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from leadbot.cli import main
from tests.api.conftest import ApiClient


async def _raw(api: ApiClient, path: str, authorization: str | None) -> tuple[int, Any, str]:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with api.http.get(api.base + path, headers=headers) as r:
        return r.status, await r.json(), r.headers.get("WWW-Authenticate", "")


REFUSED = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "Bearer two words",
    "Bearer lb_wrong-token",
    "Bearer tökén",
]


async def test_requests_without_a_valid_token_get_401(api: ApiClient) -> None:
    for authorization in REFUSED:
        for path in ("/api/v1/leads", "/api/v1/leads/1", "/api/v1/duplicates?phone=1"):
            status, body, challenge = await _raw(api, path, authorization)
            assert status == 401, (authorization, path)
            assert body["error"] == "unauthorized" and body["detail"]
            assert challenge.startswith("Bearer"), authorization
        # Authentication comes before parameter checks: no hints for strangers.
        status, _, _ = await _raw(api, "/api/v1/leads?limit=oops", authorization)
        assert status == 401, authorization


async def test_valid_token_is_accepted_and_openapi_is_public(api: ApiClient) -> None:
    assert (await api.get("/api/v1/leads")).status == 200
    status, doc, _ = await _raw(api, "/api/v1/openapi.json", None)
    assert status == 200 and doc["openapi"].startswith("3.1")
    # The scheme name is case-insensitive (RFC 7235).
    status, _, _ = await _raw(api, "/api/v1/leads", f"bearer {api.token}")
    assert status == 200


async def test_revoked_token_is_refused(api: ApiClient) -> None:
    tokens = api.service.crm.tokens
    token_id, token = await tokens.create("short-lived")
    assert (await api.get("/api/v1/contacts", token=token)).status == 200
    await tokens.revoke(token_id)
    reply = await api.get("/api/v1/contacts", token=token)
    assert reply.status == 401 and 'error="invalid_token"' in reply.headers["WWW-Authenticate"]
    assert (await api.get("/api/v1/contacts")).status == 200  # other tokens keep working


async def test_cli_token_create_then_revoke(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LEADBOT_CONFIG", raising=False)
    monkeypatch.setenv("LEADBOT_DATABASE__URL", api.service.settings.database.url)
    # The CLI runs its own event loop, so it gets a thread of its own.
    assert await asyncio.to_thread(main, ["token", "create", "ci"]) == 0
    out = capsys.readouterr().out
    token_id = int(re.search(r"token #(\d+) created", out).group(1))  # type: ignore[union-attr]
    token = out.strip().splitlines()[-1]
    assert token.startswith("lb_")
    assert (await api.get("/api/v1/leads", token=token)).status == 200

    assert await asyncio.to_thread(main, ["token", "revoke", str(token_id)]) == 0
    assert f"token #{token_id} revoked" in capsys.readouterr().out
    assert (await api.get("/api/v1/leads", token=token)).status == 401
    # Only the hash is stored: the token text is nowhere in the database.
    async with api.service.db.transaction() as s:
        from sqlalchemy import text

        hashes = [r[0] for r in await s.execute(text("SELECT token_hash FROM api_tokens"))]
    assert hashes and token not in hashes
