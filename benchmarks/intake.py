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
from typing import Any

import asyncpg
from sqlalchemy import insert

from benchmarks.seed import contact_email, contact_phone, lead_phone, seed_postgres, seed_sqlite
from crm.config import CrmConfig
from crm.db import Database
from crm.models import (
    Activity,
    ActivityBinding,
    Base,
    Communication,
    InboundEventLog,
    Lead,
    OutboxMessage,
)
from crm.service import Crm
from matching.event import Channel, InboundEvent

PG_ADMIN = os.environ.get("LEADBOT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def make_events(n_contacts: int, n_events: int, seed: int = 7) -> list[InboundEvent]:
    """new 35%, known phone 30%, known email 10%, open lead 10%, excepted 5%, duplicate 10%."""
    rnd = random.Random(seed)
    now = datetime.now(UTC)
    events: list[InboundEvent] = []
    for k in range(n_events):
        r = rnd.random()
        i = rnd.randrange(n_contacts)
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


async def _run(events: list[InboundEvent], concurrency: int, fn: Any) -> list[float]:
    queue: asyncio.Queue[InboundEvent] = asyncio.Queue()
    for e in events:
        queue.put_nowait(e)
    latencies: list[float] = []

    async def worker() -> None:
        while not queue.empty():
            event = queue.get_nowait()
            t = time.perf_counter()
            await fn(event)
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def _baseline_insert(db: Database, event: InboundEvent) -> None:
    """The rows a new lead costs, written with Core and no logic at all."""
    now = datetime.now(UTC)
    async with db.transaction() as s:
        ev_id = (
            await s.execute(
                insert(InboundEventLog).returning(InboundEventLog.id),
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
                ],
            )
        ).scalar_one()
        lead_id = (
            await s.execute(
                insert(Lead).returning(Lead.id),
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
                ],
            )
        ).scalar_one()
        phone = event.phones[0] if event.phones else "x"
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
            ],
        )
        act_id = (
            await s.execute(
                insert(Activity).returning(Activity.id),
                [
                    {
                        "kind": "call",
                        "done": True,
                        "attempts": 1,
                        "created_at": now,
                        "channel": "base",
                        "external_id": uuid.uuid4().hex,
                    }
                ],
            )
        ).scalar_one()
        await s.execute(
            insert(ActivityBinding),
            [{"activity_id": act_id, "owner_type": "lead", "owner_id": lead_id}],
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
            ],
        )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _child(url: str, events: list[InboundEvent], concurrency: int, baseline: bool) -> Any:
    """One worker process: its own engine and CRM, like a `leadbot worker`."""

    async def go() -> tuple[list[float], dict[str, int], float]:
        db = Database(url, pool_size=concurrency + 2)
        crm = Crm(db, CrmConfig())
        outcomes: dict[str, int] = {}

        async def run_intake(event: InboundEvent) -> None:
            r = await crm.intake.process(event)
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1

        fn = (lambda e: _baseline_insert(db, e)) if baseline else run_intake
        time.perf_counter()
        try:
            lat = await _run(events, concurrency, fn)
        finally:
            await db.dispose()
        return lat, outcomes, _peak_rss_mb()

    return asyncio.run(go())


async def _in_processes(
    url: str, events: list[InboundEvent], processes: int, concurrency: int, baseline: bool
) -> tuple[float, list[float], dict[str, int], float]:
    """Split the stream over worker processes (each event goes to one of them)."""
    loop = asyncio.get_running_loop()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=ctx) as pool:
        # Warm the pool so process start-up is not timed.
        await asyncio.gather(*(loop.run_in_executor(pool, _noop) for _ in range(processes)))
        t = time.perf_counter()
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(pool, _child, url, events[k::processes], concurrency, baseline)
                for k in range(processes)
            )
        )
        elapsed = time.perf_counter() - t
    lat = [x for part in parts for x in part[0]]
    outcomes: dict[str, int] = {}
    for part in parts:
        for k, v in part[1].items():
            outcomes[k] = outcomes.get(k, 0) + v
    return elapsed, lat, outcomes, max(part[2] for part in parts)


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
    backend: str, contacts: int, n_events: int, concurrency: int, processes: int = 1
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
        events = make_events(contacts, n_events)
        await db.dispose()
        intake_s, lat, outcomes, rss = await _in_processes(
            url, events, processes, concurrency, baseline=False
        )
        base_s, base_lat, _, _ = await _in_processes(
            url, events, processes, concurrency, baseline=True
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
        "seed_s": round(seed_s, 1),
        "events_per_s": round(n_events / intake_s, 1),
        "p50_ms": round(_pct(lat, 0.50), 2),
        "p99_ms": round(_pct(lat, 0.99), 2),
        "baseline_per_s": round(n_events / base_s, 1),
        "baseline_p50_ms": round(_pct(base_lat, 0.50), 2),
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
    a = p.parse_args()
    # SQLite has one writer at a time: one worker. PostgreSQL: one process per core.
    conc = a.concurrency or (1 if a.backend == "sqlite" else 4)
    procs = a.processes or (1 if a.backend == "sqlite" else (os.cpu_count() or 1))
    print(json.dumps(asyncio.run(bench(a.backend, a.contacts, a.events, conc, procs))))


if __name__ == "__main__":
    main()
