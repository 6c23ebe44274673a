"""`make bench`'s memory section runs the real `leadbot serve` and `leadbot worker` on a
seeded PostgreSQL CRM and reads their peak RSS (tiny sizes: it must not rot)."""

from __future__ import annotations

import pytest

from benchmarks import bot, memory

from .conftest import PG_ADMIN_DSN, REDIS_URL


@pytest.mark.slow
async def test_serve_and_worker_take_the_load_and_report_their_peak_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "REDIS_URL", REDIS_URL)
    monkeypatch.setattr(memory, "PG_ADMIN", PG_ADMIN_DSN)
    monkeypatch.setattr(bot, "PG_ADMIN", PG_ADMIN_DSN)  # the database is made there
    figures = await memory.measure(300, memory.Load(lookups=40, webhooks=20, pages=10), "asyncio")
    answered = figures["answered"]
    assert answered == {"lookups": {200: 40}, "webhooks": {202: 20}, "pages": {200: 10}}
    assert figures["events_logged"] == 20  # the worker made events of every queued call
    for role in ("serve", "worker"):
        assert 0 < figures[f"{role}_start_mb"] <= figures[f"{role}_peak_mb"]
    rows = [figures, figures]
    goals = memory.goals(rows)
    assert [g.ratio for g in goals] == [1.0, 1.0]
    assert "| 300 | worker |" in memory.render(rows)
