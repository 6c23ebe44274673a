"""`leadbot serve` and `leadbot worker` as an operator starts them while Redis or PostgreSQL
is down: one clear line on stderr and a non-zero exit, no traceback; or, with startup_wait,
one line per retry until the server comes up."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from tests.conftest import REDIS_URL, leadbot_process, leadbot_run
from tests.servers import OwnRedis, end_process, free_port


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}
    env.update(
        LEADBOT_DATABASE__URL=f"sqlite+aiosqlite:///{tmp_path / 'leadbot.db'}",
        LEADBOT_HTTP__PORT="0",
        LEADBOT_QUEUE__JOURNAL_DIR="",
    )
    env.update(extra)
    return env


@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_redis_down_at_start_is_one_line_without_the_password(
    tmp_path: Path, command: str
) -> None:
    port = free_port()  # nobody listens there
    env = _env(tmp_path, LEADBOT_REDIS__URL=f"redis://:s3cretpw@127.0.0.1:{port}/0")
    code, _, err = await leadbot_run(command, env=env)
    lines = err.splitlines()
    assert code != 0
    assert lines == [f"leadbot: queue unreachable: redis://127.0.0.1:{port}: Connection refused"]


@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_postgres_unreachable_at_start_is_one_line(tmp_path: Path, command: str) -> None:
    port = free_port()
    env = _env(
        tmp_path,
        LEADBOT_DATABASE__URL=f"postgresql+asyncpg://leadbot:s3cretpw@127.0.0.1:{port}/leadbot",
        LEADBOT_REDIS__URL=REDIS_URL,
    )
    code, _, err = await leadbot_run(command, env=env)
    lines = err.splitlines()
    assert code != 0
    assert lines == [
        f"leadbot: database unreachable: postgresql+asyncpg://leadbot:***@127.0.0.1:{port}"
        "/leadbot: Connection refused"
    ]


async def test_startup_wait_retries_until_redis_comes_up(
    tmp_path: Path, own_redis: OwnRedis
) -> None:
    assert (await leadbot_run("db", "upgrade", env=_env(tmp_path)))[0] == 0
    server = await own_redis(start=False)
    env = _env(
        tmp_path,
        LEADBOT_REDIS__URL=server.url,
        LEADBOT_REDIS__STREAM=f"test:{tmp_path.name}",
        LEADBOT_REDIS__STARTUP_WAIT="60",
    )
    proc = await leadbot_process("serve", env=env)
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(90):
            while not any("retrying in" in line for line in lines):
                lines.append((await proc.stderr.readline()).decode())
            await server.start()
            while not any("listening on" in line for line in lines):
                line = (await proc.stderr.readline()).decode()
                assert line, "serve exited:\n" + "".join(lines)
                lines.append(line)
        retries = [line for line in lines if "retrying in" in line]
        assert re.search(
            rf"WARNING leadbot: queue unreachable: redis://127\.0\.0\.1:{server.port}: "
            r"Connection refused; retrying in \d+ s",
            retries[0],
        )
        assert not any("Traceback" in line for line in lines)
    finally:
        await end_process(proc)
