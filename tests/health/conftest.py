"""Fixtures for the health tests: a Redis server of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.health.redis_server import RedisServer


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[RedisServer]]]:
    """`await own_redis(appendonly=...)`: a started redis-server, killed after the test."""
    started: list[RedisServer] = []

    async def _start(*, appendonly: bool = True) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(started)}", appendonly=appendonly)
        started.append(server)
        await server.start()
        return server

    yield _start
    for server in started:
        await server.kill()
