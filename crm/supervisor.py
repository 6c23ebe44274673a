"""Supervised background work: every long-running task of a process runs under one
`Supervisor`, which restarts a task that ends unexpectedly and tells what each task is doing.

It lives in crm/ (not leadbot/) so that channels and the bot can name the `TaskHost` protocol
their host implements without importing the composition root. A task is a coroutine function
and the stop event it watches: once that event is set, an end is expected (the task finished
its in-flight work); before, an exception or a plain return is a failure. A failure is logged
once per streak (with its traceback), then the task is started again after a wait that doubles
up to a cap; a task that ran fine for `healthy_after` seconds ends the streak (one line says so)
and its next failure waits the shortest time again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

State = Literal["running", "restarting", "stopped", "done"]
Run = Callable[[], Awaitable[None]]

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
HEALTHY_AFTER = 60.0
# Failures in one streak (no fine run of `healthy_after` in between) from which a task counts
# as restarting in a loop, even while it runs.
LOOPING_AFTER = 3


@dataclass(frozen=True, slots=True)
class Health:
    """One readiness check's answer: ok, and what an operator wants to see (JSON values)."""

    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


class TaskHost(Protocol):
    """What a component gets from its host to run background work and report its health."""

    def spawn(
        self, name: str, run: Run, stop: asyncio.Event, *, once: bool = False
    ) -> asyncio.Task[None]: ...

    def add_check(self, name: str, check: Callable[[], Health]) -> None: ...


@dataclass(slots=True)
class TaskState:
    name: str
    state: State = "running"
    restarts: int = 0  # since the process started
    streak: int = 0  # failures since the task last ran fine for `healthy_after`
    last_error: str | None = None
    since: float = field(default_factory=time.time)  # unix time of the last state change

    def set(self, state: State) -> None:
        self.state, self.since = state, time.time()

    @property
    def healthy(self) -> bool:
        return self.state in ("running", "done") and self.streak < LOOPING_AFTER

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "restarts": self.restarts,
            "failures_in_a_row": self.streak,
            "last_error": self.last_error,
            "since": round(self.since, 3),
        }


def describe(exc: BaseException) -> str:
    """One line: the class and the first line of the message."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


class Supervisor:
    def __init__(
        self,
        *,
        first_delay: float = FIRST_DELAY,
        max_delay: float = MAX_DELAY,
        healthy_after: float = HEALTHY_AFTER,
    ) -> None:
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.healthy_after = healthy_after
        self._states: dict[str, TaskState] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(
        self, name: str, run: Run, stop: asyncio.Event, *, once: bool = False
    ) -> asyncio.Task[None]:
        """Run `run()` until `stop` is set, restarting it when it fails. `once`: a plain
        return means the work is done (a connect step), not a failure. The returned task ends
        when the work ended after `stop` was set; cancelling it cancels the work."""
        if name in self._states and self._states[name].state != "stopped":
            raise ValueError(f"a task named {name!r} is already supervised")
        state = TaskState(name)
        self._states[name] = state
        task = asyncio.create_task(self._supervise(state, run, stop, once), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def states(self) -> list[TaskState]:
        return [replace(s) for s in self._states.values()]

    def health(self) -> Health:
        states = self.states()
        tasks = {s.name: s.as_json() for s in states}
        return Health(all(s.healthy for s in states), {"tasks": tasks})

    async def close(self, timeout: float = 5.0) -> None:
        """Cancel what still runs after its owner's stop (owners await theirs first)."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in late:
            log.warning("task %s did not stop in time; cancelled", task.get_name())
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _supervise(self, state: TaskState, run: Run, stop: asyncio.Event, once: bool) -> None:
        loop = asyncio.get_running_loop()
        delay = self.first_delay
        while True:
            state.set("running")
            fine = loop.call_later(self.healthy_after, self._ran_fine, state)
            error: Exception | None = None
            try:
                await run()
            except asyncio.CancelledError:
                state.set("stopped")
                raise
            except Exception as exc:
                error = exc
            finally:
                fine.cancel()
            if stop.is_set():
                if error is not None:
                    log.error("task %s failed while stopping", state.name, exc_info=error)
                state.set("stopped")
                return
            if error is None and once:
                state.set("done")
                return
            if state.streak == 0:
                delay = self.first_delay
            state.streak += 1
            state.restarts += 1
            state.last_error = describe(error) if error else "returned while not stopping"
            if state.streak == 1:  # once per streak; the rest are counted in the state
                log.error(
                    "task %s ended unexpectedly (%s); restarting it in %.1f s, then with "
                    "growing waits (logged again only after it has run fine for %.0f s)",
                    state.name,
                    state.last_error,
                    delay,
                    self.healthy_after,
                    exc_info=error,
                )
            else:
                log.debug("task %s failed again: %s", state.name, state.last_error)
            state.set("restarting")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                state.set("stopped")
                return
            delay = min(delay * 2, self.max_delay)

    @staticmethod
    def _ran_fine(state: TaskState) -> None:
        if state.streak:
            log.info(
                "task %s is running fine again after %d failure(s) in a row",
                state.name,
                state.streak,
            )
        state.streak = 0
