"""The goal rows `make bench` derives from its sections' figures: which figure each goal
reads, its baseline, and ✓ / ✗ (pure functions over figures shaped as the sections make them)."""

from __future__ import annotations

from typing import Any

from benchmarks import console, memory, phone
from benchmarks.run import intake_goals


def _intake(backend: str, contacts: int, rate: float, batch: float, rss: float) -> dict[str, Any]:
    return {
        "backend": backend,
        "contacts": contacts,
        "events_per_s": rate,
        "batch_baseline_per_s": batch,
        "peak_rss_mb": rss,
    }


def test_intake_goals_read_the_largest_size_against_its_baseline_and_the_smallest() -> None:
    rows = [
        _intake("sqlite", 10_000, 1_500, 1_600, 80),
        _intake("sqlite", 1_000_000, 1_400, 1_500, 84),
        _intake("postgres", 10_000, 1_500, 5_800, 77),
        _intake("postgres", 1_000_000, 1_612, 5_846, 83.5),
    ]
    *rates, rss = intake_goals(rows)
    goals = {g.goal + " " + g.measure.split(",")[1].strip(): g for g in rates}
    assert goals["≥ 1,000 /s PostgreSQL"].met is True
    pg_ratio = goals["≥ 0.5× PostgreSQL"]
    assert (round(pg_ratio.ratio or 0, 2), pg_ratio.met) == (0.28, False)
    assert "1,000,000 contacts" in pg_ratio.measure
    assert goals["≥ 0.9× PostgreSQL"].met is True  # 1,612 against 1,500 at 10,000
    assert goals["≥ 0.5× SQLite"].met is True
    assert (rss.goal, rss.value, rss.met) == ("< 200 MB", 84, True)


def _runs(*p99: float, hits: int = 0) -> list[dict[str, Any]]:
    return [{"p99_ms": p, "hit_pct": hits} for p in p99]


def test_the_lookup_goal_reads_random_numbers_judged_by_the_worst_run() -> None:
    lookups = phone.LookupFigures(
        [
            {
                "backend": "postgres",
                "contacts": 1_000_000,
                "rate": 500,
                "random": _runs(4.1, 6.4, 4.5),
                "repeat": _runs(3.2, 4.2, 3.9, hits=92),
            }
        ],
        bare={"p99_ms": 2.6},
        round_trip={"p99_ms": 5.9},
    )
    random, repeat = phone.lookup_goals(lookups)
    assert "random numbers over all contacts (the goal's reading)" in random.measure
    assert (random.value, random.met) == ("4.1 – 6.4", False)
    assert random.ratio == 6.4 / 5.9  # a miss is one round trip at least
    assert "cache hits 92 %" in repeat.measure
    assert (repeat.met, repeat.ratio) == (True, 4.2 / 2.6)  # a hit: the bare handler
    assert "bare + `SELECT $1` 5.9 ms" in random.baseline


def test_console_and_memory_goals_read_the_largest_size() -> None:
    rows = [
        {"backend": "sqlite", "contacts": 10_000, "page": "deal board", "p95_ms": 150.0},
        {"backend": "sqlite", "contacts": 1_000_000, "page": "lead board", "p95_ms": 32.0},
        {"backend": "sqlite", "contacts": 1_000_000, "page": "deal board", "p95_ms": 28.0},
    ]
    (sqlite,) = console.goals(rows, {"p95_ms": 0.2})
    assert (sqlite.value, sqlite.met) == (32.0, True)
    assert "1,000,000 contacts, SQLite, slowest p95 (lead board)" in sqlite.measure
    small = {"contacts": 10_000, "serve_peak_mb": 140.0, "worker_peak_mb": 130.0}
    large = {"contacts": 1_000_000, "serve_peak_mb": 210.0, "worker_peak_mb": 131.3}
    serve, worker = memory.goals([small, large])
    assert (serve.ratio, serve.met) == (1.5, False)
    assert worker.met is True and "1,000,000 contacts" in worker.measure
