"""An upgrade as an operator does it: a database made and filled by the previous schema's
version of Leadbot (its own code, taken from git history and run as it was) is refused by this
version's `serve` with one line, migrated by `leadbot db upgrade`, and then served with every
lead, rep and API token it had."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import leadbot_run, serve_process
from tests.servers import end_process

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("leadbot", "httpkit", "bot", "channels", "console", "charts", "crm", "matching")


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout


def _present(commit: str) -> list[str]:
    """The packages that commit has (an older version may lack a newer package)."""
    top = set(_git("ls-tree", "--name-only", commit).split())
    return [p for p in PACKAGES if p in top]


def previous_version(into: Path) -> str:
    """Unpack the packages as they were just before the newest migration was added (on
    main's first-parent line); the commit. Skips when there is no git history."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("no git history to take the previous version from")
    try:
        newest = _git(
            "log", "--first-parent", "--format=%H", "-1", "--", "crm/migrations/versions"
        ).strip()
    except subprocess.CalledProcessError:
        pytest.skip("no git history to take the previous version from")
    if not newest or not _git("rev-list", "--parents", "-n1", newest).split()[1:]:
        pytest.skip("the first version has no previous one")
    before = f"{newest}^1"
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", before, *_present(before)],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return before


async def _old(old: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`leadbot <args>` of the previous version: its packages first on the path."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from leadbot.cli import main; sys.exit(main(sys.argv[1:]))",
        *args,
        env={**env, "PYTHONPATH": str(old)},
        cwd=old,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _events(n: int) -> str:
    lines = []
    for i in range(n):
        extension = " ext 12" if i % 5 == 0 else ""
        lines.append(
            json.dumps(
                {
                    "channel": "call",
                    "external_id": f"old-call-{i}",
                    "occurred_at": datetime(2026, 11, 30, 9, i % 60, tzinfo=UTC).isoformat(),
                    "phones": [f"+49 30 {5550000 + i}{extension}"],
                    "display_name": f"Kunde {i}",
                }
            )
        )
    return "\n".join(lines) + "\n"


async def _write_status(port: int, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(f"http://127.0.0.1:{port}/api/v1/leads", json={"title": "x"}) as r,
    ):
        return r.status


async def _leads(port: int, token: str) -> list[tuple[int, str, str]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(f"http://127.0.0.1:{port}/api/v1/leads", params={"limit": "200"}) as r,
    ):
        assert r.status == 200, await r.text()
        items = (await r.json())["items"]
    return sorted((i["id"], i["title"], i["status"]) for i in items)


@pytest.mark.timeout(300)
async def test_a_database_of_the_previous_version_is_refused_then_upgraded_and_served(
    tmp_path: Path,
) -> None:
    old = tmp_path / "previous"
    previous_version(old)
    home = tmp_path / "data"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}
    env.update(
        LEADBOT_DATABASE__URL=f"sqlite+aiosqlite:///{home / 'leadbot.db'}",
        LEADBOT_QUEUE__JOURNAL_DIR=str(home / "journal"),
        LEADBOT_HTTP__PORT="0",
    )
    events = home / "events.jsonl"
    events.write_text(_events(30))

    # The previous version makes and fills its database.
    for args in (
        ("db", "upgrade"),
        ("rep", "add", "Rita", "--telegram-id", "1001"),
        ("ingest", str(events)),
    ):
        code, _, err = await _old(old, env, *args)
        assert code == 0, (args, err)
    code, out, err = await _old(old, env, "token", "create", "dashboard")
    assert code == 0, err
    token = out.strip().splitlines()[-1]

    # This version refuses to serve it before the upgrade, in one line.
    code, _, err = await leadbot_run("serve", env=env)
    assert code == 2
    assert re.fullmatch(
        r"leadbot: the database is at schema \w+, this version needs \w+: back it up, "
        r"then run `leadbot db upgrade`",
        err.strip(),
    ), err

    code, _, err = await leadbot_run("db", "upgrade", env=env, timeout=120)
    assert code == 0, err
    proc, port = await serve_process(env)
    try:
        leads = await _leads(port, token)  # the old token still opens the API
        assert await _write_status(port, token) == 403  # ... to read only (migration 0004)
    finally:
        await end_process(proc)
    assert len(leads) == 30
    assert {title for _, title, _ in leads} >= {"+49 30 5550001 — incoming call"}
    code, out, _ = await leadbot_run("rep", "list", env=env)
    assert code == 0 and "Rita" in out
