"""The goals `make bench` checks (issue 18 and docs/performance.md): one row per goal at the
top of the report, with its figure, the baseline measured in the same run, the ratio and
✓ / ✗. A section returns a `Section`: its markdown and the goal rows it measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Goal:
    measure: str  # what was measured, with its unit and size
    value: float | str | None  # None: not measured
    baseline: str  # the baseline of the same run, labelled, or ""
    ratio: float | None  # value ÷ baseline where that is the goal's reading
    goal: str  # as the issue states it
    met: bool | None  # None: a figure to watch, no pass / fail


@dataclass(frozen=True, slots=True)
class Section:
    markdown: str
    goals: list[Goal] = field(default_factory=list)


_WEBHOOK = (
    ("generic webhook, unique events → Redis, req/s", "≥ 0.5×"),
    ("generic webhook, unique events → Redis, p99 at 1,000/s", "< 10 ms"),
    ("generic webhook, replayed body (duplicates), req/s", "≥ 0.5×"),
    ("generic webhook, intake in the same process, p99 at 1,000/s", "< 10 ms"),
)
_LOOKUP_POSTGRES = (
    ("caller lookup, PostgreSQL, random numbers (all misses), p99 at 500/s", "< 5 ms"),
    ("caller lookup, PostgreSQL, repeat callers, p99 at 500/s", "< 5 ms"),
)
_LOOKUP_SQLITE = (
    ("caller lookup, SQLite, random numbers (all misses), p99 at 500/s", "< 5 ms"),
    ("caller lookup, SQLite, repeat callers, p99 at 500/s", "< 5 ms"),
)

# Every goal, by the section (or part of one, `benchmarks.run`'s PARTS) that measures it: the
# table names the ones a selected section could not measure (skipped, failed) as "not run".
PLANNED: dict[str, tuple[tuple[str, str], ...]] = {
    "intake": (
        ("intake, PostgreSQL, largest size, events/s", "≥ 1,000 /s"),
        ("intake, PostgreSQL, largest size, ÷ batch-shaped Core", "≥ 0.5×"),
        ("intake, PostgreSQL, largest ÷ smallest size", "≥ 0.9×"),
        ("intake, SQLite, largest size, ÷ batch-shaped Core", "≥ 0.5×"),
        ("intake, SQLite, largest ÷ smallest size", "≥ 0.9×"),
        ("peak RSS, intake worker processes, MB", "< 200 MB"),
    ),
    "phone": (*_WEBHOOK, *_LOOKUP_POSTGRES, *_LOOKUP_SQLITE),
    "phone.webhook": _WEBHOOK,
    "phone.lookup": (*_LOOKUP_POSTGRES, *_LOOKUP_SQLITE),
    "phone.lookup-postgres": _LOOKUP_POSTGRES,
    "console": (
        ("console pages, SQLite, slowest p95", "< 100 ms"),
        ("console pages, PostgreSQL, slowest p95", "< 100 ms"),
    ),
    "memory": (
        ("peak RSS, `leadbot serve`, MB", "< 200 MB"),
        ("peak RSS, `leadbot worker`, MB", "< 200 MB"),
    ),
    "mail": (("mail parse + classify, mails/s", "(measure)"),),
}


def _figure(value: float | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{1 if abs(value) >= 10 else 2}f}".rstrip("0").rstrip(".")


def _mark(met: bool | None) -> str:
    return "—" if met is None else ("✓" if met else "✗")


def table(names: list[str], measured: dict[str, list[Goal]], not_run: dict[str, str]) -> str:
    """The goals table, section by section in `names`' order: the rows a section measured, or
    its planned goals as "not run" (with why) when it was skipped, failed or is still to come."""
    lines = [
        "### Goals",
        "",
        "| measure | now | baseline in the same run | ratio | goal | met |",
        "|---|---:|---|---:|---|:---:|",
    ]
    for name in names:
        for g in measured.get(name, ()):
            ratio = "" if g.ratio is None else f"{g.ratio:.2f}×"
            lines.append(
                f"| {g.measure} | {_figure(g.value)} | {g.baseline} | {ratio} | {g.goal} "
                f"| {_mark(g.met)} |"
            )
        if name in not_run:
            for measure, goal in PLANNED.get(name, ()):
                lines.append(f"| {measure} | not run ({not_run[name]}) | | | {goal} | — |")
    return "\n".join(lines)
