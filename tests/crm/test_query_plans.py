"""Lookups of many (kind, value) pairs at once stay on the index on SQLite too."""

from __future__ import annotations

from typing import Any

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


async def test_on_postgresql_a_lookup_has_one_text_for_any_number_of_pairs(db: Database) -> None:
    """Arrays, not IN lists: one prepared statement per connection, whatever the batch's size;
    and it finds the same rows as the IN lists."""
    if db.is_sqlite:
        pytest.skip("PostgreSQL arrays")
    first, second = Communication.kind, Communication.value
    async with db.transaction() as s:
        s.add_all(
            Communication(kind="phone", raw_value=v, value=v, owner_type="lead", owner_id=1)
            for v in ("+49301", "+49302", "+49303")
        )

    def stmt(pairs: list[tuple[str, str]], pg: bool) -> Any:
        return select(second).where(pairs_in(first, second, pairs, pg=pg)).order_by(second)

    def sql(n: int) -> str:
        return str(stmt([("phone", f"+4930{i}") for i in range(n)], True).compile(db.engine))

    assert sql(1) == sql(100)
    wanted = [("phone", "+49301"), ("phone", "+49303"), ("email", "+49302")]
    async with db.read() as s:
        found = list(await s.scalars(stmt(wanted, True)))
        assert found == list(await s.scalars(stmt(wanted, False))) == ["+49301", "+49302", "+49303"]


async def test_the_numbers_a_change_touches_are_read_through_indexes(db: Database) -> None:
    """The statement that finds which caller answers a commit alters runs at every commit: a
    scan of all phones in it made intake on SQLite with a million contacts twelve times
    slower (every batch read every lead's phone)."""
    if not db.is_sqlite:
        pytest.skip("a SQLite query plan")
    from crm.affected import _numbers_query

    stmt = _numbers_query(True, True, True, False, 500).params(
        contacts=[1, 2], companies=[3], leads=[4, 5]
    )
    compiled = stmt.compile(db.engine, compile_kwargs={"literal_binds": True})
    async with db.read() as s:
        steps = [str(row[-1]) for row in await s.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))]
    phones = [step for step in steps if "communications" in step]
    assert phones and not any("SCAN" in step for step in steps), steps
    # By holder: an index search on the owner type alone walks every phone of that type.
    assert all("owner_id=?" in step for step in phones), phones
