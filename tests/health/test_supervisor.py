"""The supervisor with real tasks: restarts with growing waits, one log line per failure
streak, state for readiness, and a clean stop that lets work in flight finish."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import pytest

from crm.supervisor import Supervisor


async def eventually(predicate: object, timeout: float = 20.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def failure_lines(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR and f"task {name} ended unexpectedly" in r.getMessage()
    ]


async def test_a_failing_task_is_restarted_with_growing_waits_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="crm.supervisor")
    sup = Supervisor(first_delay=0.1, max_delay=0.4, healthy_after=30)
    stop = asyncio.Event()
    starts: list[float] = []

    async def broken() -> None:
        starts.append(time.monotonic())
        raise RuntimeError("lost the connection")

    task = sup.spawn("test.broken", broken, stop)
    await eventually(lambda: len(starts) >= 7)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # 0.1, 0.2, 0.4, then capped at 0.4 (a busy machine only makes them longer).
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39 and gaps[3] >= 0.39
    assert min(gaps[3], gaps[4]) < 0.75  # capped: doubled they would be 0.8 and 1.6
    (state,) = sup.states()
    assert state.restarts >= 5 and state.last_error == "RuntimeError: lost the connection"
    assert not state.healthy and not sup.health().ok
    lines = failure_lines(caplog, "test.broken")
    assert len(lines) == 1, "one line per failure streak, not one per restart"
    assert lines[0].exc_info is not None  # the traceback, once
    assert sum(1 for r in caplog.records if r.exc_info) == 1
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sup.states()[0].state == "stopped"


async def test_a_task_that_recovers_ends_its_streak_and_a_new_failure_is_logged_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="crm.supervisor")
    sup = Supervisor(first_delay=0.05, max_delay=0.2, healthy_after=0.5)
    stop = asyncio.Event()
    runs = 0
    fail_again = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise ConnectionError("server gone")
        await fail_again.wait()  # runs fine until told otherwise
        raise ConnectionError("server gone again")

    task = sup.spawn("test.flaky", flaky, stop)
    await eventually(lambda: runs == 4 and sup.states()[0].streak == 0)
    state = sup.states()[0]
    assert state.state == "running" and state.restarts == 3 and sup.health().ok
    assert any("running fine again after 3 failure(s)" in r.getMessage() for r in caplog.records)
    assert len(failure_lines(caplog, "test.flaky")) == 1
    fail_again.set()
    await eventually(lambda: sup.states()[0].restarts == 4)
    assert len(failure_lines(caplog, "test.flaky")) == 2  # a new streak
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_plain_return_is_a_failure_unless_the_task_is_one_off() -> None:
    sup = Supervisor(first_delay=0.05, max_delay=0.1, healthy_after=30)
    stop = asyncio.Event()
    calls = {"loop": 0, "once": 0}

    async def loop_that_returns() -> None:
        calls["loop"] += 1

    async def connect() -> None:
        calls["once"] += 1

    sup.spawn("test.loop", loop_that_returns, stop)
    once = sup.spawn("test.connect", connect, stop, once=True)
    await eventually(lambda: calls["loop"] >= 3)
    await asyncio.wait_for(once, 5)
    states = {s.name: s for s in sup.states()}
    assert states["test.loop"].last_error == "returned while not stopping"
    assert states["test.connect"].state == "done" and calls["once"] == 1
    assert states["test.connect"].healthy
    stop.set()
    await sup.close()
    assert {s.name: s.state for s in sup.states()} == {
        "test.loop": "stopped",
        "test.connect": "done",
    }


async def test_stopping_lets_work_in_flight_finish_and_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup = Supervisor()
    stop = asyncio.Event()
    finished: list[str] = []

    async def worker() -> None:
        await stop.wait()
        await asyncio.sleep(0.2)  # the batch in hand
        finished.append("batch")

    task = sup.spawn("test.worker", worker, stop)
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert finished == ["batch"]
    assert sup.states()[0].state == "stopped" and sup.states()[0].restarts == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_close_cancels_a_task_that_ignores_its_stop() -> None:
    sup = Supervisor()
    stop = asyncio.Event()

    async def stubborn() -> None:
        await asyncio.sleep(3600)

    sup.spawn("test.stubborn", stubborn, stop)
    await asyncio.sleep(0.05)
    stop.set()
    started = time.monotonic()
    await sup.close(timeout=0.2)
    assert time.monotonic() - started < 5
    assert sup.states()[0].state == "stopped"
