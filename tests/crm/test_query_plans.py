"""Lookups of many (kind, value) pairs at once stay on the index on SQLite too."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from crm.db import Database, pairs_in
from crm.models import Communication, InboundEventLog


@pytest.mark.parametrize(
    ("model", "columns"),
    [
        (Communication, ("kind", "value")),
        (InboundEventLog, ("channel", "external_id")),
    ],
)
async def test_a_batch_of_pairs_is_looked_up_through_the_index(
    db: Database, model: type, columns: tuple[str, str]
) -> None:
    if not db.is_sqlite:
        pytest.skip("a SQLite query plan")
    first, second = (getattr(model, c) for c in columns)
    pairs = [("phone", f"+4930{i:07d}") for i in range(100)]
    stmt = select(model.id).where(pairs_in(first, second, pairs))  # type: ignore[attr-defined]
    compiled = stmt.compile(db.engine, compile_kwargs={"literal_binds": True})
    async with db.read() as s:
        rows = await s.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
        plan = " ".join(str(row[-1]) for row in rows)
    assert "SEARCH" in plan and "SCAN" not in plan, plan
