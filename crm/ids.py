"""Primary keys handed out before rows are written.

Intake builds a whole round of records (lead, its phones, activity, bindings, outbox) with the
ids known up front, so nothing needs a flush per row; one flush at the end of the round writes
each table's rows in a few multi-row statements.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm.bulk import fetch
from crm.bulk_sqlite import fetch as sqlite_fetch

# The tables and how many ids of each as two arrays: one statement text for every round.
# A table's sequence is looked up once (OFFSET 0 keeps the subquery, so the look-up is not
# pulled into every id's nextval: a catalog search per id, half the server's cost of an id);
# its ids come back as one array, in the order nextval gave them.
_RESERVE = (
    "SELECT t, ARRAY(SELECT nextval(s) FROM generate_series(1, n))"
    " FROM (SELECT t, n, pg_get_serial_sequence(t, 'id')::regclass AS s"
    " FROM unnest($1::text[], $2::int[]) AS r(t, n) OFFSET 0) AS r"
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
        self._more: dict[Any, int] = {}

    def add(self, model: Any, n: int) -> None:
        """`n` more ids of `model` with the next reservation (in its statement)."""
        if n > 0:
            self._more[model] = self._more.get(model, 0) + n

    async def reserve(self, counts: Mapping[Any, int]) -> None:
        """Fetch ids for the rows about to be created (models → how many), in one go."""
        if self.sqlite:
            await self._read_max(m.__tablename__ for m, n in counts.items() if n > 0)
            return  # counted in memory from there
        if self._more:
            counts = {m: counts.get(m, 0) + self._more.get(m, 0) for m in {*counts, *self._more}}
            self._more.clear()
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
        for table, idents in await fetch(self.s, _RESERVE, tables, numbers):
            self._free[table].extend(idents)

    async def _read_max(self, tables: Iterable[str]) -> None:
        """SQLite: the highest id of each table not read yet, in one statement."""
        new = [t for t in dict.fromkeys(tables) if t not in self._next]
        if new:
            if self.s.new:  # as the ORM's query would: pending rows are counted
                await self.s.flush()
            maxes = ", ".join(f"(SELECT max(id) FROM {t})" for t in new)
            (row,) = await sqlite_fetch(self.s, f"SELECT {maxes}")
            self._next.update((t, int(m or 0)) for t, m in zip(new, row, strict=True))

    async def take(self, model: Any) -> int:
        table: str = model.__tablename__
        if self.sqlite:
            if table not in self._next:
                await self._read_max([table])
            self._next[table] += 1
            return self._next[table]
        if not self._free[table]:
            await self.reserve({model: 1})
        return self._free[table].popleft()

    async def take_many(self, model: Any, n: int) -> list[int]:
        """`n` ids of `model`: `take`, `n` times. (One way to hand out ids: most are taken
        one at a time, so `take` is the path kept short.)"""
        return [await self.take(model) for _ in range(n)]
