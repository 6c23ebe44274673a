"""Intake throughput on a synthetic CRM, against plain SQLAlchemy Core inserts of the same rows.

Run one configuration per process (peak RSS is per process):
    python -m benchmarks.intake --backend postgres --contacts 1000000 --events 20000
It prints one JSON line of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import asyncpg
from sqlalchemy import event as sa_event
from sqlalchemy import insert

from benchmarks.seed import contact_email, contact_phone, lead_phone, seed_postgres, seed_sqlite
from crm.config import CrmConfig
from crm.db import Database
from crm.facade import Crm
from crm.models import (
    Activity,
    ActivityBinding,
    Base,
    Communication,
    InboundEventLog,
    Lead,
    OutboxMessage,
)
from crm.queue import MAX_BATCH
from leadbot import heap
from leadbot.loop import EventLoopName
from leadbot.loop import run as run_loop
from matching.event import Channel, InboundEvent

REPS = 10
PG_ADMIN = os.environ.get("LEADBOT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


# The events pick their known records as over this many contacts at every size (`_spread`).
PATTERN = 10_000
# The seed's records repeat their kinds every 300 contacts (leads by contact mod 60, deals mod 100,
# a contact's email and company mod 10).
PERIOD = 300


def make_events(n_contacts: int, n_events: int, seed: int = 7) -> list[InboundEvent]:
    """new 35%, known phone 30%, known email 10%, open lead 10%, excepted 5%, duplicate 10%.

    The same events at every size but for where their records lie: each picks one of
    `PATTERN` contacts (`_spread` over the whole database). Picked among all the contacts, the
    events of a small database came back to the same clients far more often (attached to the
    leads earlier events made, waited on each other's locks) and those of a large one drew
    other random numbers: the sizes measured different work, not the database's size."""
    rnd = random.Random(seed)
    now = datetime.now(UTC)
    picks = min(n_contacts, PATTERN)
    events: list[InboundEvent] = []
    for k in range(n_events):
        r = rnd.random()
        i = _spread(rnd.randrange(picks), n_contacts)
        if r < 0.10 and events:
            events.append(events[rnd.randrange(len(events))])  # duplicate delivery
            continue
        ext = f"bench-{k}"
        if r < 0.45:
            ev = InboundEvent(Channel.CALL, ext, now, phones=(f"+4989{k:08d}",))
        elif r < 0.75:
            ev = InboundEvent(Channel.CALL, ext, now, phones=(contact_phone(i),))
        elif r < 0.85:
            ev = InboundEvent(Channel.EMAIL, ext, now, emails=(contact_email(i - i % 10),))
        elif r < 0.95:
            ev = InboundEvent(Channel.CALL, ext, now, phones=(lead_phone(i - i % 2),))
        else:
            ev = InboundEvent(Channel.CALL, ext, now, phones=(f"+4917{k % 500:08d}",))
        events.append(ev)
    return events


def _spread(i: int, n_contacts: int) -> int:
    """Contact `i` of the first `PATTERN` moved to the same place of a seed period spread over
    `n_contacts`: a record of the same kind, the picks as far apart as the database allows.
    (Of the contacts 4,000 – 4,199, where the companies of a 10,000-contact seed end, the
    first 4 of every 10 belong to a company only in a larger one.)"""
    periods = max(1, n_contacts // PATTERN)
    return (i // PERIOD) * PERIOD * periods + i % PERIOD


async def _run(events: list[InboundEvent], concurrency: int, batch: int, fn: Any) -> list[float]:
    """Worker tasks take up to `batch` waiting events at a time, as a queue consumer does; an
    event's latency is its batch's (from the batch's start to its commit)."""
    queue: asyncio.Queue[InboundEvent] = asyncio.Queue()
    for e in events:
        queue.put_nowait(e)
    latencies: list[float] = []

    async def worker() -> None:
        while not queue.empty():
            taken = [queue.get_nowait() for _ in range(min(batch, queue.qsize()))]
            t = time.perf_counter()
            await fn(taken)
            latencies.extend([time.perf_counter() - t] * len(taken))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def _baseline_insert(db: Database, events: list[InboundEvent]) -> None:
    """The rows a new lead costs, written with Core and no logic, one transaction per event."""
    for event in events:
        await _baseline_batch(db, [event])


async def _baseline_batch(db: Database, events: list[InboundEvent]) -> None:
    """The same rows, one transaction per batch and one multi-row INSERT per table: what the
    writes alone cost with intake's own transaction shape."""
    now = datetime.now(UTC)
    n = len(events)

    async def ids(model: Any, rows: list[dict[str, Any]]) -> list[int]:
        stmt = insert(model).returning(model.id, sort_by_parameter_order=True)
        return list((await s.execute(stmt, rows)).scalars())

    async with db.transaction() as s:
        ev_ids = await ids(
            InboundEventLog,
            [
                {
                    "channel": "base",
                    "external_id": uuid.uuid4().hex,
                    "received_at": now,
                    "occurred_at": now,
                    "direction": "incoming",
                    "outcome": "new_lead",
                    "reason": "",
                    "payload": {},
                }
                for _ in range(n)
            ],
        )
        lead_ids = await ids(
            Lead,
            [
                {
                    "title": "x",
                    "status": "NEW",
                    "status_semantic": "process",
                    "source": "CALL",
                    "is_return_customer": False,
                    "created_at": now,
                    "modified_at": now,
                    "escalation_count": 0,
                }
                for _ in range(n)
            ],
        )
        phones = [e.phones[0] if e.phones else "x" for e in events]
        await s.execute(
            insert(Communication),
            [
                {
                    "kind": "phone",
                    "raw_value": phone,
                    "value": phone,
                    "owner_type": "lead",
                    "owner_id": lead_id,
                    "created_at": now,
                }
                for phone, lead_id in zip(phones, lead_ids, strict=True)
            ],
        )
        act_ids = await ids(
            Activity,
            [
                {
                    "kind": "call",
                    "done": True,
                    "attempts": 1,
                    "created_at": now,
                    "channel": "base",
                    "external_id": uuid.uuid4().hex,
                }
                for _ in range(n)
            ],
        )
        await s.execute(
            insert(ActivityBinding),
            [
                {"activity_id": a, "owner_type": "lead", "owner_id": lead_id}
                for a, lead_id in zip(act_ids, lead_ids, strict=True)
            ],
        )
        await s.execute(
            insert(OutboxMessage),
            [
                {
                    "kind": "new_lead",
                    "payload": {"event_id": ev_id},
                    "created_at": now,
                    "next_attempt_at": now,
                    "attempts": 0,
                }
                for ev_id in ev_ids
            ],
        )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _child(
    url: str,
    events: list[InboundEvent],
    concurrency: int,
    batch: int,
    mode: str,
    loop: EventLoopName = "asyncio",
    postmaster: int | None = None,
) -> Any:
    """One worker process: its own engine and CRM, like a `leadbot worker`. Also the CPU
    seconds of the PostgreSQL backends that served it (`BackendCpu`)."""

    async def go() -> tuple[list[float], dict[str, int], float, float, float]:
        db = Database(url, pool_size=concurrency + 2)
        server = BackendCpu(db, postmaster)
        crm = Crm(db, CrmConfig())
        outcomes: dict[str, int] = {}

        async def run_intake(batch: list[InboundEvent]) -> None:
            for r in await crm.intake.process_many(batch):
                if isinstance(r, Exception):
                    raise r
                outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1

        fn = {
            "intake": run_intake,
            "core": lambda b: _baseline_insert(db, b),
            "core_batch": lambda b: _baseline_batch(db, b),
        }[mode]
        # As `leadbot worker` does once started (`Service.start`): what start-up built is
        # frozen and young collections come less often; the baselines too.
        heap.settle()
        cpu = time.process_time()
        try:
            lat = await _run(events, concurrency, batch, fn)
            cpu = time.process_time() - cpu
            server_cpu = server.total()
        finally:
            await db.dispose()
        return lat, outcomes, _peak_rss_mb(), cpu, server_cpu

    return run_loop(go(), loop)


async def _in_processes(
    url: str,
    events: list[InboundEvent],
    processes: int,
    concurrency: int,
    batch: int,
    mode: str,
    loop_name: EventLoopName,
    postmaster: int | None = None,
) -> tuple[float, list[float], dict[str, int], float, float, float]:
    """Split the stream over worker processes (each event goes to one of them). Also the CPU
    seconds the workers and the local PostgreSQL server's backends serving them spent
    together, and the backends' alone (0 for SQLite or a server elsewhere)."""
    loop = asyncio.get_running_loop()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=ctx) as pool:
        # Warm the pool so process start-up is not timed.
        await asyncio.gather(*(loop.run_in_executor(pool, _noop) for _ in range(processes)))
        t = time.perf_counter()
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(
                    pool,
                    _child,
                    url,
                    events[k::processes],
                    concurrency,
                    batch,
                    mode,
                    loop_name,
                    postmaster,
                )
                for k in range(processes)
            )
        )
        elapsed = time.perf_counter() - t
    lat = [x for part in parts for x in part[0]]
    outcomes: dict[str, int] = {}
    for part in parts:
        for k, v in part[1].items():
            outcomes[k] = outcomes.get(k, 0) + v
    server_cpu = sum(part[4] for part in parts)
    cpu = sum(part[3] for part in parts) + server_cpu
    return elapsed, lat, outcomes, max(part[2] for part in parts), cpu, server_cpu


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving `db`'s connections, when the server is
    the local one whose postmaster is `postmaster` (None: elsewhere, 0). Each backend's own
    time is read while it lives (as its connection closes, and by `total`): neither the other
    databases' sessions nor the server's background chores (the checkpointer writing out a
    seed) are in it, and a backend that ended is counted whether or not the postmaster has
    reaped it yet (a count of the server's processes and their reaped children, read just
    after the workers closed their connections, missed the backends still ending). CPU time,
    unlike events/s, is hardly moved by other load on the machine."""

    def __init__(self, db: Database, postmaster: int | None) -> None:
        self.postmaster = postmaster
        self._spent: dict[int, float] = {}  # backend pid → its CPU seconds when last read
        if postmaster is None:
            return
        for engine in (db.engine, db.autocommit_engine):
            if engine is not None:
                sa_event.listen(engine.sync_engine, "connect", self._connected)
                sa_event.listen(engine.sync_engine, "close", self._closing)

    def _connected(self, dbapi_conn: Any, _record: Any) -> None:
        self._spent[dbapi_conn.driver_connection.get_server_pid()] = 0.0

    def _closing(self, dbapi_conn: Any, _record: Any) -> None:
        self._read(dbapi_conn.driver_connection.get_server_pid())

    def _read(self, pid: int) -> None:
        fields = _postgres_stat(pid)
        # From field 3 (state) on: ppid is field 4, utime 14, stime 15.
        if fields is not None and int(fields[1]) == self.postmaster:
            self._spent[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def total(self) -> float:
        for pid in self._spent:  # the connections still open
            self._read(pid)
        return sum(self._spent.values())


def _postgres_stat(pid: int) -> list[str] | None:
    """The /proc stat fields of a PostgreSQL process from field 3 on (None: another program,
    or no such process)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None  # ended meanwhile, or on another machine
    if text[text.index("(") + 1 : text.rindex(")")] != "postgres":
        return None
    return text[text.rindex(")") + 2 :].split()


async def _postmaster(url: str) -> int | None:
    """The postmaster of the server at `url` when it runs on this machine, else None."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        fields = _postgres_stat(int(await conn.fetchval("SELECT pg_backend_pid()")))
    finally:
        await conn.close()  # (after the look: its backend ends with it)
    return None if fields is None else int(fields[1])


async def checkpoint(url: str) -> None:
    """Write out the seed's dirty buffers before anything is measured. Left in shared_buffers,
    those of a database larger than they are were written out by the backends of the first
    run measured, intake's (at a million contacts and 128 MB, some 15,000 buffers during its
    20,000 events; none at 10,000 contacts), and not by the baselines' measured after it. A
    role not allowed to checkpoint leaves them so."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        pass
    finally:
        await conn.close()


def _peak_rss_mb() -> float:
    """This process's own peak RSS. (ru_maxrss would report the parent's seeding peak: Linux
    keeps it across fork and exec.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _noop() -> None:
    return None


async def bench(
    backend: str,
    contacts: int,
    n_events: int,
    concurrency: int,
    processes: int = 1,
    batch: int = 1,
    loop: EventLoopName = "asyncio",
) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="leadbot-bench-")
    dbname = f"leadbot_bench_{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
    else:
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{dbname}"')
        await admin.close()
        url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        url = f"{url}/{dbname}"
    db = Database(url, pool_size=max(5, concurrency + 2))
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        crm = Crm(db, CrmConfig())
        await crm.prepare()
        t = time.perf_counter()
        if backend == "sqlite":
            await asyncio.to_thread(seed_sqlite, str(Path(tmp) / "bench.db"), contacts)
        else:
            await seed_postgres(url.replace("postgresql+asyncpg://", "postgresql://"), contacts)
        seed_s = time.perf_counter() - t
        for k in range(500):
            await crm.exceptions.add(f"+4917{k:08d}", "bench")
        for k in range(REPS):  # new leads go round these (round robin, as in production)
            await crm.reps.add(f"Rep {k}")
        events = make_events(contacts, n_events)
        await db.dispose()
        postmaster = None
        if backend == "postgres":
            await checkpoint(url)
            postmaster = await _postmaster(url)
        intake_s, lat, outcomes, rss, intake_cpu, intake_server = await _in_processes(
            url, events, processes, concurrency, batch, "intake", loop, postmaster
        )
        base_s, base_lat, _, _, _, _ = await _in_processes(
            url, events, processes, concurrency, batch, "core", loop, postmaster
        )
        bbase_s, _, _, _, bbase_cpu, bbase_server = await _in_processes(
            url, events, processes, concurrency, batch, "core_batch", loop, postmaster
        )
    finally:
        await db.dispose()
        if backend == "postgres":
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            await admin.close()
    return {
        "backend": backend,
        "contacts": contacts,
        "events": n_events,
        "concurrency": concurrency,
        "processes": processes,
        "batch": batch,
        "seed_s": round(seed_s, 1),
        "events_per_s": round(n_events / intake_s, 1),
        "p50_ms": round(_pct(lat, 0.50), 2),
        "p99_ms": round(_pct(lat, 0.99), 2),
        "baseline_per_s": round(n_events / base_s, 1),
        "baseline_p50_ms": round(_pct(base_lat, 0.50), 2),
        "batch_baseline_per_s": round(n_events / bbase_s, 1),
        # Worker processes' CPU plus that of the local PostgreSQL backends serving them, per event.
        "cpu_us_per_event": round(intake_cpu / n_events * 1e6, 1),
        "batch_baseline_cpu_us_per_event": round(bbase_cpu / n_events * 1e6, 1),
        # Of those, the PostgreSQL server's (0 for SQLite).
        "server_cpu_us_per_event": round(intake_server / n_events * 1e6, 1),
        "batch_baseline_server_cpu_us_per_event": round(bbase_server / n_events * 1e6, 1),
        "peak_rss_mb": round(rss, 1),
        "outcomes": outcomes,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    p.add_argument("--contacts", type=int, default=10_000)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=None, help="tasks per process")
    p.add_argument("--processes", type=int, default=None, help="worker processes")
    p.add_argument("--batch", type=int, default=MAX_BATCH, help="events per intake call")
    p.add_argument("--loop", choices=get_args(EventLoopName), default="uvloop")
    a = p.parse_args()
    # SQLite has one writer at a time: one worker. PostgreSQL: one process per core, each
    # with two batches in flight (one computes while the other waits on the database).
    conc = a.concurrency or (1 if a.backend == "sqlite" else 2)
    procs = a.processes or (1 if a.backend == "sqlite" else (os.cpu_count() or 1))
    result = run_loop(bench(a.backend, a.contacts, a.events, conc, procs, a.batch, a.loop), a.loop)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
