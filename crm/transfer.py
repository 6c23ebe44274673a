"""`leadbot db copy`: every table of one CRM database into another (SQLite ⇄ PostgreSQL), the
way from the embedded default to a production database.

Tables go in dependency order, each in batches by primary key, one transaction per batch, so
an interrupted copy leaves a prefix of every table behind it: `resume` continues after the
last id the target holds (and skips any row it already has). PostgreSQL's id sequences are
moved past the copied ids at the end, and every table's row count is compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from crm.db import Database
from crm.errors import CrmError
from crm.models import Base
from crm.schema import current_revision, head_revision, is_empty, upgrade

# Rows per INSERT: well under SQLite's limit of bound parameters for the widest table.
BATCH = 500

# (table, rows copied so far, rows in the source): called after every batch.
Progress = Callable[[str, int, int], None]


class TransferRefused(CrmError):
    """The copy cannot start: says why and what to do."""


@dataclass(frozen=True, slots=True)
class TableCount:
    table: str
    source: int
    target: int


def tables() -> list[Table]:
    """Every table, each after the tables it refers to; not the board's counters, which the
    target's triggers fill as its leads and deals arrive."""
    return [t for t in Base.metadata.sorted_tables if t.name != "board_counters"]


async def _count(conn: AsyncConnection, table: Table) -> int:
    return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def _prepare_target(target: Database, resume: bool) -> None:
    revision = await current_revision(target)
    if revision is None and await is_empty(target):
        await upgrade(target)
        return
    if revision != head_revision():
        raise TransferRefused(
            f"the target database is at schema {revision}, not {head_revision()}: "
            "use an empty database, or run `leadbot db upgrade` on it first"
        )
    if resume:
        return
    async with target.engine.connect() as conn:
        filled = [t.name for t in tables() if await _count(conn, t)]
    if filled:
        raise TransferRefused(
            f"the target database already has rows ({', '.join(filled[:3])}"
            f"{' …' if len(filled) > 3 else ''}): give --resume to continue an interrupted "
            "copy into it, or use an empty database"
        )


def _insert(target: Database, table: Table, rows: list[dict[str, Any]]) -> Any:
    """INSERT … ON CONFLICT DO NOTHING: a row a resumed copy already has is skipped."""
    make = pg_insert if not target.is_sqlite else sqlite_insert
    return make(table).values(rows).on_conflict_do_nothing()


async def _copy_table(
    source: Database, target: Database, table: Table, batch: int, progress: Progress | None
) -> None:
    key = list(table.primary_key.columns)
    by_id = len(key) == 1 and key[0].type.python_type is int
    async with source.read_engine.connect() as src:
        total = await _count(src, table)
    async with target.engine.connect() as dst:
        done = await _count(dst, table)
        # By id, a resumed copy goes on after the last id the target has (batches commit in
        # id order); other keys (a few rows) are read again and their rows skipped.
        last: Any = await dst.scalar(select(func.max(key[0]))) if by_id else None
    if progress:
        progress(table.name, done, total)
    offset = 0
    while True:
        query = select(table).order_by(*key).limit(batch)
        if not by_id:
            query = query.offset(offset)
        elif last is not None:
            query = query.where(key[0] > last)
        async with source.read_engine.connect() as src:
            rows = [dict(r._mapping) for r in (await src.execute(query)).all()]
        if not rows:
            return
        async with target.engine.begin() as dst:
            await dst.execute(_insert(target, table, rows))
        offset += len(rows)
        if by_id:
            last = rows[-1][key[0].name]
            done += len(rows)
        else:
            done = min(total, max(done, offset))
        if progress:
            progress(table.name, min(done, total), total)


async def _move_sequences(target: Database) -> None:
    """PostgreSQL hands out ids from sequences: set each past the ids copied in."""
    if target.is_sqlite:
        return
    async with target.engine.begin() as conn:
        for table in tables():
            if "id" not in table.columns or len(table.primary_key.columns) != 1:
                continue
            await conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f'COALESCE((SELECT max(id) FROM "{table.name}"), 1), '
                    f'(SELECT max(id) FROM "{table.name}") IS NOT NULL)'
                )
            )


async def copy_database(
    source: Database,
    target: Database,
    *,
    resume: bool = False,
    batch: int = BATCH,
    progress: Progress | None = None,
) -> list[TableCount]:
    """Copy every row of `source` into `target`; the row counts of both, table by table.

    The source must be at this version's schema; the target empty (it is migrated here) or,
    with `resume`, a target an earlier copy of the same source was interrupted in."""
    if await current_revision(source) != head_revision():
        raise TransferRefused(
            "the source database is not at this version's schema: run `leadbot db upgrade` "
            "on it first"
        )
    await _prepare_target(target, resume)
    for table in tables():
        await _copy_table(source, target, table, batch, progress)
    await _move_sequences(target)
    await target.analyze()
    counts = []
    for table in tables():
        async with source.read_engine.connect() as src, target.engine.connect() as dst:
            counts.append(
                TableCount(table.name, await _count(src, table), await _count(dst, table))
            )
    return counts
