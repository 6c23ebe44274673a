"""Tells an outage (a server that is down or unreachable: try again later, give nothing up)
from a failure that the same input would meet again (a bug, input the database refuses)."""

from __future__ import annotations

import errno
import sqlite3

from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# The disk is full or gone: the journal cannot write, whatever the input.
_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS}

# asyncpg's errors, by class name: no import of the driver for a check. Exact names, not a
# base class's: asyncpg's InterfaceError has DataError (bad input) among its subclasses.
# The connection was there and is gone: the server ended it (a restart, an administrator, a
# crash) or it broke.
_ENDED = frozenset(
    {
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "AdminShutdownError",
        "CrashShutdownError",
        "InterfaceError",
    }
)
# The server is there but takes no connection now: an outage, though no connection was lost.
_REFUSED = frozenset({"CannotConnectNowError", "TooManyConnectionsError"})
# What a statement meets on a connection the server ended while it lay idle, before the
# driver saw the end: any connection exception (SQLSTATE class 08, asyncpg's
# PostgresConnectionError and its subclasses), or "another operation is in progress" (the
# protocol found mid-error). Elsewhere the latter is a bug, not an outage.
_CLASS_08 = "PostgresConnectionError"
_MIDWAY = frozenset({"InternalClientError"})


def connection_lost(exc: BaseException, *, midway: bool = False) -> bool:
    """True when `exc` itself (not what caused it) says its server connection is gone. With
    `midway`, for a statement on a connection kept idle since its last use (a reader retries
    it once on a new connection), also what the driver raises when it meets the end there."""
    if isinstance(exc, ConnectionError):
        return True
    name = type(exc).__name__
    if name in _ENDED:
        return True
    if not midway:
        return False
    return name in _MIDWAY or any(c.__name__ == _CLASS_08 for c in type(exc).__mro__)


# SQLite's result codes (extended ones start the same) for a file that is busy or not there,
# not for a statement it refuses.
_SQLITE_UNAVAILABLE = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_CANTOPEN",
    "SQLITE_FULL",
)


def is_outage(exc: BaseException) -> bool:
    """True when `exc`, or what caused it, says a server or the disk is unavailable."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _one(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _one(exc: BaseException) -> bool:
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | BusyLoadingError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        # SQLite's "database is locked" is an OperationalError too: a busy writer, retried.
        return True
    if isinstance(exc, TimeoutError) or connection_lost(exc):
        return True
    if isinstance(exc, sqlite3.OperationalError):  # raw, from the caller lookup's own reader
        return exc.sqlite_errorname.startswith(_SQLITE_UNAVAILABLE)
    if isinstance(exc, OSError) and exc.errno in _DISK:
        return True
    return type(exc).__name__ in _REFUSED
