"""A PostgreSQL of the test's own stopped under a running service: a route that needs the
database answers 503 + Retry-After with a JSON reason, the log says it once when it starts
and once when it ends, /readyz names the database."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from crm.schema import upgrade_blocking
from leadbot.api import api_component
from leadbot.app import Service
from leadbot.settings import Settings
from tests.conftest import _in_thread
from tests.servers import PostgresServer


async def test_api_during_a_database_outage_gets_503_and_one_line_each_way(
    own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    _in_thread(lambda: upgrade_blocking(own_postgres.url()))
    settings = Settings(
        database={"url": own_postgres.url(), "pool_size": 2},
        http={"host": "127.0.0.1", "port": 0},
        queue={"journal_dir": ""},
    )
    service = Service(settings, components=[api_component])
    await service.start()
    try:
        _, token = await service.crm.tokens.create("tests")
        base = f"http://127.0.0.1:{service.port}"
        auth = {"Authorization": f"Bearer {token}"}

        async def leads(http: aiohttp.ClientSession) -> tuple[int, Any, Any]:
            async with http.get(f"{base}/api/v1/leads", headers=auth) as r:
                return r.status, r.headers, await r.json()

        async with aiohttp.ClientSession() as http:
            assert (await leads(http))[0] == 200
            await own_postgres.kill()
            for _ in range(10):
                status, headers, body = await leads(http)
                assert status == 503, body
                assert headers["Retry-After"] == "5"
                assert body == {
                    "error": "unavailable",
                    "detail": "database unavailable; try again in 5 s",
                }
            async with http.get(f"{base}/readyz") as r:
                ready = await r.json()
                assert r.status == 503 and ready["checks"]["database"]["ok"] is False
            await own_postgres.start()
            for _ in range(100):
                status, _, _ = await leads(http)
                if status == 200:
                    break
                await asyncio.sleep(0.1)
            assert status == 200
    finally:
        await service.stop()
    web = [r for r in caplog.records if r.name == "leadbot.web"]
    began = [r for r in web if "database unavailable" in r.getMessage()]
    ended = [r for r in web if "database available again after" in r.getMessage()]
    assert len(began) == 1 and len(ended) == 1
    assert not [r for r in web if r.exc_info or r.levelno >= logging.ERROR]
