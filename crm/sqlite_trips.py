"""SQLAlchemy's statements on SQLite in one trip to aiosqlite's thread each.

SQLAlchemy's aiosqlite adapter makes a trip to the connection's thread for the cursor, one for
the execution, one for its rows and one for closing the cursor; each is a hand-over between
the event loop and that thread (a queue put, a wake-up, the loop woken back), and a busy
machine may switch threads at each. Here one function in that thread makes the sqlite3 cursor,
runs the statement, reads all of its rows (as the adapter's cursor does for a plain cursor),
notes what SQLAlchemy reads of the cursor afterwards (description, rowcount, lastrowid) and
closes it. The same statements run on the same connection, and their errors reach SQLAlchemy
as before. Server-side cursors (streaming results) are the adapter's own.

The pool rolls back every connection given back to it, a trip of its own even right after a
COMMIT. A rollback asked for when the connection's last step was a COMMIT or ROLLBACK that
ended, with no statement since and no transaction open, is left out.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
)


class _Ran:
    """What SQLAlchemy reads of a cursor once its statement ran (the cursor itself is closed)."""

    __slots__ = ("arraysize", "description", "lastrowid", "rowcount")

    def __init__(self, description: Any = None, rowcount: int = -1, lastrowid: Any = None):
        self.description = description
        self.rowcount = rowcount
        self.lastrowid = lastrowid
        self.arraysize = 1

    def close(self) -> None:
        return None


def _in_thread(
    raw: sqlite3.Connection, operation: str, parameters: Any, many: bool
) -> tuple[_Ran, list[Any] | None]:
    cur = raw.cursor()
    try:
        if many:
            cur.executemany(operation, parameters)
        elif parameters is None:
            cur.execute(operation)
        else:
            cur.execute(operation, parameters)
        rows = cur.fetchall() if cur.description else None
        return _Ran(cur.description, cur.rowcount, cur.lastrowid), rows
    finally:
        cur.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()
    _awaitable_cursor_close = False  # nothing left open: closing is no trip

    def _make_new_cursor(self, connection: Any) -> Any:
        return _Ran()  # no trip for a cursor: the statement's trip makes its own

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._run(operation, parameters, many=False)
        return self

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._run(operation, seq_of_parameters, many=True)
        return self

    async def _run(self, operation: Any, parameters: Any, *, many: bool) -> None:
        conn = self._connection
        async with self._adapt_connection._execute_mutex:
            ran, rows = await conn._execute(_in_thread, conn._conn, operation, parameters, many)
        self._cursor = ran
        if rows is not None:
            self._rows = collections.deque(rows)


# Set on the aiosqlite connection when its last step was a COMMIT or ROLLBACK that ended (the
# adapter's own slots take no attribute of ours); any statement clears it. (`crm.bulk_sqlite`
# sends its statements past the cursors, inside a transaction whose BEGIN went through one.)
_ENDED = "leadbot_ended"


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor

    def cursor(self, server_side: bool = False) -> Any:
        setattr(self._connection, _ENDED, False)
        return super().cursor(server_side)

    def commit(self) -> None:
        super().commit()
        setattr(self._connection, _ENDED, True)

    def rollback(self) -> None:
        conn: Any = self._connection
        # A statement whose caller was cancelled may still be on its way in the thread: then
        # the last step was no COMMIT or ROLLBACK that ended, and the rollback goes as usual.
        if getattr(conn, _ENDED, False) and conn._connection and not conn.in_transaction:
            return
        super().rollback()
        setattr(conn, _ENDED, True)


# The adapter's hooks this relies on (SQLAlchemy 2.1's); without them the adapter is left as is.
_HOOKS = ("_make_new_cursor", "_aenter_cursor", "_execute_async", "_executemany_async")
_FITS = all(hasattr(AsyncAdapt_aiosqlite_cursor, h) for h in _HOOKS)


def one_trip(dbapi_connection: Any) -> None:
    """Make a new connection of SQLAlchemy's aiosqlite adapter run its statements in one trip
    each (from the engine's "connect" event)."""
    if _FITS and type(dbapi_connection) is AsyncAdapt_aiosqlite_connection:
        dbapi_connection.__class__ = OneTripConnection
