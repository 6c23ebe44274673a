"""Multi-row writes on PostgreSQL as one statement whose text never changes with the row count.

The rows go as one array of the table's row type (`INSERT … SELECT … FROM unnest($1::t[])`,
`UPDATE … FROM unnest($1::t[])`): one prepared statement per table and set of columns, parsed
and planned once per connection, where a multi-row VALUES list is a new statement (a new
prepare, a new plan) for every row count. One array of rows, not one array per column:
asyncpg checks every element of an array in Python (is it a nested array?), so an array per
column pays that check for every value. The values are encoded by asyncpg in one pass, without
SQLAlchemy's per-row parameter processing; the column types' own bind processing (aware UTC
datetimes) and Python-side defaults are applied here, so a row reads back as the ORM's INSERT
would have written it. JSON values are encoded by msgspec (in C, compact: the same value as
the ORM's `json.dumps` text, not the same text; a None is the JSON null, as there). Row
triggers and statement triggers (transition tables) fire as for any INSERT / UPDATE.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from itertools import repeat
from typing import Any

import msgspec
from sqlalchemy import JSON, Column, Table
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
_ENCODE = msgspec.json.Encoder().encode


def _json_text(value: Any) -> str:
    """A JSON column's bind processing: a per-value cost of the bulk writes' payloads."""
    return _ENCODE(value).decode()


@cache
def _column(table: Table, name: str) -> tuple[str, Callable[[Any], Any] | None]:
    """The cast of a column (its array's: with `[]`) and its bind processor. The cast drops
    the type's length (`varchar(20)` → `varchar`): an explicit cast would cut a value that is
    too long, where the INSERT's assignment refuses it, as SQLAlchemy's INSERT does."""
    col: Column[Any] = table.c[name]
    typ = col.type.dialect_impl(_DIALECT)
    base = re.sub(r"\(.*?\)", "", col.type.compile(dialect=_DIALECT))
    if isinstance(col.type, JSON):
        return base, _json_text
    return base, typ.bind_processor(_DIALECT)


@cache
def _defaults(table: Table) -> tuple[tuple[str, Any], ...]:
    """Python-side column defaults (what a Core INSERT fills in for an omitted column)."""
    out = []
    for col in table.columns:
        d = col.default
        if d is not None and (d.is_scalar or d.is_callable):
            out.append((col.name, d))
    return tuple(out)


@cache
def _null(table: Table, name: str) -> Any:
    """What the column's bind processing makes of None (JSON: the text "null")."""
    _cast, proc = _column(table, name)
    return None if proc is None else proc(None)


def _arrays(table: Table, names: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[Any]:
    arrays = []
    for name in names:
        _cast, proc = _column(table, name)
        values = list(map(dict.get, rows, repeat(name)))  # the loop in C: dicts only
        if proc is not None:  # None, the most common value of many columns, processed once
            null = _null(table, name)
            values = [null if v is None else proc(v) for v in values]
        arrays.append(values)
    return arrays


@cache
def _insert_sql(
    table: Table,
    names: tuple[str, ...],
    filled: tuple[str, ...],
    conflict: tuple[str, ...],
    returning: tuple[str, ...],
) -> str:
    """The INSERT of the columns `names` (from the array of rows, $1) and `filled` (one value
    each, for every row: `same` and the defaults)."""
    scalars = "".join(f", ${k}::{_column(table, c)[0]}" for k, c in enumerate(filled, 2))
    sql = (
        f"INSERT INTO {table.name} ({', '.join((*names, *filled))})"
        f" SELECT {', '.join(names)}{scalars} FROM unnest($1::{table.name}[])"
    )
    if conflict:
        sql += f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
    return sql


_ATTRIBUTES: weakref.WeakKeyDictionary[Any, dict[str, tuple[str, ...]]] = (
    weakref.WeakKeyDictionary()
)


async def _records(
    conn: Any, table: Table, names: Sequence[str], rows: Sequence[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """The rows as values of the table's row type: every attribute in the database's order
    (read once per connection: a migration may have added a column at the end), None for
    those not given."""
    known = _ATTRIBUTES.setdefault(conn, {})
    attrs = known.get(table.name)
    if attrs is None:
        attrs = known[table.name] = tuple(
            r[0]
            for r in await conn.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass"
                " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                table.name,
            )
        )
    columns = dict(zip(names, _arrays(table, names, rows), strict=True))
    nones = repeat(None)  # (endless: the given columns end the zip)
    return list(zip(*[columns.get(a, nones) for a in attrs], strict=False))


def with_defaults(table: Table, given: Iterable[str], same: Mapping[str, Any]) -> dict[str, Any]:
    """`same`, then one value of each Python-side default of the columns that neither the
    rows (`given`: their columns) nor `same` fill."""
    shared = dict(same)
    for name, default in _defaults(table):
        if name not in given and name not in shared:
            shared[name] = default.arg if default.is_scalar else default.arg(None)
    return shared


def _filled(
    table: Table, given: Mapping[str, Any], same: Mapping[str, Any]
) -> tuple[tuple[str, ...], list[Any]]:
    """The columns of one value for every row: `same`, then the defaults of the columns the
    rows leave out, taken once for the statement (the rows of one INSERT share a default
    timestamp, as PostgreSQL's `now()` would give them)."""
    shared = with_defaults(table, given, same)
    values = []
    for name, v in shared.items():
        proc = _column(table, name)[1]
        values.append(_null(table, name) if v is None else proc(v) if proc else v)
    return tuple(shared), values


_DRIVER = "crm.bulk.driver"  # session.info: (the transaction, its asyncpg connection)


async def driver(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's transaction, in that transaction. Kept for
    the transaction's later calls: asking the session again costs two greenlet-bridged
    calls, and an intake batch asks for it a dozen times."""
    held = session.info.get(_DRIVER)
    txn = session.sync_session.get_transaction()
    if held is not None and txn is not None and held[0] is txn and txn.is_active:
        return held[1]
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    adapter: Any = raw.dbapi_connection
    # SQLAlchemy's asyncpg adapter sends BEGIN with the first statement it runs itself: a
    # statement sent around it first would commit on its own.
    if adapter._transaction is None:
        await adapter._start_transaction()
    session.info[_DRIVER] = (session.sync_session.get_transaction(), raw.driver_connection)
    return raw.driver_connection


async def fetch(session: AsyncSession, sql: str, *args: Any) -> list[Any]:
    """The rows of one constant statement (`$n` parameters) in the session's transaction,
    straight through asyncpg: for reads whose plain columns need none of SQLAlchemy's
    compiling or result processing."""
    return list(await (await driver(session)).fetch(sql, *args))


async def insert_rows(
    conn: Any,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    skip_conflicts_on: Iterable[str] = (),
    returning: Sequence[str] = (),
    same: Mapping[str, Any] | None = None,
) -> list[Any]:
    """INSERT `rows` (each with the same keys) in array order on `conn` (`driver`), each with
    the values of `same` too (sent once); ON CONFLICT (…) DO NOTHING when `skip_conflicts_on`
    names the unique columns; the `returning` columns of the rows written."""
    if not rows:
        return []
    sql, args = await _insert(conn, table, rows, tuple(skip_conflicts_on), tuple(returning), same)
    if not returning:
        await conn.execute(sql, *args)
        return []
    return list(await conn.fetch(sql, *args))


async def _insert(
    conn: Any,
    table: Table,
    rows: Sequence[dict[str, Any]],
    conflict: tuple[str, ...],
    returning: tuple[str, ...],
    same: Mapping[str, Any] | None,
) -> tuple[str, list[Any]]:
    names = tuple(rows[0])
    filled, defaults = _filled(table, rows[0], same or {})
    sql = _insert_sql(table, names, filled, conflict, returning)
    return sql, [await _records(conn, table, names, rows), *defaults]


async def update_rows(
    conn: Any, table: Table, rows: Sequence[dict[str, Any]], key: str = "id"
) -> None:
    """UPDATE the row of each `key` value with the other values of its dict (all with the
    same keys), in one statement."""
    if not rows:
        return
    names = list(rows[0])
    sets = ", ".join(f"{c} = u.{c}" for c in names if c != key)
    sql = f"UPDATE {table.name} AS t SET {sets} FROM unnest($1::{table.name}[]) AS u"
    await conn.execute(f"{sql} WHERE t.{key} = u.{key}", await _records(conn, table, names, rows))


class Together:
    """Array writes (`insert`, `stamp`) gathered to go as one statement (`send`):
    one round trip, one execution. All but the last go as data-modifying WITH queries; they
    all see the database as the statement found it, so none may depend on another's rows but
    through foreign keys (checked at the statement's end, as triggers fire)."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._args: list[Any] = []

    async def insert(
        self,
        conn: Any,
        table: Table,
        rows: Sequence[dict[str, Any]],
        *,
        same: Mapping[str, Any] | None = None,
    ) -> None:
        """`insert_rows` of these rows, without conflicts skipped nor rows returned."""
        if rows:
            self._add(*await _insert(conn, table, rows, (), (), same))

    def stamp(self, table: Table, column: str, value: Any, ids: Sequence[int]) -> None:
        """`column` set to `value` on the rows of these ids."""
        if ids:
            sql = f"UPDATE {table.name} SET {column} = $1 WHERE id = ANY($2::int[])"
            self._add(sql, [value, list(ids)])

    def _add(self, sql: str, args: list[Any]) -> None:
        self._parts.append(sql)
        self._args.extend(args)

    async def send(self, conn: Any) -> None:
        if self._parts:
            await conn.execute(_together(tuple(self._parts)), *self._args)
        self._parts.clear()
        self._args.clear()


@cache
def _together(parts: tuple[str, ...]) -> str:
    """One statement of these (each with its parameters from $1): the last as the statement,
    the others as WITH queries before it, their parameters numbered on."""
    offset = 0
    out = []

    def shifted(m: re.Match[str]) -> str:
        return f"${int(m.group(1)) + offset}"

    for sql in parts:
        out.append(re.sub(r"\$(\d+)", shifted, sql))
        offset += max((int(n) for n in re.findall(r"\$(\d+)", sql)), default=0)
    *first, last = out
    if not first:
        return last
    return "WITH " + ", ".join(f"w{k} AS ({sql})" for k, sql in enumerate(first)) + f" {last}"
