"""What `leadbot serve` uses and where, as an operator starting it from a unit file sees it:
paths of a config file are relative to that file, a new embedded database is set up on its
first start, an unmigrated PostgreSQL is one line, and the first log line says what is used."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import leadbot_run
from tests.servers import end_process


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}


async def test_a_config_file_keeps_its_database_next_to_it_and_serve_sets_it_up(
    tmp_path: Path,
) -> None:
    etc, elsewhere = tmp_path / "etc" / "leadbot", tmp_path / "somewhere-else"
    etc.mkdir(parents=True)
    elsewhere.mkdir()
    config = etc / "leadbot.toml"
    # The database url left at its default, ./leadbot.db.
    config.write_text('[http]\nport = 0\npublic_url = "https://leads.example.com"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "leadbot.cli",
        "--config",
        str(config),
        "serve",
        cwd=elsewhere,  # as a unit file without WorkingDirectory starts it
        env=_clean_env(),
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not any("listening on" in line for line in lines):
                line = (await proc.stderr.readline()).decode()
                assert line, "serve exited:\n" + "".join(lines)
                lines.append(line)
    finally:
        await end_process(proc)
    text = "".join(lines)
    assert (etc / "leadbot.db").is_file() and not (elsewhere / "leadbot.db").exists()
    assert f"new database sqlite+aiosqlite:///{etc}/leadbot.db: creating its tables" in text
    (using,) = [line for line in lines if "INFO leadbot: using " in line]
    assert f"database sqlite+aiosqlite:///{etc}/leadbot.db;" in using
    assert f"queue in process, journal {etc}/leadbot.db.queue;" in using
    assert using.rstrip().endswith("public URL https://leads.example.com")
    assert "Traceback" not in text


@pytest.mark.parametrize("command", ["serve", "ingest"])
async def test_an_unmigrated_postgres_is_one_line_naming_the_fix(
    tmp_path: Path, empty_postgres: str, command: str
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    env = {**_clean_env(), "LEADBOT_DATABASE__URL": empty_postgres, "LEADBOT_HTTP__PORT": "0"}
    args = ("ingest", str(events)) if command == "ingest" else ("serve",)
    code, _, err = await leadbot_run(*args, env=env)
    assert code == 2
    assert err.splitlines() == ["leadbot: the database is not migrated: run `leadbot db upgrade`"]
