"""Ids handed out before rows are written (`crm.ids.IdAllocator`): the table's own next ids,
in order, none twice, and rows inserted after take none of them."""

from __future__ import annotations

from sqlalchemy import func, insert, select

from crm.db import Database
from crm.ids import IdAllocator
from crm.models import Activity, Lead, TimelineEntry


async def test_a_reservation_of_several_tables_gives_each_its_own_next_ids_in_order(
    db: Database,
) -> None:
    async with db.transaction() as s:
        alloc = IdAllocator(s, sqlite=db.is_sqlite)
        await alloc.reserve({Lead: 3, Activity: 2, TimelineEntry: 0})
        leads = [await alloc.take(Lead) for _ in range(3)]
        acts = await alloc.take_many(Activity, 2)
        later = await alloc.take(Lead)  # past the reservation: a new one
        assert leads == sorted(set(leads)) and acts == sorted(set(acts))
        assert later > max(leads)
        for i in (*leads, later):
            await s.execute(
                insert(Lead).values(
                    id=i, title="x", status="NEW", status_semantic="process", source="CALL"
                )
            )
        if not db.is_sqlite:  # a row given no id takes the sequence's next, past ours
            await s.execute(
                insert(Lead).values(
                    title="y", status="NEW", status_semantic="process", source="CALL"
                )
            )
    async with db.read() as s:
        ids = list(await s.scalars(select(Lead.id).order_by(Lead.id)))
        assert ids[:4] == [*leads, later]
        assert len(ids) == len(set(ids)) == await s.scalar(select(func.count(Lead.id)))
