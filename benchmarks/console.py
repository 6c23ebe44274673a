"""`make bench` section for the web console: `/app/board` and record pages, p50 / p95 over
real HTTP.

A real service with the console runs on a seeded CRM (benchmarks.seed: per 10 contacts 5 leads,
3 deals); a signed-in supervisor (who sees every record) loads the lead board and the deal board
and record pages (a lead, a contact with its leads and deals, a deal, each with its history)
one request at a time (closed loop, so the figures are latency, not queueing). Baseline: a bare
aiohttp handler answering a body of the board page's size, on the same loop and client, in the
same run.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from benchmarks.bot import _database, _pct
from benchmarks.goals import Goal, Section

PAGES = {
    "lead board": "/app/board",
    "deal board": "/app/board?kind=deal",
    # Record 1 of each kind exists in every seeded size.
    "lead page": "/app/lead/1",
    "contact page": "/app/contact/1",
    "deal page": "/app/deal/1",
}
# Contacts seeded per run (quick or full), backends and timed requests per page.
SIZES = {True: [10_000, 100_000], False: [10_000, 1_000_000]}
BACKENDS = ("sqlite", "postgres")
REQUESTS = {True: 30, False: 100}


def _figures(latencies: list[float]) -> dict[str, Any]:
    p50, p95 = _pct(latencies, 0.5), _pct(latencies, 0.95)
    return {"requests": len(latencies), "p50_ms": p50, "p95_ms": p95}


async def _timed(http: aiohttp.ClientSession, url: str, n: int) -> tuple[list[float], bytes]:
    body = b""
    for _ in range(3):  # warm-up: first queries, template compilation
        async with http.get(url) as r:
            body = await r.read()
            assert r.status == 200, (r.status, body[:300])
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        async with http.get(url) as r:
            await r.read()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, body


async def baseline(body: bytes, n: int) -> dict[str, Any]:
    """A bare aiohttp handler answering `body` as HTML."""
    from tests.servers import free_port

    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            latencies, _ = await _timed(http, f"http://127.0.0.1:{port}/", n)
    finally:
        await runner.cleanup()
    return _figures(latencies)


async def measure(backend: str, contacts: int, n: int) -> list[dict[str, Any]]:
    """p50 / p95 of each board page on a CRM of `contacts` contacts."""
    from benchmarks.seed import seed_postgres, seed_sqlite
    from console.component import console_component
    from crm.config import CrmConfig
    from crm.db import Database
    from crm.facade import Crm
    from leadbot.app import Service
    from leadbot.settings import Settings
    from tests.servers import free_port

    async with _database(backend) as url:
        db = Database(url)
        await Crm(db, CrmConfig()).prepare()  # pipelines and stages the seeded deals use
        await db.dispose()
        started = time.perf_counter()
        if backend == "sqlite":
            await asyncio.to_thread(seed_sqlite, url.split(":///", 1)[1], contacts)
        else:
            await seed_postgres(url.replace("postgresql+asyncpg://", "postgresql://"), contacts)
        seed_s = time.perf_counter() - started
        port = free_port()
        with tempfile.TemporaryDirectory() as journal:
            settings = Settings(
                database={"url": url},
                http={"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}"},
                queue={"journal_dir": str(Path(journal) / "queue")},
            )
            service = Service(settings, components=[console_component])
            await service.start()
            try:
                sam = await service.crm.reps.add("Bench Supervisor", role="supervisor")
                signed = await service.crm.web_sessions.redeem(
                    await service.crm.web_sessions.create_link(sam.id)
                )
                rows = []
                cookies = {"leadbot_session": signed.session_token}
                async with aiohttp.ClientSession(cookies=cookies) as http:
                    for name, path in PAGES.items():
                        latencies, body = await _timed(http, f"http://127.0.0.1:{port}{path}", n)
                        rows.append(
                            _figures(latencies)
                            | {
                                "backend": backend,
                                "contacts": contacts,
                                "page": name,
                                "kb": round(len(body) / 1024),
                                "seed_s": round(seed_s, 1),
                                "body": body,
                            }
                        )
            finally:
                await service.stop()
    return rows


async def report(quick: bool = False) -> Section:
    n = REQUESTS[quick]
    rows: list[dict[str, Any]] = []
    for backend in BACKENDS:
        for size in SIZES[quick]:
            print(f"console: {backend}, {size:,} contacts …", file=sys.stderr)
            try:
                rows += await measure(backend, size, n)
            except OSError as err:  # PostgreSQL not running: say so, keep the rest
                rows.append({"backend": backend, "contacts": size, "error": err})
    sample = next((r["body"] for r in rows if "body" in r), b"x" * 50_000)
    base = await baseline(sample, n)
    lines = [
        "### Web console: `/app/board` and record pages over HTTP "
        "(supervisor, all records visible)",
        "",
        "| backend | contacts | page | page KB | requests | p50 ms | p95 ms "
        "| × baseline p95 | p95 < 100 ms |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['contacts']:,} | — | | | {r['error']} | | | |")
            continue
        ratio = r["p95_ms"] / base["p95_ms"] if base["p95_ms"] else float("nan")
        lines.append(
            f"| {r['backend']} | {r['contacts']:,} | {r['page']} | {r['kb']} | {r['requests']} "
            f"| {r['p50_ms']} | {r['p95_ms']} | {ratio:.0f} "
            f"| {'yes' if r['p95_ms'] < 100 else 'no'} |"
        )
    lines += [
        "",
        f"Baseline: a bare aiohttp handler answering a body of the first page's size, "
        f"p50 {base['p50_ms']} ms, p95 {base['p95_ms']} ms ({base['requests']} requests). "
        "Per 10 contacts the seed holds 5 leads (30% open) and 3 deals (40% open), all "
        "unassigned; each board page reads every column's count (and the deals' sums per "
        "currency) from the board counters the triggers keep, and the first 20 cards of each "
        "column by its (status | stage, created_at, id) index; a record page reads the record, "
        "its links and the first page of its history. One request at a time, after 3 "
        "warm-up requests. Seeding (with the triggers): "
        + ", ".join(
            f"{backend} {size:,} {seconds} s"
            for (backend, size), seconds in {
                (r["backend"], r["contacts"]): r["seed_s"] for r in rows if "seed_s" in r
            }.items()
        )
        + ".",
    ]
    return Section("\n".join(lines), goals(rows, base))


def goals(rows: list[dict[str, Any]], base: dict[str, Any]) -> list[Goal]:
    """Per backend, the slowest page's p95 at the largest size measured: < 100 ms."""
    out = []
    for backend in BACKENDS:
        measured = [r for r in rows if r["backend"] == backend and "p95_ms" in r]
        if not measured:
            continue
        largest = max(r["contacts"] for r in measured)
        slowest = max((r for r in measured if r["contacts"] == largest), key=lambda r: r["p95_ms"])
        where = "SQLite" if backend == "sqlite" else "PostgreSQL"
        out.append(
            Goal(
                f"console pages, {largest:,} contacts, {where}, slowest p95 "
                f"({slowest['page']}), ms",
                slowest["p95_ms"],
                f"bare handler p95 {base['p95_ms']} ms",
                slowest["p95_ms"] / base["p95_ms"] if base["p95_ms"] else None,
                "< 100 ms",
                slowest["p95_ms"] < 100,
            )
        )
    return out


if __name__ == "__main__":
    print(asyncio.run(report(quick=True)))
