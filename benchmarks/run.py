"""`make bench`: run every benchmark, print one markdown report and write it to a file.

Each figure is set against a baseline measured in the same run on the same machine, so the
ratios mean something even on a busy or slow machine. The report opens with the goals table
(benchmarks.goals): one row per goal of the sections that ran, with its ratio and ✓ / ✗.
Options:
    --quick            small sizes (10k and 100k contacts, 5k events) for a fast look
    --only NAME ...    intake | phone | mail | bot | console | memory, or a part of a section
                       alone: phone.webhook | phone.lookup | phone.lookup-postgres (the caller
                       lookup on PostgreSQL alone); parts run only when named
    --out FILE         where to write the report (default benchmarks/RESULTS.md)
    --loop NAME        uvloop | asyncio: the event loop every section runs on, the service's
                       and its baseline's alike (default: `http.event_loop`'s default, uvloop)

What a section needs beyond the venv (wrk for the phone section) is checked before anything
starts; a section whose tool is missing is skipped with the reason in the report. The report
is written after every section, so a section that fails (its error is in the report) never
throws away the ones that finished.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

from benchmarks.goals import Goal, Section, table
from benchmarks.intake import PATTERN
from leadbot.loop import EventLoopName
from leadbot.loop import run as run_loop
from leadbot.settings import HttpSettings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LOOP: EventLoopName = HttpSettings().event_loop
REPS_NOTE = "10 active reps share the new leads round robin"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}"


def intake_section(quick: bool, loop: EventLoopName) -> Section:
    sizes = [10_000, 100_000] if quick else [10_000, 1_000_000]
    events = 5_000 if quick else 20_000
    rows: list[dict[str, Any]] = []
    for backend in ("sqlite", "postgres"):
        for size in sizes:
            print(f"intake: {backend}, {size:,} contacts, {events:,} events …", file=sys.stderr)
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.intake",
                    "--backend",
                    backend,
                    "--contacts",
                    str(size),
                    "--events",
                    str(events),
                    "--loop",
                    loop,
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    lines = [
        "### Intake (matcher + CRM writes) through `Intake.process_many`",
        "",
        "| backend | contacts | processes × tasks | batch ≤ | events/s | p50 ms | p99 ms "
        "| Core, txn per event /s | × that | Core, txn per batch /s | × that | × small DB "
        "| peak RSS MB | CPU µs/event | batch-shaped CPU µs/event | × that by CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    small = {r["backend"]: r["events_per_s"] for r in rows if r["contacts"] == sizes[0]}
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['contacts']:,} | {r['processes']} × {r['concurrency']} "
            f"| {r['batch']} | {r['events_per_s']:,.0f} | {r['p50_ms']} | {r['p99_ms']} "
            f"| {r['baseline_per_s']:,.0f} | {r['events_per_s'] / r['baseline_per_s']:.2f} "
            f"| {r['batch_baseline_per_s']:,.0f} "
            f"| {r['events_per_s'] / r['batch_baseline_per_s']:.2f} "
            f"| {r['events_per_s'] / small[r['backend']]:.2f} | {r['peak_rss_mb']} "
            f"{_cpu_cells(r)}"
        )
    lines += [
        "",
        f"Event mix ({events:,} events, queued at once; {REPS_NOTE}): {_mix(rows)}",
        "",
        "The same events at every size: their known records are picked as over "
        f"{PATTERN:,} contacts, each moved to a record of the same kind spread over the "
        "database, so every size sees the same outcomes and clients coming back as often.",
        "",
        "Worker tasks take up to `batch` waiting events at a time, as a queue consumer does; "
        "p50 / p99 are per event, from its batch's start to its commit. Baselines: the rows of "
        "a new lead (event log, lead, phone, activity, binding, outbox) inserted with plain "
        "SQLAlchemy Core and no matching, by the same processes and tasks on the same events: "
        "one transaction per event, and one transaction per batch with one multi-row INSERT "
        "per table. CPU µs/event: the worker processes' CPU time plus that of the local "
        "PostgreSQL backends serving their connections (SQLite: the workers' alone), for intake "
        "and for the batch-shaped baseline; unlike events/s it hardly moves with other load on "
        "the machine. Until 2026-12-07 the server's share was all of the server's processes "
        "(other sessions and background writes too) and the events differed between sizes.",
    ]
    return Section("\n".join(lines), intake_goals(rows))


def _mix(rows: list[dict[str, Any]]) -> str:
    """The first run's outcomes, and what another run counted otherwise (concurrent batches
    may decide a few events in another order)."""
    first = rows[0]["outcomes"]
    said = ", ".join(f"{k} {v:,}" for k, v in sorted(first.items()))
    for r in rows[1:]:
        other = r["outcomes"]
        moved = [
            f"{k} {other.get(k, 0):,}"
            for k in sorted(first | other)
            if other.get(k, 0) != first.get(k, 0)
        ]
        if moved:
            said += f"; {r['backend']}, {r['contacts']:,} contacts: " + ", ".join(moved)
    return said


def _cpu_cells(r: dict[str, Any]) -> str:
    """The CPU columns of an intake row (blank for a harness that did not report them)."""
    mine, base = r.get("cpu_us_per_event"), r.get("batch_baseline_cpu_us_per_event")
    if not mine or not base:
        return "| | | |"
    return f"| {mine:,.0f} | {base:,.0f} | {base / mine:.2f} |"


def intake_goals(rows: list[dict[str, Any]]) -> list[Goal]:
    """PostgreSQL: ≥ 1,000 events/s at the largest size; both backends: ≥ 0.5× the
    batch-shaped baseline there and ≥ 0.9× the smallest size's rate; peak RSS < 200 MB."""
    goals = []
    for backend, where in (("postgres", "PostgreSQL"), ("sqlite", "SQLite")):
        mine = sorted((r for r in rows if r["backend"] == backend), key=lambda r: r["contacts"])
        if not mine:
            continue
        small, large = mine[0], mine[-1]
        rate, batch = large["events_per_s"], large["batch_baseline_per_s"]
        head = f"intake, {where}, {large['contacts']:,} contacts, events/s"
        baseline = f"batch-shaped Core {batch:,.0f}/s"
        if backend == "postgres":
            goals.append(Goal(head, rate, baseline, None, "≥ 1,000 /s", rate >= 1000))
        goals.append(
            Goal(
                f"{head} ÷ batch-shaped Core",
                rate,
                baseline,
                rate / batch,
                "≥ 0.5×",
                rate / batch >= 0.5,
            )
        )
        flat = rate / small["events_per_s"]
        goals.append(
            Goal(
                f"{head} ÷ at {small['contacts']:,} contacts",
                rate,
                f"{small['contacts']:,} contacts {small['events_per_s']:,.0f}/s",
                flat,
                "≥ 0.9×",
                flat >= 0.9,
            )
        )
    peak = max(r["peak_rss_mb"] for r in rows)
    smallest = min(r["peak_rss_mb"] for r in rows)
    goals.append(
        Goal(
            "peak RSS, intake worker processes (largest of all runs), MB",
            peak,
            f"smallest of all runs {smallest}",
            peak / smallest if smallest else None,
            "< 200 MB",
            peak < 200,
        )
    )
    return goals


def _optional(module: str, fn: str) -> Callable[..., Any] | None:
    try:
        return getattr(importlib.import_module(module), fn)  # type: ignore[no-any-return]
    except (ImportError, AttributeError):
        return None


SECTIONS: dict[str, tuple[str, str]] = {
    "phone": ("benchmarks.phone", "report"),
    "mail": ("benchmarks.mail", "report"),
    "bot": ("benchmarks.bot", "report"),
    "console": ("benchmarks.console", "report"),
    "memory": ("benchmarks.memory", "report"),
}


# Parts of a section, run only when named (`--only phone.lookup`); a part needs what its
# section needs.
PARTS: dict[str, tuple[str, str]] = {
    "phone.webhook": ("benchmarks.phone", "webhook_report"),
    "phone.lookup": ("benchmarks.phone", "lookup_report"),
    "phone.lookup-postgres": ("benchmarks.phone", "lookup_postgres_report"),
}


# Programs a section runs, with where to get them.
NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    "phone": (("wrk", "the Debian package wrk: apt-get install wrk"),),
}


def missing_tools(name: str) -> list[str]:
    needs = NEEDS.get(name.partition(".")[0], ())
    return [f"{tool} ({where})" for tool, where in needs if not shutil.which(tool)]


def run_section(name: str, quick: bool, loop: EventLoopName) -> Section:
    """A section's markdown and goal rows (a section may return its markdown alone)."""
    if name == "intake":
        return intake_section(quick, loop)
    module, fn = SECTIONS[name] if name in SECTIONS else PARTS[name]
    report = _optional(module, fn)
    if report is None:
        return Section(f"### {name}\n\n(no benchmark available)")
    result = report(quick=quick)
    if asyncio.iscoroutine(result):
        result = run_loop(result, loop)
    return result if isinstance(result, Section) else Section(str(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", nargs="*", default=None, metavar="NAME")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    p.add_argument("--loop", choices=get_args(EventLoopName), default=DEFAULT_LOOP)
    a = p.parse_args()
    known = ("intake", *SECTIONS, *PARTS)
    unknown = set(a.only or ()) - set(known)
    if unknown:
        p.error(f"--only: no section {', '.join(sorted(unknown))} (one of {', '.join(known)})")
    wanted = set(a.only or ["intake", *SECTIONS])
    parts = [
        f"## Benchmarks ({datetime.now(UTC):%Y-%m-%d})",
        "",
        f"Machine: {machine()}. Event loop: {a.loop}.",
        "",
    ]
    names = [n for n in known if n in wanted]
    skipped = {n: missing_tools(n) for n in names if missing_tools(n)}
    for name, tools in skipped.items():
        print(f"bench: {name} is skipped, it needs {', '.join(tools)}", file=sys.stderr)
    out = Path(a.out)
    measured: dict[str, list[Goal]] = {}
    not_run = {n: f"skipped: needs {', '.join(tools)}" for n, tools in skipped.items()}
    not_run |= {n: "pending" for n in names if n not in skipped}
    texts: list[str] = []
    report = "\n".join([*parts, table(names, measured, not_run)])
    for name in names:
        if name in skipped:
            text = f"### {name}\n\nskipped: needs {', '.join(skipped[name])}"
        else:
            print(f"{name} …", file=sys.stderr)
            try:
                section = run_section(name, a.quick, a.loop)
                text, measured[name] = section.markdown, section.goals
                del not_run[name]
            except Exception as exc:  # one broken section must not cost the others
                print(f"bench: {name} failed: {exc!r}", file=sys.stderr)
                text = f"### {name}\n\nfailed: {type(exc).__name__}: {exc}"
                not_run[name] = f"{name} failed"
        texts += [text, ""]
        # What has finished so far, the goals table on top.
        report = "\n".join([*parts, table(names, measured, not_run), "", *texts])
        out.write_text(report + "\n")
    print(report)
    print(f"written to {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
