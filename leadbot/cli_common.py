"""What every `leadbot` command shares: its error type, the settings `main` loaded, and the
checks a command makes before it starts (the servers reachable, the schema current), each
failure one line naming the fix."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable

from redis.asyncio import Redis

from crm.db import Database
from leadbot.logs import safe_redis_url, safe_url
from leadbot.settings import Settings, load_settings
from leadbot.wiring import change_feed

log = logging.getLogger("leadbot")


class CliError(Exception):
    """A one-line reason to print before exiting non-zero."""


def settings_of(args: argparse.Namespace) -> Settings:
    loaded: Settings | None = getattr(args, "loaded_settings", None)  # main() read them
    if loaded is not None:
        return loaded
    return load_settings(args.config) if args.config else load_settings()


def reason_of(exc: BaseException) -> str:
    """Why a server cannot be reached, in one line (the system's words for a socket error)."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, TimeoutError):
            return "no answer within 10 s"
        if isinstance(current, OSError) and current.errno is not None and current.errno > 0:
            return os.strerror(current.errno)
        if isinstance(current, OSError) and current.strerror:
            return current.strerror  # a resolver error: "Name or service not known"
        current = current.__cause__
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


async def reachable(
    what: str, where: str, ping: Callable[[], Awaitable[object]], wait: float = 0.0
) -> None:
    """Returns once `ping` answers. Waits up to `wait` seconds for it, one line per retry;
    then (or at once) raises one line naming the server and why it cannot be reached."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    pause = 1.0
    while True:
        try:
            await asyncio.wait_for(ping(), timeout=10)
            return
        except Exception as exc:
            reason = reason_of(exc)
            left = deadline - loop.time()
            if left <= 0:
                raise CliError(f"{what} unreachable: {where}: {reason}") from None
            pause = min(pause, left)
            log.warning("%s unreachable: %s: %s; retrying in %.0f s", what, where, reason, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)


async def ping_or_fail(db: Database, url: str, wait: float = 0.0) -> None:
    """One line naming the database and why it cannot be reached."""
    await reachable("database", safe_url(url), db.ping, wait)


async def schema_or_fail(db: Database) -> None:
    """The database must be at this version's schema. A SQLite file never migrated (the
    embedded default on its first start) is migrated here; anything else is left to
    `leadbot db upgrade`, which an operator runs after a backup (docs/operations)."""
    from crm.schema import current_revision, head_revision, is_empty, upgrade

    current, head = await current_revision(db), head_revision()
    if current == head:
        return
    if current is None and db.is_sqlite and await is_empty(db):
        log.info("new database %s: creating its tables", safe_url(str(db.url)))
        await upgrade(db)
        return
    if current is None:
        raise CliError("the database is not migrated: run `leadbot db upgrade`")
    raise CliError(
        f"the database is at schema {current}, this version needs {head}: "
        "back it up, then run `leadbot db upgrade`"
    )


async def database_ready(settings: Settings, wait: float = 0.0, *, redis: bool = False) -> None:
    """The database reachable (and Redis, if asked and configured) and at this version's
    schema, or one line saying what to do. The servers first: a start with one of them down
    says only that."""
    db = Database(settings.database.url)
    try:
        await ping_or_fail(db, settings.database.url, wait)
        if redis and settings.redis.url:
            client = Redis.from_url(settings.redis.url)
            try:
                where = safe_redis_url(settings.redis.url)
                await reachable("queue", where, client.ping, settings.redis.startup_wait)
            finally:
                await client.aclose()
        await schema_or_fail(db)
    finally:
        await db.dispose()


@contextlib.asynccontextmanager
async def publishing(db: Database, settings: Settings) -> AsyncIterator[None]:
    """A one-shot command's writes reach the change feed of the running processes (their live
    boards and caller caches) when Redis is configured: its commits are published on the
    channel `serve` listens to, and sent before the command exits. Without Redis there is no
    other process to tell (an embedded `serve` sees a CLI write after its cache's TTL)."""
    if not settings.redis.url:
        yield
        return
    redis = Redis.from_url(settings.redis.url)
    feed = change_feed(redis, settings.redis.stream)
    db.feed = feed
    await feed.start(listen=False)
    try:
        yield
    finally:
        await feed.close()
        await redis.aclose()
