"""The benchmark's own plumbing: its wrk scripts send validly signed requests, and a missing
wrk is a clear error (the figures themselves come from `make bench`)."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks import phone as bench

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


def test_missing_wrk_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(bench.WrkMissing, match="apt-get install wrk"):
        bench.wrk_path()


@needs_wrk
async def test_wrk_scripts_are_accepted_by_the_webhook(tmp_path: Path) -> None:
    now = int(time.time())
    async with bench.phone_service(tmp_path) as service:
        hook = f"http://127.0.0.1:{service.port}/hooks/calls"
        replay = await bench.wrk(
            hook, bench.replay_script(tmp_path, now), seconds=1, workdir=tmp_path
        )
        unique = await bench.wrk(
            hook, bench.unique_script(tmp_path, now, 50), seconds=1, rate=200, workdir=tmp_path
        )
        await service.queue.join()
        events, total = await service.crm.events.page(limit=100)
    # Every request got a 2xx (wrk counts anything else as an error) …
    assert replay["rps"] > 0 and replay["errors"] == 0
    assert unique["rps"] > 0 and unique["errors"] == 0
    # … and the unique bodies really are distinct events: one replayed + 50 unique.
    assert total == 51 and {e.outcome for e in events} == {"new_lead"}


@needs_wrk
async def test_runs_of_a_unique_load_send_their_own_call_ids(tmp_path: Path) -> None:
    """Best-of-N is only fair when no run resends the bodies of an earlier one."""
    now = int(time.time())
    async with bench.phone_service(tmp_path) as service:
        hook = f"http://127.0.0.1:{service.port}/hooks/calls"
        for run in range(2):
            script = bench.unique_script(tmp_path, now, 20, prefix=f"run{run}")
            await bench.wrk(hook, script, seconds=1, rate=100, workdir=tmp_path)
        await service.queue.join()
        _, total = await service.crm.events.page(limit=100)
    assert total == 40


@needs_wrk
async def test_paced_load_pauses_like_independent_callers(tmp_path: Path) -> None:
    """At a fixed rate each connection pauses a random, exponentially spread time, the threads
    each their own sequence: a fixed pause sent the server bursts of every connection at once.
    The pauses wrk really took are recorded by wrapping the pacing hook in wrk's own Lua."""
    recorder = (
        bench._throttle(500, bench.CONNECTIONS)
        + "local paced = delay\n"
        + "pauses = {}\n"
        + "function delay() local d = paced(); pauses[#pauses + 1] = d; return d end\n"
        + "local all = {}\n"
        + "local own_setup = setup\n"
        + "function setup(thread) own_setup(thread); all[#all + 1] = thread end\n"
        + "function done(summary, latency, requests)\n"
        + "  for _, t in ipairs(all) do\n"
        + "    local p = t:get('pauses')\n"
        + "    io.write('PAUSES ', table.concat(p, ','), '\\n')\n"
        + "  end\n"
        + "end\n"
    )
    script = bench.lookup_script(1000) + recorder
    lua = tmp_path / "paced.lua"
    lua.write_text(script)
    async with bench.bare_app() as hook:
        proc = await asyncio.create_subprocess_exec(
            *(bench.wrk_path(), "-t2", f"-c{bench.CONNECTIONS}", "-d2s", "-s", str(lua)),
            f"{hook}/lookup",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
    threads = [
        [int(x) for x in line.removeprefix("PAUSES ").split(",")]
        for line in out.decode().splitlines()
        if line.startswith("PAUSES ")
    ]
    assert len(threads) == 2 and all(len(t) > 200 for t in threads)
    pauses = [p for t in threads for p in t]
    mean = statistics.fmean(pauses)
    expected = 1000 * bench.CONNECTIONS / 500
    # Exponential: the mean as asked, spread as wide as the mean (a fixed pause: none) …
    assert abs(mean - expected) < 0.15 * expected
    assert statistics.pstdev(pauses) > 0.8 * mean
    # … short pauses the most common, and each thread on a sequence of its own.
    assert sum(p < expected for p in pauses) > 0.55 * len(pauses)
    assert threads[0][:20] != threads[1][:20]


def _figures(rps: float) -> dict[str, Any]:
    return {"rps": rps, "rate": 500, "p50_ms": 0.2, "p99_ms": 0.5, "errors": 0, "cpu_us": 100.0}


def test_the_pacing_is_said_once_when_webhooks_and_lookups_both_ran() -> None:
    """The webhook rows at a rate and the lookup rows are paced alike: one sentence under the
    table says so for both."""
    hooks = {
        "rate": 1000,
        "runs": 3,
        "bare": _figures(30_000),
        "bare_at_rate": _figures(1000),
        "replay": _figures(20_000),
        "replay_at_rate": _figures(1000),
        "replay_ratio": 0.67,
        "replay_cpu_ratio": 0.7,
    }
    run = {"p50_ms": 0.5, "p99_ms": 1.5, "errors": 0, "rps": 490, "hit_pct": 0}
    lookups = bench.LookupFigures(
        [{"backend": "postgres", "contacts": 1000, "rate": 500, "random": [run], "seed_s": 1.0}],
        _figures(500),
        _figures(500),
    )
    for shown in ((hooks, lookups), (hooks, None), (None, lookups)):
        assert bench._section(*shown).markdown.count(bench.PACING) == 1
