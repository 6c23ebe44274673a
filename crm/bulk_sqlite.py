"""Multi-row writes on SQLite straight through the sqlite3 connection under the session's
transaction, in aiosqlite's thread (SQLite's counterpart of `crm.bulk`).

The statements of one call go to that thread in one trip, where SQLAlchemy's adapter makes
several for each statement (a cursor, the execution, its rows, its close), each a hand-over
between threads; and the values are converted here once per column, without SQLAlchemy's
per-statement compiling and per-row parameter processing. They are stored as SQLAlchemy's
SQLite types bind them: timestamps as its DATETIME text of the UTC time (`UtcDateTime`), JSON
as `json.dumps` text (None as the JSON null), the other columns by the type's own bind
processor. Python-side defaults of the columns the rows leave out are taken once for the
statement, as `crm.bulk` takes them on PostgreSQL.

The caller flushes the session first: the ORM's pending objects are not written by these
statements (SQLAlchemy's own execution would have flushed them).
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from itertools import repeat
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import SessionTransaction

from crm.bulk import with_defaults
from crm.models import UtcDateTime

_DIALECT = SQLiteDialect_aiosqlite()
# SQLite's limit on a statement's parameters (SQLITE_MAX_VARIABLE_NUMBER of builds before
# 3.32): a multi-row VALUES list is cut into statements below it.
_MAX_PARAMS = 999


def utc_text(value: datetime) -> str:
    """`UtcDateTime`'s value as SQLAlchemy's SQLite DATETIME stores it: the UTC time as
    'YYYY-MM-DD HH:MM:SS.ffffff' (isoformat in C, where SQLAlchemy formats with a dict)."""
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


@cache
def _processor(table: Table, name: str) -> Callable[[Any], Any] | None:
    col: Column[Any] = table.c[name]
    if isinstance(col.type, UtcDateTime):
        return utc_text
    return col.type._cached_bind_processor(_DIALECT)


@cache
def _null(table: Table, name: str) -> Any:
    """What the column's bind processing makes of None (JSON: the text "null")."""
    proc = _processor(table, name)
    return None if proc is None or proc is utc_text else proc(None)


def _column_values(table: Table, name: str, values: list[Any]) -> list[Any]:
    proc = _processor(table, name)
    if proc is None:
        return values
    null = _null(table, name)  # None, the most common value of many columns, processed once
    return [null if v is None else proc(v) for v in values]


def _rows(
    table: Table, names: Sequence[str], rows: Sequence[dict[str, Any]], same: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """The parameters of each row: its own values, then the values every row shares."""
    columns = [_column_values(table, n, list(map(dict.get, rows, repeat(n)))) for n in names]
    shared = tuple(_column_values(table, n, [v])[0] for n, v in same.items())
    if not shared:
        return list(zip(*columns, strict=True))
    return [(*row, *shared) for row in zip(*columns, strict=True)]


class Writes:
    """Statements for one trip to the connection's thread, run in the order given."""

    def __init__(self) -> None:
        # (SQL, the parameters of each run, the index of the insert whose rows it returns)
        self._steps: list[tuple[str, list[tuple[Any, ...]], int | None]] = []
        self._returning = 0

    def __bool__(self) -> bool:
        return bool(self._steps)

    def insert(
        self,
        table: Table,
        rows: Sequence[dict[str, Any]],
        *,
        same: Mapping[str, Any] | None = None,
        skip_conflicts_on: Sequence[str] = (),
        returning: Sequence[str] = (),
    ) -> None:
        """INSERT `rows` (each with the same keys, in order) with the values of `same` in each;
        ON CONFLICT (…) DO NOTHING on `skip_conflicts_on`. With `returning`, `run` gives the
        rows written (those columns) as one list for this insert, in the order of such inserts."""
        if not returning and not rows:
            return
        names = tuple(rows[0]) if rows else ()
        shared = with_defaults(table, names, same or {})
        params = _rows(table, names, rows, shared)
        columns = (*names, *shared)
        conflict = tuple(skip_conflicts_on)
        if not returning:
            self._steps.append((_insert_sql(table, columns, 1, conflict, ()), params, None))
            return
        group, self._returning = self._returning, self._returning + 1
        # Statements of many VALUES rows: sqlite3 returns no rows from executemany.
        per = max(1, _MAX_PARAMS // len(columns))
        for start in range(0, len(params), per):
            chunk = params[start : start + per]
            sql = _insert_sql(table, columns, len(chunk), conflict, tuple(returning))
            self._steps.append((sql, [tuple(v for row in chunk for v in row)], group))

    def update(self, table: Table, rows: Sequence[dict[str, Any]], key: str = "id") -> None:
        """UPDATE the row of each `key` value with the other values of its dict (all with the
        same keys)."""
        if not rows:
            return
        names = [n for n in rows[0] if n != key]
        q = _DIALECT.identifier_preparer.quote
        sets = ", ".join(f"{q(n)}=?" for n in names)
        sql = f"UPDATE {q(table.name)} SET {sets} WHERE {q(table.name)}.{q(key)} = ?"
        self._steps.append((sql, _rows(table, (*names, key), rows, {}), None))

    async def run(self, session: AsyncSession) -> list[list[tuple[Any, ...]]]:
        """Run the statements in the session's transaction; the rows each returning insert
        wrote."""
        steps, self._steps = self._steps, []
        results: list[list[tuple[Any, ...]]] = [[] for _ in range(self._returning)]
        self._returning = 0
        if not steps:
            return results
        await _in_thread(session, _run, steps, results)
        return results


async def fetch(session: AsyncSession, sql: str, *params: Any) -> list[Any]:
    """The rows of one statement (`?` parameters) in the session's transaction, in one trip
    to the connection's thread: for reads whose plain columns need none of SQLAlchemy's
    compiling or result processing. (Like the writes, it does not flush the session.)"""
    rows: list[Any] = await _in_thread(session, _fetch, sql, params)
    return rows


def _fetch(raw: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    try:
        return raw.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        exc.leadbot_step = (sql, params)  # type: ignore[attr-defined]
        raise


async def _in_thread(session: AsyncSession, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(the sqlite3 connection, *args)` in aiosqlite's thread; its sqlite3 errors raised
    as SQLAlchemy raises them (an IntegrityError, an OperationalError, …)."""
    conn = await _driver(session)
    try:
        return await conn._execute(fn, conn._conn, *args)
    except sqlite3.Error as exc:
        sql, params = getattr(exc, "leadbot_step", ("", None))
        raise DBAPIError.instance(sql, params, exc, sqlite3.Error, dialect=_DIALECT) from exc


def _run(
    raw: sqlite3.Connection,
    steps: list[tuple[str, list[tuple[Any, ...]], int | None]],
    results: list[list[tuple[Any, ...]]],
) -> None:
    """In the connection's thread."""
    for sql, params, group in steps:
        try:
            if group is not None:
                results[group].extend(raw.execute(sql, params[0]).fetchall())
            elif len(params) == 1:
                raw.execute(sql, params[0])
            else:
                raw.executemany(sql, params)
        except sqlite3.Error as exc:
            exc.leadbot_step = (sql, params)  # type: ignore[attr-defined]
            raise


@cache
def _insert_sql(
    table: Table,
    columns: tuple[str, ...],
    count: int,
    conflict: tuple[str, ...],
    returning: tuple[str, ...],
) -> str:
    # Quoted as SQLAlchemy quotes them ("before", "after" are keywords).
    prep = _DIALECT.identifier_preparer
    names = ", ".join(prep.quote(c) for c in columns)
    one = f"({', '.join('?' * len(columns))})"
    sql = f"INSERT INTO {prep.quote(table.name)} ({names}) VALUES {', '.join([one] * count)}"
    if conflict:
        sql += f" ON CONFLICT ({', '.join(prep.quote(c) for c in conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(prep.quote(c) for c in returning)}"
    return sql


# Each transaction's aiosqlite connection, kept for its later calls (asking the session
# again costs greenlet-bridged calls) and gone with it.
_DRIVERS: weakref.WeakKeyDictionary[SessionTransaction, Any] = weakref.WeakKeyDictionary()


async def _driver(session: AsyncSession) -> Any:
    """The aiosqlite connection under the session's transaction, the transaction begun
    (SQLAlchemy sends BEGIN IMMEDIATE when it takes the connection)."""
    txn = session.sync_session.get_transaction()
    if txn is not None and txn.is_active and (known := _DRIVERS.get(txn)) is not None:
        return known
    raw = await (await session.connection()).get_raw_connection()
    begun = session.sync_session.get_transaction()
    assert begun is not None
    _DRIVERS[begun] = raw.driver_connection
    return raw.driver_connection
