"""Peak memory of the real `leadbot serve` and `leadbot worker` processes on a seeded CRM
(issue 18, item 4: flat in database size, under 200 MB at 1,000,000 contacts).

Per size: a PostgreSQL database brought to the schema by the migrations and seeded
(benchmarks.seed, with reps and a supervisor), a config file, then `leadbot serve --workers 0`
(the HTTP edge: lookups, webhooks, console) and `leadbot worker` (intake from the Redis stream)
as subprocesses. Load goes through them all at once: caller lookups (random numbers over every
contact and 1,000 repeat callers), signed call webhooks (known and new numbers; the worker
makes leads of them), console board and record pages; then the worker drains the stream.
Figures: each process's VmRSS after start-up and its peak (VmHWM, /proc/PID/status), compared
with the same at the smallest size (flat: ratio about 1).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.bot import PG_ADMIN, _pg
from benchmarks.goals import Goal, Section
from benchmarks.seed import contact_phone, seed_postgres

REDIS_URL = os.environ.get("LEADBOT_BENCH_REDIS", "redis://127.0.0.1:6379/15")
SECRET = "bench-secret"
LOOKUP_TOKEN = "bench-lookup"
GOAL_MB = 200.0
SIZES = {True: [10_000, 100_000], False: [10_000, 1_000_000]}
CONCURRENCY = 16  # requests in flight per kind of load
REPEAT_CALLERS = 1_000


@dataclass(frozen=True, slots=True)
class Load:
    lookups: int
    webhooks: int
    pages: int


LOADS = {True: Load(lookups=4_000, webhooks=2_000, pages=100), False: Load(24_000, 4_000, 200)}


def _status_kb(pid: int, field: str) -> int | None:
    """A `VmRSS` / `VmHWM` figure of /proc/PID/status, in kB (None once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


async def _prepare(url: str, contacts: int) -> str:
    """Schema by the migrations, the seeded CRM, five reps and a signed-in supervisor: the
    console's session token."""
    from sqlalchemy import text

    from crm.config import CrmConfig
    from crm.db import Database
    from crm.facade import Crm
    from crm.schema import upgrade

    db = Database(url)
    try:
        await upgrade(db)
        crm = Crm(db, CrmConfig())
        await crm.prepare()  # the pipeline the seeded deals use
        await seed_postgres(url.replace("postgresql+asyncpg://", "postgresql://", 1), contacts)
        for k in range(5):
            await crm.reps.add(f"Rep {k}", extension=f"{101 + k}", phone=f"+49176000{k:04d}")
        async with db.transaction() as s:
            await s.execute(text("UPDATE contacts SET responsible_id = 1 + id % 5"))
            await s.execute(text("ANALYZE"))
        boss = await crm.reps.add("Bench Supervisor", role="supervisor")
        signed = await crm.web_sessions.redeem(await crm.web_sessions.create_link(boss.id))
        await crm.close()
        return signed.session_token
    finally:
        await db.dispose()


def _config(path: Path, url: str, port: int, stream: str, loop: str) -> Path:
    path.write_text(
        "\n".join(
            [
                "[database]",
                f'url = "{url}"',
                "[redis]",
                f'url = "{REDIS_URL}"',
                f'stream = "{stream}"',
                f'group = "{stream}:workers"',
                "[http]",
                'host = "127.0.0.1"',
                f"port = {port}",
                f'public_url = "http://127.0.0.1:{port}"',
                f'event_loop = "{loop}"',
                "[phone]",
                f'webhook_secret = "{SECRET}"',
                f'lookup_token = "{LOOKUP_TOKEN}"',
                'region = "DE"',
                "",
            ]
        )
    )
    return path


async def _start(args: list[str], config: Path, log: Path) -> asyncio.subprocess.Process:
    # `leadbot` as the console script runs it, without depending on where that script is.
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "leadbot.cli",
        "--config",
        str(config),
        "--log-level",
        "WARNING",
        *args,
        stdout=log.open("ab"),
        stderr=asyncio.subprocess.STDOUT,
    )


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _until(ready: Any, what: str, timeout: float, *procs: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + timeout
    while not await ready():
        for proc in procs:
            if proc.returncode is not None:
                raise RuntimeError(f"{what}: a leadbot process exited ({proc.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not after {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def _many(n: int, one: Any) -> dict[int, int]:
    """`n` calls of `one(k)`, CONCURRENCY at a time: how many answered each status."""
    statuses: dict[int, int] = {}
    todo = iter(range(n))

    async def lane() -> None:
        for k in todo:
            status = await one(k)
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    return statuses


def _call(k: int, contacts: int, rnd: random.Random) -> bytes:
    """Half known callers (a seeded contact's number), half new numbers."""
    number = contact_phone(rnd.randrange(contacts)) if k % 2 else f"+4989{k:08d}"
    doc = {
        "event": "call.ringing",
        "call_id": f"memory-{uuid.uuid4().hex}",
        "direction": "incoming",
        "from": number,
        "to": "+4989111222",
        "line": "+4989111222",
    }
    return json.dumps(doc).encode()


async def _load(
    base: str, contacts: int, load: Load, session_token: str
) -> dict[str, dict[int, int]]:
    from channels.phone.signatures import sign_generic

    rnd = random.Random(contacts)
    auth = {"Authorization": f"Bearer {LOOKUP_TOKEN}"}
    pages = ["/app/board", "/app/board?kind=deal", "/app/lead/{}", "/app/contact/{}"]
    pages.append("/app/deal/{}")
    cookies = {"leadbot_session": session_token}
    async with aiohttp.ClientSession(cookies=cookies) as http:

        async def lookup(k: int) -> int:
            i = (
                rnd.randrange(contacts)
                if k % 2
                else rnd.randrange(REPEAT_CALLERS) * (contacts // REPEAT_CALLERS)
            )
            url = f"{base}/hooks/calls/lookup?number=%2B4930{i:08d}"
            async with http.get(url, headers=auth) as r:
                await r.read()
                return r.status

        async def webhook(k: int) -> int:
            body = _call(k, contacts, rnd)
            headers = {
                "Content-Type": "application/json",
                "X-Leadbot-Signature": sign_generic(SECRET, int(time.time()), body),
            }
            async with http.post(f"{base}/hooks/calls", data=body, headers=headers) as r:
                await r.read()
                return r.status

        async def page(k: int) -> int:
            # Records from all over the table: the seed has contacts/2 leads, 0.3 deals each.
            path = pages[k % len(pages)].format(1 + rnd.randrange(max(1, contacts * 3 // 10)))
            async with http.get(f"{base}{path}") as r:
                await r.read()
                return r.status

        done = await asyncio.gather(
            _many(load.lookups, lookup), _many(load.webhooks, webhook), _many(load.pages, page)
        )
    return {"lookups": done[0], "webhooks": done[1], "pages": done[2]}


async def measure(contacts: int, load: Load, loop: str) -> dict[str, Any]:
    """Seed a CRM of `contacts`, run serve and worker on it under `load`: their memory."""
    import asyncpg

    from tests.servers import free_port

    name = f"leadbot_memory_bench_{uuid.uuid4().hex[:8]}"
    base_dsn = PG_ADMIN.rsplit("/", 1)[0]
    url = f"{base_dsn}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    stream = f"leadbot:bench:memory:{uuid.uuid4().hex}"
    figures: dict[str, Any] = {"contacts": contacts, **asdict(load)}
    await _pg(f'CREATE DATABASE "{name}"')
    procs: list[asyncio.subprocess.Process] = []
    try:
        with tempfile.TemporaryDirectory(prefix="leadbot-memory-bench-") as tmp:
            started = time.perf_counter()
            token = await _prepare(url, contacts)
            figures["seed_s"] = round(time.perf_counter() - started, 1)
            port = free_port()
            config = _config(Path(tmp) / "leadbot.toml", url, port, stream, loop)
            log = Path(tmp) / "leadbot.log"
            worker = await _start(["worker"], config, log)
            serve = await _start(["serve", "--workers", "0"], config, log)
            procs += [worker, serve]
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as http:

                async def up() -> bool:
                    try:
                        async with http.get(f"{base}/healthz") as r:
                            return r.status == 200
                    except aiohttp.ClientError:
                        return False

                await _until(up, "serve", 120, serve, worker)
            await asyncio.sleep(2)  # the worker's start-up (same code, no HTTP) is done by now
            for role, proc in (("serve", serve), ("worker", worker)):
                figures[f"{role}_start_mb"] = _mb(_status_kb(proc.pid, "VmRSS"))
            started = time.perf_counter()
            answered = await _load(base, contacts, load, token)
            figures["answered"] = answered
            figures["queued"] = sum(n for k, n in answered["webhooks"].items() if k < 300)
            figures["load_s"] = round(time.perf_counter() - started, 1)
            pg = await asyncpg.connect(f"{base_dsn}/{name}")
            try:

                async def drained() -> bool:
                    logged = await pg.fetchval("SELECT count(*) FROM inbound_events")
                    figures["events_logged"] = logged
                    return bool(logged >= figures["queued"])

                await _until(drained, "intake of the webhooks' events", 600, worker)
            finally:
                await pg.close()
            figures["drain_s"] = round(
                max(0.0, time.perf_counter() - started - figures["load_s"]), 1
            )
            for role, proc in (("serve", serve), ("worker", worker)):
                figures[f"{role}_peak_mb"] = _mb(_status_kb(proc.pid, "VmHWM"))
            for proc in procs:
                await _stop(proc)
            if any(p.returncode not in (0, -15) for p in procs):
                raise RuntimeError(f"leadbot exited badly: {log.read_text()[-2000:]}")
    finally:
        for proc in procs:
            await _stop(proc)
        await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await _drop_stream(stream)
    return figures


async def _drop_stream(stream: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        await client.delete(stream)
    finally:
        await client.aclose()


async def run(quick: bool = False) -> list[dict[str, Any]]:
    """Both sizes; the processes run the event loop this one does (`make bench --loop`)."""
    from leadbot.loop import running_loop_name

    loop = running_loop_name()
    rows = []
    for size in SIZES[quick]:
        print(f"memory: serve and worker at {size:,} contacts …", file=sys.stderr)
        rows.append(await measure(size, LOADS[quick], loop))
    return rows


def goals(rows: list[dict[str, Any]]) -> list[Goal]:
    """Peak RSS at the largest size against the smallest, per process."""
    small, large = rows[0], rows[-1]
    out = []
    for role in ("serve", "worker"):
        peak, base = large[f"{role}_peak_mb"], small[f"{role}_peak_mb"]
        out.append(
            Goal(
                f"peak RSS, `leadbot {role}`, {large['contacts']:,} contacts, MB",
                peak,
                f"{small['contacts']:,} contacts {base}",
                peak / base if peak and base else None,
                f"< {GOAL_MB:.0f} MB",
                None if peak is None else peak < GOAL_MB,
            )
        )
    return out


def _answers(statuses: dict[int, int]) -> str:
    """How many requests got which status: "24,000 × 200"."""
    return " + ".join(f"{n:,} × {status}" for status, n in sorted(statuses.items()))


def render(rows: list[dict[str, Any]]) -> str:
    small = rows[0]
    lines = [
        "### Memory: `leadbot serve` and `leadbot worker` on PostgreSQL + Redis",
        "",
        "| contacts | process | RSS after start MB | peak RSS MB | × smallest | < 200 MB |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for r in rows:
        for role in ("serve", "worker"):
            peak, base = r[f"{role}_peak_mb"], small[f"{role}_peak_mb"]
            ratio = f"{peak / base:.2f}" if peak and base else "—"
            lines.append(
                f"| {r['contacts']:,} | {role} | {r[f'{role}_start_mb']} | {peak} | {ratio} "
                f"| {'✓' if peak is not None and peak < GOAL_MB else '✗'} |"
            )
    lines += [
        "",
        "Load per size, all at once, 16 requests in flight each: "
        + ", ".join(
            f"{r['contacts']:,} contacts: lookups {_answers(r['answered']['lookups'])}, "
            f"webhooks {_answers(r['answered']['webhooks'])} ({r['events_logged']:,} events "
            f"logged by the worker), console pages {_answers(r['answered']['pages'])}, in "
            f"{r['load_s']} s, drained {r['drain_s']} s later (seeding {r['seed_s']} s)"
            for r in rows
        )
        + ". `serve --workers 0` is the HTTP edge (caller lookups of random numbers and of "
        f"{REPEAT_CALLERS:,} repeat callers, signed call webhooks queued to Redis, console "
        "board and record pages as a supervisor); `leadbot worker` (1 intake task) makes "
        "leads of the queued calls, half of them from seeded contacts' numbers. Peak RSS is "
        "VmHWM of /proc/PID/status after the load and the drain.",
    ]
    return "\n".join(lines)


async def report(quick: bool = False) -> Section:
    rows = await run(quick)
    return Section(render(rows), goals(rows))


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(quick=True)), indent=2))
