"""A running service with the REST API mounted, and a client holding a valid token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from leadbot.api import api_component

Params = dict[str, Any] | list[tuple[str, str]] | None


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class ApiClient:
    base: str
    token: str
    http: aiohttp.ClientSession
    service: Any

    async def get(self, path: str, params: Params = None, *, token: str | None = "") -> Reply:
        """GET with the client's token; `token=None` sends no Authorization header."""
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token or self.token}"
        async with self.http.get(self.base + path, params=params, headers=headers) as r:
            assert r.content_type == "application/json", await r.text()
            return Reply(r.status, await r.json(), dict(r.headers))

    async def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = "",
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        """A write request with a JSON body (or `raw` bytes)."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token or self.token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        sent.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.base + path, data=data, headers=sent) as r:
            assert r.content_type == "application/json", await r.text()
            return Reply(r.status, await r.json(), dict(r.headers))

    async def ok(self, path: str, params: Params = None) -> Any:
        reply = await self.get(path, params)
        assert reply.status == 200, reply.body
        return reply.body

    async def ids(self, path: str, params: Params = None) -> list[int]:
        return [item["id"] for item in (await self.ok(path, params))["items"]]


@pytest.fixture
async def api(start_service: Any) -> AsyncIterator[ApiClient]:
    service = await start_service(components=[api_component])
    _, token = await service.crm.tokens.create("tests")
    async with aiohttp.ClientSession() as http:
        yield ApiClient(f"http://127.0.0.1:{service.port}", token, http, service)
