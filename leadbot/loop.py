"""The event loop `serve` and `worker` run on (`[http] event_loop`).

uvloop (libuv, written in Cython) runs the same asyncio code; on the webhook benchmark it
gave more requests/s against the bare handler (docs/performance.md). It is the default where
it is installed (every platform but Windows); "asyncio" turns it off, for a platform or a
debugging tool it does not suit. The benchmarks run their baselines on the same loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

log = logging.getLogger(__name__)

EventLoopName = Literal["uvloop", "asyncio"]
T = TypeVar("T")


def loop_factory(name: EventLoopName) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the loop `name` names; the standard loop when uvloop is not installed."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:  # not built for this platform: the standard loop does the same work
            log.warning("uvloop is not installed: running on the standard asyncio loop")
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def running_loop_name() -> str:
    """ "uvloop" or "asyncio": the implementation of the loop this runs on."""
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]


def run(main: Coroutine[Any, Any, T], name: EventLoopName) -> T:
    """`asyncio.run(main)` on the loop `name` names."""
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)
