"""`make bench` section for the rep bot: event received → `sendMessage` issued, p50 / p99.

A real service (queue, intake, outbox, notifier, python-telegram-bot) runs against the loopback
fake Bot API from the test suite; each event is submitted like a webhook would, and the clock
stops when the fake records the card's sendMessage. Events go one at a time (closed loop), so
the figure is latency, not queueing. Baseline: a bare PTB `send_message` to the same fake.
Needs the repository checkout (the fake lives in `tests/`).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PG_ADMIN = os.environ.get("LEADBOT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
TOKEN = "123456:BENCH"
CHAT = 4242


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def measure(
    n: int = 200, backend: str = "sqlite", poll_interval: float = 0.05
) -> dict[str, Any]:
    """Latency in ms from `Service.submit` to the card's sendMessage at the fake."""
    from bot.component import BotComponent, bot_component
    from leadbot.app import Service
    from leadbot.settings import Settings
    from matching.event import Channel, InboundEvent
    from tests.fakes.telegram_api import FakeTelegram

    async with _database(backend) as url, FakeTelegram() as tg:
        settings = Settings(
            database={"url": url},
            http={"host": "127.0.0.1", "port": 0},
            telegram={
                "token": TOKEN,
                "base_url": tg.base_url,
                "polling_timeout": 1,
                "outbox_poll_interval": poll_interval,
            },
        )
        service = Service(settings, components=[bot_component])
        await service.start()
        try:
            bot = next(c for c in service.components if isinstance(c, BotComponent))
            await bot.wait_ready()
            await service.crm.reps.add("Bench Rep", telegram_user_id=CHAT)
            latencies = []
            for i in range(n):
                marker = f"Bench Caller {i:05d}"
                event = InboundEvent(
                    Channel.EMAIL,
                    f"<bench-{i}@example.com>",
                    datetime.now(UTC),
                    display_name=marker,
                    emails=(f"bench{i}@example.com",),
                    subject="Price request",
                    text="Please send an offer.",
                )
                started = time.monotonic()
                await service.submit(event)
                calls = await tg.wait_for("sendMessage", timeout=30, predicate=_card_of(marker))
                latencies.append((calls[0].at - started) * 1000)
        finally:
            await service.stop()
    return _figures(latencies) | {"backend": backend, "poll_interval_ms": poll_interval * 1000}


async def baseline(n: int = 200) -> dict[str, Any]:
    """A bare python-telegram-bot send_message round trip to the same fake."""
    from telegram.ext import ApplicationBuilder

    from tests.fakes.telegram_api import FakeTelegram

    async with FakeTelegram() as tg:
        app = ApplicationBuilder().token(TOKEN).base_url(tg.base_url).build()
        async with app:
            latencies = []
            for i in range(n):
                started = time.monotonic()
                await app.bot.send_message(CHAT, f"<b>baseline</b> {i}", parse_mode="HTML")
                latencies.append((tg.calls("sendMessage")[-1].at - started) * 1000)
    return _figures(latencies)


def _card_of(marker: str) -> Any:
    def match(call: Any) -> bool:
        return bool(call.status == 200 and marker in str(call.params.get("text")))

    return match


def _figures(latencies: list[float]) -> dict[str, Any]:
    return {
        "events": len(latencies),
        "p50_ms": _pct(latencies, 0.50),
        "p99_ms": _pct(latencies, 0.99),
        "mean_ms": round(statistics.fmean(latencies), 1),
    }


class _database:
    """A fresh SQLite file or PostgreSQL database with the schema, removed afterwards."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.tmp: tempfile.TemporaryDirectory[str] | None = None
        self.pg_name: str | None = None

    async def __aenter__(self) -> str:
        from crm.db import Database
        from crm.models import Base

        if self.backend == "sqlite":
            self.tmp = tempfile.TemporaryDirectory()
            url = f"sqlite+aiosqlite:///{Path(self.tmp.name) / 'bench.db'}"
        else:
            self.pg_name = f"leadbot_botbench_{uuid.uuid4().hex[:8]}"
            await _pg(f'CREATE DATABASE "{self.pg_name}"')
            base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
            url = f"{base}/{self.pg_name}"
        db = Database(url)
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        await db.dispose()
        return url

    async def __aexit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()
        if self.pg_name is not None:
            await _pg(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def report(quick: bool = False) -> str:
    n = 50 if quick else 300
    base = await baseline(n)
    rows = []
    for backend in ("sqlite", "postgres"):
        for poll in (0.05, 0.5):
            try:
                rows.append(await measure(n, backend, poll))
            except OSError as err:  # PostgreSQL not running: say so, keep the rest
                rows.append({"backend": backend, "poll_interval_ms": poll * 1000, "error": err})
    lines = [
        "### Rep bot: event received → card's `sendMessage` issued",
        "",
        "| backend | outbox poll ms | events | p50 ms | p99 ms | × baseline p50 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['poll_interval_ms']:.0f} | — | {r['error']} | | |")
            continue
        ratio = r["p50_ms"] / base["p50_ms"] if base["p50_ms"] else float("nan")
        lines.append(
            f"| {r['backend']} | {r['poll_interval_ms']:.0f} | {r['events']} | {r['p50_ms']} "
            f"| {r['p99_ms']} | {ratio:.1f} |"
        )
    lines += [
        "",
        f"Baseline: a bare python-telegram-bot `send_message` to the same loopback fake, "
        f"p50 {base['p50_ms']} ms, p99 {base['p99_ms']} ms ({base['events']} calls).",
        "Path measured: `Service.submit` → queue → intake (matcher, CRM rows, outbox) → "
        "notifier (woken by intake; card load and render) → Bot API call. The outbox poll "
        "interval (`telegram.outbox_poll_interval`) only matters for events committed by other "
        "worker processes.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(asyncio.run(report(quick=True)))
