"""The benchmark's own plumbing: its wrk scripts send validly signed requests, and a missing
wrk is a clear error (the figures themselves come from `make bench`)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

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
