"""The `make bench` section still runs (tiny sizes)."""

from __future__ import annotations

from benchmarks.bot import baseline, measure


async def test_bot_latency_benchmark_measures_every_event() -> None:
    figures = await measure(3, "sqlite", poll_interval=0.02)
    assert figures["events"] == 3 and 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert (await baseline(3))["events"] == 3
