"""Tells an outage (a server that is down or unreachable: try again later, give nothing up)
from a failure that the same input would meet again (a bug, input the database refuses)."""

from __future__ import annotations

import errno

from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# The disk is full or gone: the journal cannot write, whatever the input.
_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS}


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
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError) and exc.errno in _DISK:
        return True
    # asyncpg's own classes, by name: no import of the driver for a check.
    name = type(exc).__name__
    return name in {
        "CannotConnectNowError",
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "AdminShutdownError",
        "CrashShutdownError",
        "TooManyConnectionsError",
        "InterfaceError",
    }
