"""`leadbot doctor` against good and broken configurations, as an operator runs it: a real
Dovecot (right and wrong password), the Bot API fake with its one valid token, the shared
Redis (which keeps nothing on disk: no append-only file), a database that is there and one
that is not. One line per check, what to fix, exit 1 only when something failed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.conftest import REDIS_URL, leadbot_run
from tests.fakes.telegram_api import FakeTelegram
from tests.servers import free_port

from .dovecot import Dovecot
from .support import mailbox

TOKEN = "7000000001:AAH-doctor-test-token-0123456789abcdef"


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return str(value).lower() if isinstance(value, bool) else str(value)


def _config(
    tmp_path: Path, name: str, db_url: str, box: dict[str, Any], tg: FakeTelegram, token: str
) -> Path:
    lines = [
        f'[database]\nurl = "{db_url}"',
        f'[redis]\nurl = "{REDIS_URL}"',
        f'[http]\npublic_url = "http://127.0.0.1:{free_port()}"',
        f'[telegram]\ntoken = "{token}"\nbase_url = "{tg.base_url}"',
        "[[mailboxes]]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in box.items()),
    ]
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _lines(out: str) -> dict[str, tuple[str, str]]:
    found = {}
    for line in out.splitlines():
        verdict, rest = line.split(None, 1)
        for name in ("config", "database", "redis", "mailbox sales", "telegram", "public URL"):
            if rest.startswith(name + " "):
                found[name] = (verdict, rest[len(name) :].strip())
    return found


async def test_doctor_on_a_good_and_a_broken_configuration(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'leadbot.db'}"
    async with FakeTelegram(token=TOKEN) as tg:
        good = _config(tmp_path, "good", db_url, mailbox(dovecot), tg, TOKEN)
        assert (await leadbot_run("--config", str(good), "db", "upgrade", env=env))[0] == 0
        code, out, err = await leadbot_run("--config", str(good), "doctor", env=env, timeout=90)
        found = _lines(out)
        assert code == 0, out + err
        assert found["database"][0] == "ok" and "at schema" in found["database"][1]
        assert found["mailbox sales"][0] == "ok" and "INBOX open" in found["mailbox sales"][1]
        assert found["telegram"] == ("ok", "@leadbot_test_bot answers")
        assert found["redis"][0] == "WARN" and "appendonly yes" in found["redis"][1]
        assert found["public URL"][0] == "WARN" and "nothing answers" in found["public URL"][1]

        down = f"postgresql+asyncpg://leadbot:pw@127.0.0.1:{free_port()}/leadbot"
        bad_box = mailbox(dovecot, password="wrong-password")
        broken = _config(tmp_path, "broken", down, bad_box, tg, "7000000001:wrong-token-xyz")
        code, out, err = await leadbot_run("--config", str(broken), "doctor", env=env, timeout=90)
        found = _lines(out)
        assert code == 1, out + err
        assert found["database"][0] == "FAIL" and "check database.url" in found["database"][1]
        assert "pw@" not in out  # the database password stays hidden
        assert found["mailbox sales"][0] == "FAIL"
        assert "check host, port, security, user and password" in found["mailbox sales"][1]
        assert "wrong-password" not in out
        assert found["telegram"][0] == "FAIL" and "refused" in found["telegram"][1]
