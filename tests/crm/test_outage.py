"""One "connection lost" classification (`crm.outage.connection_lost`) serves `is_outage`
and the caller lookup's retry of a statement on a connection the server ended while idle:
each with what it needs, checked on the driver's own exception classes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest
from asyncpg import exceptions as pg

from crm.outage import connection_lost, is_outage

# The server ended the connection, or it broke: lost for both, an outage.
ENDED = [
    pg.ConnectionDoesNotExistError("gone"),
    pg.ConnectionFailureError("broken"),
    pg.AdminShutdownError("terminating connection due to administrator command"),
    pg.CrashShutdownError("crash"),
    asyncpg.InterfaceError("connection is closed"),
    ConnectionResetError(),
    BrokenPipeError(),
]
# Met midway on a kept connection whose end the driver had not seen: lost for the lookup's
# retry, and no outage elsewhere (there, "another operation is in progress" is a bug).
MIDWAY_ONLY = [
    pg.InternalClientError("cannot perform operation: another operation is in progress"),
    asyncpg.PostgresConnectionError("connection exception"),
    pg.TransactionResolutionUnknownError("unknown"),
    pg.ProtocolViolationError("protocol"),
]
# The server takes no connection now: an outage, but nothing was lost.
REFUSED = [pg.CannotConnectNowError("starting up"), pg.TooManyConnectionsError("too many")]
# Input and bugs: never lost, never an outage (DataError is a subclass of InterfaceError).
NEITHER = [
    pg.DataError("invalid input for query argument $1"),
    pg.UniqueViolationError("duplicate key"),
    pg.OutdatedSchemaCacheError("cache"),
    ValueError("bad"),
]


@pytest.mark.parametrize("exc", ENDED, ids=lambda e: type(e).__name__)
def test_an_ended_connection_is_lost_for_both_and_an_outage(exc: BaseException) -> None:
    assert connection_lost(exc)
    assert connection_lost(exc, midway=True)
    assert is_outage(exc)


@pytest.mark.parametrize("exc", MIDWAY_ONLY, ids=lambda e: type(e).__name__)
def test_what_a_kept_connection_meets_midway_is_lost_only_there(exc: BaseException) -> None:
    assert connection_lost(exc, midway=True)
    assert not connection_lost(exc)
    assert not is_outage(exc)


@pytest.mark.parametrize("exc", REFUSED, ids=lambda e: type(e).__name__)
def test_a_refused_connection_is_an_outage_but_nothing_was_lost(exc: BaseException) -> None:
    assert is_outage(exc)
    assert not connection_lost(exc, midway=True)


@pytest.mark.parametrize("exc", NEITHER, ids=lambda e: type(e).__name__)
def test_bad_input_and_bugs_are_neither(exc: BaseException) -> None:
    assert not connection_lost(exc, midway=True)
    assert not is_outage(exc)


def test_an_outage_is_found_in_what_caused_the_error() -> None:
    try:
        try:
            raise pg.AdminShutdownError("terminating connection")
        except pg.AdminShutdownError as inner:
            raise RuntimeError("the lookup failed") from inner
    except RuntimeError as outer:
        assert is_outage(outer)
        assert not connection_lost(outer)  # the lookup's retry looks at its own error only


def test_sqlite_errors_of_a_busy_or_missing_file_are_an_outage_a_bad_statement_is_not(
    tmp_path: Path,
) -> None:
    """The caller lookup reads SQLite on a connection of its own (raw sqlite3, not through
    SQLAlchemy): a file locked past its wait, or gone, is an outage (503, retried), a
    statement SQLite refuses is a bug."""
    path = tmp_path / "crm.db"
    holder = sqlite3.connect(path, isolation_level=None)
    reader = sqlite3.connect(path, timeout=0)
    try:
        holder.execute("CREATE TABLE t (v TEXT)")
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sqlite3.OperationalError) as locked:
            reader.execute("SELECT * FROM t").fetchall()
        assert is_outage(locked.value)
        holder.execute("COMMIT")
        with pytest.raises(sqlite3.OperationalError) as bug:
            reader.execute("SELECT * FROM no_such_table").fetchall()
        assert not is_outage(bug.value)
    finally:
        holder.close()
        reader.close()
    with pytest.raises(sqlite3.OperationalError) as gone:
        sqlite3.connect(tmp_path / "no" / "such" / "dir.db").execute("SELECT 1")
    assert is_outage(gone.value)
