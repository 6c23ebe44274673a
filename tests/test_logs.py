"""The secret filter on log records, and the logging set-up of the `leadbot` command."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from aioimaplib.aioimaplib import quoted
from pydantic import BaseModel, SecretStr

from leadbot.logs import LOG_FORMAT, Redactor, SecretFilter, configured_secrets
from leadbot.settings import Settings
from tests.conftest import leadbot_process

SECRET = "unitSecret-Zq81x"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own whose handler has the filter (configured with SECRET)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(SecretFilter(Redactor([SECRET])))
    logger = logging.getLogger(f"test.logs.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, out
    logger.removeHandler(handler)


def test_message_args_exception_and_stack_are_redacted(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    log, out = logged
    log.info("POST %s answered %d", f"http://h/bot123:{SECRET}/getMe", 200)
    log.warning("in the dict: %(key)s", {"key": f"token={SECRET}"})
    try:
        raise RuntimeError(f"refused with {SECRET}")
    except RuntimeError:
        log.exception("failed on %s", f"/rest/1/{SECRET}/telephony.externalcall.register")
    log.debug("here", stack_info=True, extra={"unused": SECRET})
    text = out.getvalue()
    assert SECRET not in text
    assert "POST http://h/bot[redacted]/getMe answered 200" in text
    assert "RuntimeError: refused with [redacted]" in text  # the traceback is still there
    assert "failed on /rest/1/[redacted]/telephony.externalcall.register" in text
    assert "Stack (most recent call last)" in text


def test_every_handler_sees_the_redacted_record_once(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    log, first = logged
    second = io.StringIO()
    other = logging.StreamHandler(second)
    other.addFilter(log.handlers[0].filters[0])
    log.addHandler(other)
    try:
        log.error("a %s b", SECRET)
    finally:
        log.removeHandler(other)
    assert "a [redacted] b" in first.getvalue()
    assert second.getvalue() == "a [redacted] b\n"


def test_a_broken_format_string_still_logs_redacted(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    log, out = logged
    log.info("%s and %s", SECRET)  # one argument short
    assert SECRET not in out.getvalue() and "[redacted]" in out.getvalue()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"x {SECRET} y", "x [redacted] y"),
        # Telegram: a path, URL-quoted (either case), a file URL, a bare token.
        ("POST https://api.telegram.org/bot12345:AAE-x_Y/sendMessage 200",
         "POST https://api.telegram.org/bot[redacted]/sendMessage 200"),
        ("GET /bot12345%3aAAE-x_Y/getMe", "GET /bot[redacted]/getMe"),
        ("https://api.telegram.org/file/bot12345%3AAAE/photos/1.jpg",
         "https://api.telegram.org/file/bot[redacted]/photos/1.jpg"),
        ("The token `7301234567:AAFrepBotTokenLogTest_q8Zr3Kx2Vw9Lm4Np` was rejected",
         "The token `[redacted]` was rejected"),
        # Bitrix24: whole, and cut short inside the token.
        ("GET /rest/1/abc123/telephony.externalcall.register?X=1",
         "GET /rest/1/[redacted]/telephony.externalcall.register?X=1"),
        ("bytearray(b'/rest/12/abcdefgh...')", "bytearray(b'/rest/12/[redacted]')"),
        # Web console sign-in links.
        ("refused GET /app/login/Xy_9-ab (/app/login/{token}) from 127.0.0.1: 403",
         "refused GET /app/login/[redacted] (/app/login/{token}) from 127.0.0.1: 403"),
        ("POST /rest/api/1/abc123/crm.lead.list", "POST /rest/api/1/[redacted]/crm.lead.list"),
        # REST API tokens and Authorization headers in their usual shapes.
        ("token lb_AbCdEf0123456789_-xyzXYZ used", "token [redacted] used"),
        ("Authorization: Bearer abc.def", "Authorization: [redacted]"),
        ("{'authorization': 'Basic dXNlcjpwdw==', 'host': 'h'}",
         "{'authorization': '[redacted]', 'host': 'h'}"),
        ("[(b'Authorization', b'Bearer x')]", "[(b'Authorization', b'[redacted]')]"),
        ("X-Telegram-Bot-Api-Secret-Token: s3", "X-Telegram-Bot-Api-Secret-Token: [redacted]"),
        # Query parameters and URL passwords.
        ("GET /hooks/whatsapp?hub.mode=subscribe&hub.verify_token=abc&hub.challenge=1",
         "GET /hooks/whatsapp?hub.mode=subscribe&hub.verify_token=[redacted]&hub.challenge=1"),
        ("redis://:pw0rd@127.0.0.1:6379/0", "redis://:[redacted]@127.0.0.1:6379/0"),
        ("postgresql+asyncpg://lead:pw@db/leadbot", "postgresql+asyncpg://lead:[redacted]@db/leadbot"),
        # Ordinary lines stay as they are.
        ("config error: telegram.token: unknown key", None),
        ("token #3 created; GET /api/v1/leads?limit=5", None),
        ("listening on http://127.0.0.1:8080", None),
        ("rest of /rest/api/v1 stays", None),
    ],
)  # fmt: skip
def test_redactor_shapes(line: str, expected: str | None) -> None:
    got = Redactor([SECRET])(line)
    assert got == (line if expected is None else expected)


def test_a_secret_is_redacted_in_the_spellings_libraries_give_it() -> None:
    secret = 'Zq"s s\\wörd:/&x'
    lines = [
        f"Sending : {f'A1 LOGIN u {quoted(secret)}'.encode()!s}",  # aioimaplib at DEBUG
        repr({"secret_token": secret}),  # python-telegram-bot's parameters at DEBUG
        json.dumps({"detail": secret}),
        f"HTTP Request: GET {httpx.URL(f'http://h/hook/{secret}/x')}",
        f"GET /?{urlencode({'q': secret})}",
        f"GET {httpx.URL('http://h/', params={'q': secret})}",
    ]
    redact = Redactor([secret])
    for line in lines:
        assert "Zq" in line and "Zq" not in redact(line), (line, redact(line))


def test_every_secret_setting_is_collected(tmp_path: Path, monkeypatch: Any) -> None:
    """Each SecretStr of the settings (found by walking the model, so a new one is covered
    without a change here), mailbox passwords from a file and the environment, URL passwords."""

    def secret_fields(model: type[BaseModel], prefix: str) -> list[str]:
        found = []
        for name, field in model.model_fields.items():
            if SecretStr in getattr(field.annotation, "__args__", (field.annotation,)):
                found.append(f"{prefix}{name}")
        return found

    sections: dict[str, dict[str, Any]] = {}
    expected: list[str] = []
    names: list[str] = []
    for name, field in Settings.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            for key in secret_fields(kind, ""):
                value = f"s-{name}-{key}-{uuid.uuid4().hex[:6]}"
                sections.setdefault(name, {})[key] = value
                expected.append(value)
                names.append(f"{name}.{key}")
    assert {"telegram.token", "phone.bitrix_token", "whatsapp.app_secret"} <= set(names)
    (tmp_path / "pw").write_text("from-a-file\n")
    monkeypatch.setenv("LEADBOT_TEST_BOX_PW", "from-the-env")
    boxes = [
        {"name": "a", "host": "h", "user": "u", "password": "inline-pw"},
        {"name": "b", "host": "h", "user": "u", "password_file": str(tmp_path / "pw")},
        {"name": "c", "host": "h", "user": "u", "password_env": "LEADBOT_TEST_BOX_PW"},
    ]
    settings = Settings(
        **sections,
        mailboxes=boxes,
        database={"url": "postgresql+asyncpg://lead:db%2Fpw@db/leadbot"},
        redis={"url": "redis://:redis-pw@127.0.0.1:6379/0"},
    )
    found = set(configured_secrets(settings))
    expected += ["inline-pw", "from-a-file", "from-the-env", "db/pw", "db%2Fpw", "redis-pw"]
    assert set(expected) <= found


_SCRIPT = textwrap.dedent(
    """
    import logging, sys, warnings
    from sqlalchemy import create_engine, text
    from leadbot.logs import setup_logging

    own = logging.getLogger("own")  # a library logger with a handler of its own
    own.addHandler(logging.StreamHandler(sys.stdout))
    own.propagate = False
    setup_logging("INFO", ["unitSecret-Zq81x"])
    logging.getLogger("x").info("root: unitSecret-Zq81x")
    own.warning("own: unitSecret-Zq81x")
    warnings.warn("warned: unitSecret-Zq81x")
    engine = create_engine("sqlite://", echo=True)  # SQLAlchemy adds a stdout handler
    with engine.connect() as conn:
        conn.execute(text("SELECT 'echo: unitSecret-Zq81x'"))
    """
)


def test_set_up_covers_own_handlers_warnings_and_sqlalchemy_echo() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    output = done.stdout + done.stderr
    assert SECRET not in output
    for what in ("root", "own", "warned", "echo"):
        assert f"{what}: [redacted]" in output, output


async def _log_levels(tmp_path: Path, config_level: str, *flag: str) -> set[str]:
    """The levels of the lines `leadbot db upgrade` writes."""
    config = tmp_path / f"leadbot-{config_level}.toml"
    db = tmp_path / "leadbot.db"
    config.write_text(
        f'log_level = "{config_level}"\n[database]\nurl = "sqlite+aiosqlite:///{db}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}
    env["LEADBOT_CONFIG"] = str(config)
    proc = await leadbot_process(*flag, "db", "upgrade", env=env)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return {line.split()[1] for line in err.decode().splitlines() if line[:2] == "20"}


async def test_log_level_from_the_config_and_the_flag_overrides_it(tmp_path: Path) -> None:
    assert "DEBUG" in await _log_levels(tmp_path, "DEBUG")
    assert await _log_levels(tmp_path, "DEBUG", "--log-level", "warning") <= {"WARNING", "ERROR"}
    assert "INFO" in await _log_levels(tmp_path, "ERROR", "--log-level", "INFO")
    assert await _log_levels(tmp_path, "ERROR") == set()


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_an_unexpected_error_is_logged_redacted_and_exits_1(
    tmp_path: Path, log_format: str
) -> None:
    """A crash's traceback goes through the log (and the filter), not straight to stderr, in
    either log format. A command that fails in a way nobody foresaw is stood in for by one
    that raises an error naming the configured Redis URL, password included."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}
    env.update(
        LEADBOT_DATABASE__URL=f"sqlite+aiosqlite:///{tmp_path / 'leadbot.db'}",
        LEADBOT_REDIS__URL=f"redis://:{SECRET}@127.0.0.1:9/0",
        LEADBOT_LOG_FORMAT=log_format,
    )
    script = textwrap.dedent(
        """
        import sys
        from leadbot import cli

        def crash(args):
            raise RuntimeError("lost redis://:%s@127.0.0.1:9/0 midway" % "SECRET")

        cli.cmd_token = crash
        sys.exit(cli.main(["token", "list"]))
        """
    ).replace('"SECRET"', repr(SECRET))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    output = (out + err).decode()
    assert proc.returncode == 1, output
    assert SECRET not in output
    crash = "RuntimeError: lost redis://:[redacted]@127.0.0.1:9/0 midway"
    if log_format == "text":
        assert "CRITICAL leadbot: stopped by an unexpected error" in output
        assert crash in output and "Traceback" in output
        stamp = output.split()[0]  # ISO 8601 with the UTC offset
        assert datetime.fromisoformat(stamp).utcoffset() is not None, stamp
        return
    lines = [json.loads(line) for line in err.decode().splitlines()]  # every line is JSON
    (record,) = [r for r in lines if r["level"] == "CRITICAL"]
    assert record["logger"] == "leadbot"
    assert record["message"] == "stopped by an unexpected error"
    assert crash in record["exc_info"] and "Traceback" in record["exc_info"]
    assert datetime.fromisoformat(record["time"]).utcoffset() is not None


_CHATTY_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from leadbot.logs import setup_logging

    setup_logging(sys.argv[1])
    logging.getLogger("httpx").info("httpx request line")
    logging.getLogger("aioimaplib.aioimaplib").info("imap command line")
    logging.getLogger("httpx").warning("httpx trouble")
    logging.getLogger("leadbot").info("own line")
    """
)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_the_libraries_request_lines_are_heard_only_at_debug(level: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHATTY_SCRIPT, level],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "own line" in done.stderr and "httpx trouble" in done.stderr
    chatty = "httpx request line" in done.stderr, "imap command line" in done.stderr
    assert chatty == ((True, True) if level == "DEBUG" else (False, False)), done.stderr
