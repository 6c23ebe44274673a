"""`leadbot serve` as a user starts it: migrate, serve, answer /healthz, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from tests.conftest import leadbot_process, leadbot_run


async def test_serve_answers_healthz_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    log = await _serve_once(tmp_path, {})
    assert any("Telegram bot is off" in line for line in log)
    assert any("event loop uvloop" in line for line in log)  # the default


async def test_serve_runs_on_the_standard_loop_when_uvloop_is_turned_off(tmp_path: Path) -> None:
    log = await _serve_once(tmp_path, {"LEADBOT_HTTP__EVENT_LOOP": "asyncio"})
    assert any("event loop asyncio" in line for line in log)
    assert not any("uvloop" in line for line in log)


async def test_a_second_serve_in_the_same_place_says_why_in_one_line(tmp_path: Path) -> None:
    # `make run` again in another terminal: the first holds the queue journal. The second
    # said "CRITICAL stopped by an unexpected error" and a traceback of JournalInUse.
    second: list[int | str] = []

    async def while_serving(env: dict[str, str]) -> None:
        code, _, err = await leadbot_run("serve", env=env)
        second.extend([code, err])

    await _serve_once(tmp_path, {}, while_serving)
    code, err = second
    assert code == 2, err
    assert isinstance(err, str)
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("leadbot: cannot start: another leadbot process uses the queue journal ")
    )
    assert "Traceback" not in err


async def _serve_once(
    tmp_path: Path,
    settings: dict[str, str],
    while_serving: Callable[[dict[str, str]], Awaitable[None]] | None = None,
) -> list[str]:
    """Migrate, serve, answer /healthz, stop on SIGTERM with exit code 0; the log lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}
    env.update(
        LEADBOT_DATABASE__URL=f"sqlite+aiosqlite:///{tmp_path / 'leadbot.db'}",
        LEADBOT_HTTP__PORT="0",
        **settings,
    )
    migrate = await leadbot_process("db", "upgrade", env=env)
    assert await asyncio.wait_for(migrate.wait(), 60) == 0
    proc = await leadbot_process("serve", env=env)
    assert proc.stderr is not None
    log: list[str] = []
    port = None
    try:
        async with asyncio.timeout(60):
            while port is None:
                line = (await proc.stderr.readline()).decode()
                assert line, "serve exited early:\n" + "".join(log)
                log.append(line)
                found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
                port = int(found.group(1)) if found else None
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as r,
        ):
            assert r.status == 200 and (await r.json()) == {"status": "ok"}
        if while_serving is not None:
            await while_serving(env)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0
    return log
