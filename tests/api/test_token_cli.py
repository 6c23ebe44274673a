"""`leadbot token create NAME --scope read,write --rep ID`, and what `token list` shows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import leadbot_run


@pytest.mark.timeout(120)
async def test_token_cli_scopes_and_rep(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}
    env["LEADBOT_DATABASE__URL"] = f"sqlite+aiosqlite:///{tmp_path / 'leadbot.db'}"
    for args in (("db", "upgrade"), ("rep", "add", "Rita")):
        code, _, err = await leadbot_run(*args, env=env)
        assert code == 0, err
    code, out, err = await leadbot_run(
        "token", "create", "crm sync", "--scope", "read,write", "--rep", "1", env=env
    )
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith("lb_")
    code, out, err = await leadbot_run("token", "create", "dashboard", env=env)
    assert code == 0, err
    code, out, _ = await leadbot_run("token", "list", env=env)
    assert out.splitlines() == [
        "#1\tcrm sync\tread,write\trep #1\tactive",
        "#2\tdashboard\tread\tsystem\tactive",
    ]
    code, _, err = await leadbot_run("token", "create", "x", "--scope", "admin", env=env)
    assert code != 0 and "scopes must be some of read, write, not admin" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = await leadbot_run("token", "create", "x", "--rep", "9", env=env)
    assert code != 0 and "rep #9 does not exist" in err
