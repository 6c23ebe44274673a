"""Configuration: the example file is complete and valid; bad input gives one clear line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from leadbot.settings import ConfigError, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "leadbot.example.toml"


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        ann: Any = field.annotation
        models = [
            t
            for t in getattr(ann, "__args__", (ann,))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if not models:
            out.add(prefix + name)  # a leaf key
        for t in models:
            out |= _keys(t, f"{prefix}{name}.")
    return out


def test_example_config_loads_and_mentions_every_setting() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.crm.default_region == "DE"
    text = EXAMPLE.read_text()
    mentioned = set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, re.M))
    leaves = {k.rsplit(".", 1)[-1] for k in _keys(Settings)}
    assert leaves - mentioned == set()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[crm]\nmdoe = 'simple'\n", "config error: crm.mdoe: unknown key"),
        ("[http]\nport = 'eighty'\n", "config error: http.port: Input should be a valid integer"),
        (
            "[crm]\nmode = 'fancy'\n",
            "config error: crm.mode: Input should be 'classic' or 'simple'",
        ),
        (
            "[crm]\ntimezone = 'Mars/Olympus_Mons'\n",
            "config error: crm.timezone: Value error, unknown time zone 'Mars/Olympus_Mons'",
        ),
        ("[crm]\ntimezone = '../etc/passwd'\n", "config error: crm.timezone: Value error"),
        ("[http\n", "config file"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[crm]\nmode = 'classic'\n[telegram]\ntoken = 'file-token'\n")
    monkeypatch.setenv("LEADBOT_CRM__MODE", "simple")
    s = load_settings(path)
    assert s.crm.mode == "simple"
    assert "file-token" not in repr(s) and "file-token" not in str(s.telegram)
    assert s.telegram.token is not None and s.telegram.token.get_secret_value() == "file-token"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full = {**os.environ, **(env or {})}
    full.pop("LEADBOT_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "leadbot.cli", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
        check=False,
    )


def test_cli_exits_with_one_line_for_bad_config_and_unreachable_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[database]\nurl = 'sqlite+aiosqlite:///x.db'\nport = 1\n")
    r = _cli("--config", str(bad), "serve")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == "leadbot: config error: database.port: unknown key"
    r = _cli("serve", env={"LEADBOT_DATABASE__URL": "postgresql+asyncpg://nobody@127.0.0.1:1/x"})
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "leadbot: database unreachable: postgresql+asyncpg://nobody@127.0.0.1:1/x"
    )
    r = _cli("serve", env={"LEADBOT_CRM__TIMEZONE": "Europe/Berlinn"})
    assert r.returncode == 2
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "leadbot: config error: crm.timezone: Value error, unknown time zone 'Europe/Berlinn'"
        )
    )
    r = _cli("--config", str(tmp_path / "missing.toml"), "rep", "list")
    assert r.returncode == 2 and "not found" in r.stderr


def test_a_channel_command_refusing_its_input_is_one_line(tmp_path: Path) -> None:
    """Commands that live in other modules (import-csv) raise the CLI's error too: under
    `python -m leadbot.cli` it must be caught as the one-line refusal, not a traceback."""
    db = {"LEADBOT_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'leadbot.db'}"}
    r = _cli("import-csv", str(tmp_path / "missing.csv"), "--as", "contact", env=db)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"leadbot: {tmp_path / 'missing.csv'}: No such file or directory"
    ]


def test_cli_rep_and_exceptions_round_trip(tmp_path: Path) -> None:
    env = {"LEADBOT_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"}
    assert _cli("db", "upgrade", env=env).returncode == 0
    r = _cli("rep", "add", "Rita Rep", "--invite", env=env)
    assert r.returncode == 0 and "rep #1 Rita Rep (rep) added" in r.stdout
    assert "/start " in r.stdout
    assert "Rita Rep" in _cli("rep", "list", env=env).stdout
    assert _cli("exceptions", "add", "+49 30 555555", "--comment", "spam", env=env).returncode == 0
    assert "+4930555555" in _cli("exceptions", "list", env=env).stdout
    r = _cli("exceptions", "add", "not a number", env=env)
    assert r.returncode == 2 and "neither an email address nor a phone number" in r.stderr
    r = _cli("rep", "deactivate", "99", env=env)
    assert r.returncode == 2 and "rep #99 does not exist" in r.stderr


def test_relative_paths_of_a_config_file_are_relative_to_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    config = conf_dir / "leadbot.toml"
    config.write_text(
        '[database]\nurl = "sqlite+aiosqlite:///data/leads.db"\n'
        '[queue]\njournal_dir = "spool"\n'
        '[phone]\nrecordings_dir = "/var/lib/leadbot/rec"\n'
        '[[mailboxes]]\nname = "sales"\nhost = "imap.example.com"\nuser = "s"\n'
        'password_file = "secrets/imap"\n'
    )
    for key in [k for k in os.environ if k.startswith("LEADBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # started from elsewhere
    settings = load_settings(config)
    assert settings.database.url == f"sqlite+aiosqlite:///{conf_dir}/data/leads.db"
    assert settings.queue.journal_dir == str(conf_dir / "spool")
    assert settings.phone.recordings_dir == "/var/lib/leadbot/rec"  # absolute: as written
    assert settings.mailboxes[0].password_file == conf_dir / "secrets" / "imap"
    # Without a config file relative paths stay relative to the working directory.
    assert load_settings().database.url == "sqlite+aiosqlite:///./leadbot.db"


def test_the_public_url_follows_the_port_unless_it_is_set(tmp_path: Path) -> None:
    # 8080 taken, so `make run` with LEADBOT_HTTP__PORT=9000: the sign-in link `web link`
    # prints (and the URL Twilio signatures are checked against) must be on 9000, not 8080.
    env = {"LEADBOT_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"}
    assert _cli("db", "upgrade", env=env).returncode == 0
    assert _cli("rep", "add", "Rita Rep", env=env).returncode == 0
    r = _cli("web", "link", "1", env={**env, "LEADBOT_HTTP__PORT": "9000"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("http://127.0.0.1:9000/app/login/"), r.stdout
    # Listening on every address: the link for a browser on this machine.
    assert Settings(http={"host": "0.0.0.0", "port": 9000}).http.public_url == (
        "http://127.0.0.1:9000"
    )
    assert Settings(http={"host": "::1", "port": 9000}).http.public_url == "http://[::1]:9000"
    # Set, it is kept whatever the port; port 0 (any free port) keeps the default.
    assert Settings(
        http={"port": 9000, "public_url": "https://crm.example.com"}
    ).http.public_url == ("https://crm.example.com")
    assert Settings(http={"port": 0}).http.public_url == "http://127.0.0.1:8080"
    assert Settings().http.public_url == "http://127.0.0.1:8080"


def test_a_copy_of_the_example_moves_the_public_url_with_the_port(tmp_path: Path) -> None:
    # README: `cp config/leadbot.example.toml leadbot.toml`, then change the port.
    copy = tmp_path / "leadbot.toml"
    copy.write_text(EXAMPLE.read_text().replace("port = 8080", "port = 9000", 1))
    assert load_settings(copy).http.public_url == "http://127.0.0.1:9000"
