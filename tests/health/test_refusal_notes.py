"""Which requests reach channel health: a webhook route's, each one, whatever its answer; no
other route's. The source of a matched route is found once and kept (it runs on every
request); an unmatched path is looked at every time and kept nowhere."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter

from leadbot.refusals import Refusals
from leadbot.web import Outages, edge_middleware


async def _ok(_: web.Request) -> web.Response:
    return web.Response(status=202, text="queued")


async def _refuse(_: web.Request) -> web.Response:
    return web.json_response({"error": "bad_signature", "detail": "signature mismatch"}, status=401)


Noted = tuple[TestClient[web.Request, web.Application], Refusals, list[tuple[str, int, str]]]


@pytest.fixture
async def noted() -> AsyncIterator[Noted]:
    notes: list[tuple[str, int, str]] = []
    counter = Counter("refused", "refused", ["route", "status"], registry=CollectorRegistry())
    refusals = Refusals(counter, note=lambda *note: notes.append(note))
    app = web.Application(middlewares=[edge_middleware(Outages(), refusals)])
    app.router.add_post("/hooks/{kind}", _ok)
    app.router.add_post("/refused", _refuse)
    app.router.add_get("/page", _ok)
    refusals.sources = frozenset({"/hooks/{kind}", "/refused"})
    async with TestClient(TestServer(app)) as client:
        yield client, refusals, notes


async def test_each_webhook_request_is_noted_and_no_other(
    noted: Noted,
) -> None:
    client, refusals, notes = noted
    for _ in range(3):
        assert (await client.post("/hooks/calls")).status == 202
    assert (await client.post("/hooks/twilio")).status == 202
    assert (await client.post("/refused")).status == 401
    assert (await client.get("/page")).status == 202
    for _ in range(3):  # unmatched: 404, no source; and nothing kept for it
        assert (await client.get("/nowhere")).status == 404
    assert (await client.post("/page")).status == 405
    assert notes == [
        ("/hooks/{kind}", 202, ""),
        ("/hooks/{kind}", 202, ""),
        ("/hooks/{kind}", 202, ""),
        ("/hooks/{kind}", 202, ""),
        ("/refused", 401, "signature mismatch"),
    ]
    assert len(refusals._source_of) == 3  # the app's three routes, once each
    assert refusals.counter.labels(route="/refused", status="401")._value.get() == 1
    # New sources (the app built again): what was found under the old ones is forgotten.
    refusals.sources = frozenset({"/page"})
    notes.clear()
    await client.post("/hooks/calls")
    await client.get("/page")
    assert notes == [("/page", 202, "")]
