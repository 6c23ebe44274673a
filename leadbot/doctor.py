"""`leadbot doctor`: check the configuration and reach out to everything it names — the
database and its schema, Redis and its persistence, each mailbox's login and folder, the
Telegram token and webhook, the public URL — one line per check with what to fix.

Exit code 0 when nothing failed (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable
from typing import Any, Literal

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from bot.doctor import check_telegram
from channels.mail.doctor import check_mailbox, check_smtp
from crm.db import Database
from crm.schema import current_revision, head_revision
from leadbot.app import aof_is_off
from leadbot.cli_common import reason_of, settings_of
from leadbot.logs import safe_redis_url, safe_url
from leadbot.settings import Settings

Verdict = Literal["ok", "WARN", "FAIL"]
Line = tuple[Verdict, str, str]
TIMEOUT = 15.0


async def _database(settings: Settings) -> Line:
    url = settings.database.url
    db = Database(url)
    try:
        await asyncio.wait_for(db.ping(), TIMEOUT)
        current, head = await current_revision(db), head_revision()
    except Exception as exc:
        return "FAIL", "database", f"{safe_url(url)}: {reason_of(exc)}; check database.url"
    finally:
        await db.dispose()
    if current != head:
        state = "not migrated" if current is None else f"at schema {current}, needs {head}"
        return "FAIL", "database", f"{safe_url(url)} {state}: run `leadbot db upgrade`"
    return "ok", "database", f"{safe_url(url)} at schema {head}"


async def _redis(settings: Settings) -> Line | None:
    if not settings.redis.url:
        return None
    where = safe_redis_url(settings.redis.url)
    redis = Redis.from_url(settings.redis.url)
    try:
        await asyncio.wait_for(redis.ping(), TIMEOUT)
        try:
            answer: Any = await redis.config_get("appendonly")
        except ResponseError:
            return "WARN", "redis", f"{where} answers; its persistence cannot be read (CONFIG off)"
    except (RedisError, OSError, TimeoutError) as exc:
        return "FAIL", "redis", f"{where}: {reason_of(exc)}; check redis.url"
    finally:
        await redis.aclose()
    if aof_is_off(answer):
        return (
            "WARN",
            "redis",
            f"{where} answers, without its append-only file: a Redis restart loses acknowledged "
            "events; set `appendonly yes` in redis.conf",
        )
    return "ok", "redis", f"{where} answers, append-only file on"


async def _public_url(settings: Settings) -> Line:
    url = settings.http.public_url.rstrip("/") + "/healthz"
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as r:
            ok = r.status == 200 and (await r.json(content_type=None)).get("status") == "ok"
    except Exception as exc:
        return (
            "WARN",
            "public URL",
            f"nothing answers at {url} ({reason_of(exc)}): is Leadbot running, is the proxy "
            "set up? Signed webhooks (Twilio) are checked against http.public_url",
        )
    if not ok:
        return "WARN", "public URL", f"{url} answers, but not as Leadbot's /healthz does"
    return "ok", "public URL", f"{url} answers"


async def _checked(name: str, check: Awaitable[tuple[bool, str]]) -> Line:
    ok, detail = await check
    return ("ok" if ok else "FAIL"), name, detail


async def diagnose(settings: Settings) -> list[Line]:
    where = str(settings.config) if settings.config else "no config file (defaults, environment)"
    lines: list[Line] = [("ok", "config", f"{where}: valid")]
    checks: list[Awaitable[Line | None]] = [_database(settings), _redis(settings)]
    checks += [_checked(f"mailbox {b.name}", check_mailbox(b)) for b in settings.mailboxes]
    checks += [_checked(f"smtp {b.name}", check_smtp(b)) for b in settings.mailboxes if b.smtp]
    checks += [_checked("telegram", check_telegram(settings.telegram)), _public_url(settings)]
    lines += [line for line in await asyncio.gather(*checks) if line is not None]
    return lines


def cmd_doctor(args: argparse.Namespace) -> int:
    lines = asyncio.run(diagnose(settings_of(args)))
    width = max(len(name) for _, name, _ in lines)
    for verdict, name, detail in lines:
        print(f"{verdict:<4}  {name:<{width}}  {detail}")
    return 1 if any(verdict == "FAIL" for verdict, _, _ in lines) else 0


def register_cli(subparsers: Any) -> None:
    """Add `doctor` to the `leadbot` command line."""
    p = subparsers.add_parser(
        "doctor",
        help="check the config and reach the database, Redis, mailboxes, Telegram, public URL",
        description=__doc__,
    )
    p.set_defaults(fn=cmd_doctor)
