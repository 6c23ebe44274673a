"""The garbage collector's settings of a long-running process (`serve`, `worker`).

Once started, what start-up built (modules, mappers, compiled statements) is frozen: the
collector's full passes no longer walk it, where such a pass was the slowest lookups' wait.

The youngest generation is collected after `YOUNG` more container allocations than
deallocations, not CPython's 700: an intake batch allocates tens of thousands of objects that
live until its commit (rows, ORM states, the change feed's records), and at 700 each of them
was examined by several young collections and moved on to the older generations, whose
collections walked them again (measured with callgrind on an intake batch of 100 on
PostgreSQL: the collector's share fell from about 2 % of the instructions to almost none).
A young collection examines at most `YOUNG` objects, a short pause; cycles among the young
are freed a little later, which costs some memory, not correctness.
"""

from __future__ import annotations

import gc

YOUNG = 10_000


def settle() -> tuple[int, int, int]:
    """After start-up: freeze what exists and collect the young generation less often. The
    thresholds it replaced, for `unsettle`."""
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(YOUNG, before[1], before[2])
    return before


def unsettle(before: tuple[int, int, int]) -> None:
    """Undo `settle` (a process that goes on: tests, an embedding program)."""
    gc.unfreeze()
    gc.set_threshold(*before)
