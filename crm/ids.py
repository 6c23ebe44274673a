"""Primary keys handed out before rows are written.

Intake builds a whole round of records (lead, its phones, activity, bindings, outbox) with the
ids known up front, so nothing needs a flush per row; one flush at the end of the round writes
each table's rows in a few multi-row statements.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

# The tables and how many ids of each as two arrays: one statement text for every round.
_RESERVE = text(
    "SELECT r.t, nextval(pg_get_serial_sequence(r.t, 'id'))"
    " FROM unnest(CAST(:tables AS text[]), CAST(:numbers AS int[])) AS r(t, n),"
    " generate_series(1, r.n)"
)


class IdAllocator:
    """Hands out ids for one transaction.

    PostgreSQL: values of the table's own sequence, fetched for several tables in one
    statement (an unused one is a gap, as after any rollback). SQLite: the transaction holds
    the write lock (BEGIN IMMEDIATE), so max(id) + 1 onwards is ours; every row of these
    tables written in the transaction must then take its id from here.
    """

    def __init__(self, session: AsyncSession, *, sqlite: bool) -> None:
        self.s = session
        self.sqlite = sqlite
        self._free: dict[str, deque[int]] = defaultdict(deque)
        self._next: dict[str, int] = {}

    async def reserve(self, counts: Mapping[Any, int]) -> None:
        """Fetch ids for the rows about to be created (models → how many), in one go."""
        if self.sqlite:
            return  # counted in memory
        wanted = [
            (t, n)
            for t, n in (
                (m.__tablename__, n - len(self._free[m.__tablename__])) for m, n in counts.items()
            )
            if n > 0
        ]
        if not wanted:
            return
        tables, numbers = [t for t, _ in wanted], [n for _, n in wanted]
        for table, ident in await self.s.execute(_RESERVE, {"tables": tables, "numbers": numbers}):
            self._free[table].append(int(ident))

    async def take(self, model: Any) -> int:
        table: str = model.__tablename__
        if self.sqlite:
            if table not in self._next:
                self._next[table] = int(await self.s.scalar(select(func.max(model.id))) or 0)
            self._next[table] += 1
            return self._next[table]
        if not self._free[table]:
            await self.reserve({model: 1})
        return self._free[table].popleft()
