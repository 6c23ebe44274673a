"""Phone channel benchmark (`make bench`): wrk against the real service on a temporary SQLite
database, compared in the same run with a bare aiohttp handler that only answers 200.

Generic webhook, three kinds of load (each flat out, best of two runs, and throttled to a fixed
rate for latency):
- "replay": one body pre-signed with a fixed, valid timestamp, sent over and over. Replays in
  the window are accepted by design (answered 200 "duplicate", not queued again): this
  measures authentication, parsing and the duplicate check.
- "unique, Redis": pre-signed bodies with distinct call ids, queued to Redis Streams with the
  intake workers elsewhere (as `leadbot worker` processes run them): the whole verify → parse
  → enqueue → 2xx path of new events. Skipped when Redis is not reachable.
- "unique, in-process": the same bodies, queued in process and processed by intake in the
  same event loop (the single-process default), so intake's share of the CPU shows.
Caller lookup: wrk at a fixed rate against random numbers of a seeded CRM (1 million contacts;
100,000 with `quick`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from channels.phone.component import phone_component
from channels.phone.signatures import sign_generic

SECRET = "bench-secret"
LOOKUP_TOKEN = "bench-lookup"
REDIS_URL = os.environ.get("LEADBOT_BENCH_REDIS", "redis://127.0.0.1:6379/15")
THREADS = 2
CONNECTIONS = 32

# Printed by wrk's done() hook as one JSON line; latencies in microseconds.
_DONE = """
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    '\\nRESULT {"requests": %d, "seconds": %f, "errors": %d, "p50": %d, "p99": %d}\\n',
    summary.requests, summary.duration / 1e6, errors,
    latency:percentile(50), latency:percentile(99)))
end
"""


class WrkMissing(RuntimeError):
    pass


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing("wrk is not installed: `apt-get install wrk` (Debian package) first")
    return path


def _call(call_id: str) -> bytes:
    doc = {
        "event": "call.ringing",
        "call_id": call_id,
        "direction": "incoming",
        "from": f"+4930{abs(hash(call_id)) % 10**8:08d}",
        "to": "+4989111222",
        "line": "+4989111222",
    }
    return json.dumps(doc).encode()


def _lua_str(text: str) -> str:
    return "[==[" + text + "]==]"


def _throttle(rate: int | None, connections: int) -> str:
    """wrk's delay() hook: each connection waits so all of them together send `rate`/s;
    wrk starts a request's clock after the delay, so latency is the server's alone."""
    if rate is None:
        return ""
    return f"function delay() return {max(1, round(1000 * connections / rate))} end\n"


def replay_script(now: int) -> str:
    body = _call("bench-replay")
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {_lua_str(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["X-Leadbot-Signature"] = "{sign_generic(SECRET, now, body)}"\n'
    )


def unique_script(now: int, count: int) -> str:
    """`count` signed bodies; wrk thread k sends bodies k, k+THREADS, … so none is sent twice
    until the list runs out (then they are replays)."""
    bodies = [_call(f"bench-{i}") for i in range(count)]
    rows = ",\n".join(
        f'{{{_lua_str(b.decode())}, "{sign_generic(SECRET, now, b)}"}}' for b in bodies
    )
    return (
        f"local calls = {{\n{rows}\n}}\n"
        "local n = 0\n"
        "local threads = 0\n"
        "function setup(thread) thread:set('tid', threads); threads = threads + 1 end\n"
        "function request()\n"
        f"  local call = calls[(n * {THREADS} + tid) % #calls + 1]\n"
        "  n = n + 1\n"
        "  return wrk.format('POST', '/hooks/calls', {['Content-Type'] = 'application/json',\n"
        "    ['X-Leadbot-Signature'] = call[2]}, call[1])\n"
        "end\n"
    )


def lookup_script(contacts: int) -> str:
    return (
        f'wrk.headers["Authorization"] = "Bearer {LOOKUP_TOKEN}"\n'
        "function request()\n"
        f"  local i = math.random(0, {contacts - 1})\n"
        "  return wrk.format('GET', string.format("
        "'/hooks/calls/lookup?number=%%2B4930%08d', i))\n"
        "end\n"
    )


async def wrk(
    url: str, script: str, *, seconds: float, rate: int | None = None, workdir: Path
) -> dict[str, float]:
    """One wrk run; requests/s, p50 / p99 in ms, non-2xx / socket errors."""
    lua = workdir / f"wrk-{time.monotonic_ns()}.lua"
    lua.write_text(script + _throttle(rate, CONNECTIONS) + _DONE)
    proc = await asyncio.create_subprocess_exec(
        wrk_path(),
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{max(1, round(seconds))}s",  # wrk takes whole seconds
        "-s",
        str(lua),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    line = next((x for x in out.decode().splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        said = (err.decode() + out.decode()).strip()[-300:]
        raise RuntimeError(f"wrk failed ({proc.returncode}): {said}")
    raw = json.loads(line.removeprefix("RESULT "))
    return {
        "rps": round(raw["requests"] / raw["seconds"], 1),
        "p50_ms": round(raw["p50"] / 1000, 2),
        "p99_ms": round(raw["p99"] / 1000, 2),
        "errors": raw["errors"],
    }


@asynccontextmanager
async def bare_app() -> AsyncIterator[str]:
    """The baseline: an aiohttp handler that only answers 200."""

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hooks/calls", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # a free port, taken at once
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hooks/calls"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def phone_service(
    workdir: Path, *, contacts: int = 0, redis_stream: str | None = None
) -> AsyncIterator[Any]:
    """The real service with the phone channel on a fresh SQLite file (seeded when asked).
    With `redis_stream`, events go to that Redis stream and no intake worker runs here."""
    from benchmarks.seed import seed_sqlite
    from crm.models import Base
    from leadbot.app import Service
    from leadbot.settings import Settings

    path = workdir / f"phone-{time.monotonic_ns()}.db"
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{path}"},
        http={"host": "127.0.0.1", "port": 0},
        phone={"webhook_secret": SECRET, "lookup_token": LOOKUP_TOKEN, "region": "DE"},
        redis={"url": REDIS_URL, "stream": redis_stream} if redis_stream else {},
    )
    service = Service(settings, components=[phone_component], workers=0 if redis_stream else 1)
    async with service.db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    if contacts:
        await asyncio.to_thread(seed_sqlite, str(path), contacts)
        await _assign_reps(service)
    await service.start()
    try:
        yield service
    finally:
        if service.redis is not None and redis_stream:
            await service.redis.delete(redis_stream)
        await service.stop()


async def redis_reachable() -> bool:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        await asyncio.wait_for(client.ping(), timeout=2)
        return True
    except Exception:
        return False
    finally:
        await client.aclose()


async def _assign_reps(service: Any) -> None:
    """Five reps with extensions, each responsible for a fifth of the contacts."""
    from sqlalchemy import text

    for k in range(5):
        await service.crm.reps.add(f"Rep {k}", extension=f"{101 + k}", phone=f"+49176000{k:04d}")
    async with service.db.transaction() as s:
        await s.execute(text("UPDATE contacts SET responsible_id = 1 + id % 5"))
        await s.execute(text("ANALYZE"))


async def _best(url: str, script: str, seconds: float, workdir: Path) -> dict[str, float]:
    """Best of two flat-out runs: other load on the machine only ever slows a run down."""
    runs = [await wrk(url, script, seconds=seconds, workdir=workdir) for _ in range(2)]
    return max(runs, key=lambda r: r["rps"])


@asynccontextmanager
async def _scratch(workdir: Path | None) -> AsyncIterator[Path]:
    """`workdir`, or a temporary directory removed afterwards (databases, wrk scripts)."""
    if workdir is not None:
        yield workdir
        return
    tmp = Path(tempfile.mkdtemp(prefix="leadbot-phone-bench-"))
    try:
        yield tmp
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)


async def run(
    seconds: float = 5.0, rate: int = 1000, unique: int = 60_000, workdir: Path | None = None
) -> dict[str, Any]:
    """The generic webhook against the bare handler: requests/s flat out (and the ratio) and
    latency at `rate` requests/s, for each kind of load."""
    wrk_path()
    async with _scratch(workdir) as tmp:
        return await _run(seconds, rate, unique, tmp)


async def _run(seconds: float, rate: int, unique: int, tmp: Path) -> dict[str, Any]:
    now = int(time.time())  # the signatures stay valid for the 5-minute window
    figures: dict[str, Any] = {"seconds": seconds, "rate": rate}
    async with bare_app() as url:
        figures["bare"] = await _best(url, replay_script(now), seconds, tmp)
        figures["bare_at_rate"] = await wrk(
            url, replay_script(now), seconds=seconds, rate=rate, workdir=tmp
        )
    loads: list[tuple[str, str, str | None]] = [("replay", replay_script(now), None)]
    bodies = unique_script(now, unique)
    if await redis_reachable():
        loads.append(("unique_redis", bodies, f"leadbot:bench:{uuid.uuid4().hex}"))
    loads.append(("unique_inline", bodies, None))
    for name, script, stream in loads:
        for throttled in (False, True):
            # A fresh service each time: no run starts with the previous run's backlog.
            async with phone_service(tmp, redis_stream=stream) as service:
                hook = f"http://127.0.0.1:{service.port}/hooks/calls"
                if throttled:
                    figures[f"{name}_at_rate"] = await wrk(
                        hook, script, seconds=seconds, rate=rate, workdir=tmp
                    )
                else:
                    figures[name] = await _best(hook, script, seconds, tmp)
                    figures[f"{name}_ratio"] = round(
                        figures[name]["rps"] / figures["bare"]["rps"], 2
                    )
    return figures


async def run_lookup(
    contacts: int = 1_000_000, rate: int = 500, seconds: float = 5.0, workdir: Path | None = None
) -> dict[str, Any]:
    """Caller lookup latency at `rate` requests/s over a CRM of `contacts` contacts."""
    wrk_path()
    started = time.perf_counter()
    async with _scratch(workdir) as tmp, phone_service(tmp, contacts=contacts) as service:
        seeded = round(time.perf_counter() - started, 1)
        url = f"http://127.0.0.1:{service.port}/hooks/calls/lookup"
        result = await wrk(url, lookup_script(contacts), seconds=seconds, rate=rate, workdir=tmp)
    return {"contacts": contacts, "rate": rate, "seed_s": seeded, **result}


def _row(label: str, r: dict[str, float]) -> str:
    return f"| {label} | {r['rps']:,.0f} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} |"


async def report(quick: bool = False) -> str:
    """The markdown section `benchmarks.run` prints."""
    hooks = await run()
    lookup = await run_lookup(100_000 if quick else 1_000_000)
    rate = hooks["rate"]
    rows = [
        _row("bare aiohttp handler (baseline)", hooks["bare"]),
        _row(f"… at {rate}/s", hooks["bare_at_rate"]),
    ]
    ratios = []
    for name, label in (
        ("replay", "generic webhook, one signed body replayed (duplicates)"),
        ("unique_redis", "generic webhook, unique events → Redis Streams"),
        ("unique_inline", "generic webhook, unique events, intake in the same process"),
    ):
        if name in hooks:
            rows += [_row(label, hooks[name]), _row(f"… at {rate}/s", hooks[f"{name}_at_rate"])]
            ratios.append(f"{hooks[f'{name}_ratio']} ({name.replace('_', ', ')})")
    rows.append(
        _row(f"caller lookup, {lookup['contacts']:,} contacts, at {lookup['rate']}/s", lookup)
    )
    return "\n".join(
        [
            "### Phone channel (wrk, 2 threads, 32 connections, 5 s per run, SQLite)",
            "",
            "| endpoint | requests/s | p50 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|",
            *rows,
            "",
            "Webhook requests/s ÷ bare handler's: " + ", ".join(ratios) + ". Flat-out figures "
            "are the best of two runs. Targets: >= 0.5, p99 < 10 ms at "
            f"{rate}/s; lookup p99 < 5 ms. Seeding the lookup CRM took {lookup['seed_s']} s.",
        ]
    )


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))
