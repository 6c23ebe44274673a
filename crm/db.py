"""Engine and session factory, with the per-backend settings that make writes safe.

SQLite: WAL, foreign keys, a busy timeout, and `BEGIN IMMEDIATE` so that read-then-write
transactions of several workers serialize instead of failing or racing. PostgreSQL: advisory
transaction locks serialize events that touch the same identity.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import ARRAY, String, and_, any_, bindparam, event, literal, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_

from crm import affected
from crm.bulk import fetch
from crm.changes import Feed, LocalFeed, acting_rep
from crm.outage import is_outage
from crm.sqlite_trips import one_trip
from crm.tracking import TrackedSession, collected

log = logging.getLogger(__name__)


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        # The file of an on-disk SQLite database (what a second connection can open), else None.
        self.sqlite_file: str | None = (
            self.url.database
            if self.is_sqlite and self.url.database not in (None, "", ":memory:")
            else None
        )
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_size"] = pool_size
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if not self.is_sqlite:
            _ping_on_checkout(self.engine)
        self.read_engine = self.engine
        # PostgreSQL: statements that commit on their own (`autocommit`). No pre-ping: the
        # statement is its own check, and one that meets a lost connection fails its caller
        # as an outage (retried) and replaces the pool's connections.
        self.autocommit_engine: AsyncEngine | None = (
            None
            if self.is_sqlite
            else create_async_engine(self.url, echo=echo, isolation_level="AUTOCOMMIT", pool_size=2)
        )
        if self.is_sqlite:
            _configure_sqlite(self.engine, immediate=True)
            # Readers get their own engine with plain (deferred) transactions: in WAL mode
            # they never wait for the writer, nor the writer for them.
            self.read_engine = create_async_engine(self.url, **kwargs)
            _configure_sqlite(self.read_engine, immediate=False)
        self.sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=TrackedSession
        )
        # Where committed changes go (`crm.changes`); the service puts the Redis feed here.
        self.feed: Feed = LocalFeed()
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits on success, rolls back on any error. After the commit,
        the records it created or changed go to the change feed, with the numbers whose
        caller answers they may alter (read just before the commit)."""
        token = acting_rep.set(None)
        try:
            async with self.sessions() as session:
                async with session.begin():
                    yield session
                    await session.flush()
                    await affected.resolve(session)
                changes = collected(session.sync_session)
                if changes:
                    try:
                        self.feed.publish(changes)
                    except Exception:  # a hint lost; the write stands
                        log.exception("publishing %d changes failed", len(changes))
        finally:
            acting_rep.reset(token)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that only reads (lists, lookups): never holds the write lock."""
        async with self.read_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Any]:
        """An asyncpg connection (PostgreSQL) whose every statement commits on its own,
        outside any caller's transaction and without the pool's pre-ping: taking it costs no
        round trip."""
        assert self.autocommit_engine is not None, "PostgreSQL only"
        async with self.autocommit_engine.connect() as conn:
            raw = await conn.get_raw_connection()
            try:
                yield raw.driver_connection
            except Exception as exc:
                # Its statements go past SQLAlchemy, so the pool did not see their error: a
                # connection that failed is not reused, and after an outage (a restarted
                # server) none of the pool's is.
                await conn.invalidate(exc)
                if is_outage(exc):
                    await self.autocommit_engine.dispose()
                raise

    async def lock_identities(self, session: AsyncSession, keys: Iterable[str]) -> None:
        """Serialize transactions touching the same identities (sorted: no deadlocks)."""
        if self.is_sqlite:
            return  # BEGIN IMMEDIATE already serializes every writer
        ids = [lock_id(k) for k in sorted(set(keys))]
        if ids:
            # unnest keeps the array order, so every transaction locks in the same order.
            await fetch(session, "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) k", ids)

    async def try_lock_identities(self, session: AsyncSession, keys: Iterable[str]) -> set[str]:
        """PostgreSQL: lock those of `keys` no other transaction holds, without waiting; the
        keys held elsewhere are returned (the free ones stay locked until the commit even
        so). Waiting on no lock, a transaction that takes its locks so cannot be part of a
        deadlock through them, whatever their order."""
        by_id = {lock_id(k): k for k in set(keys)}
        if not by_id:
            return set()
        rows = await fetch(
            session,
            "SELECT k FROM unnest($1::bigint[]) k WHERE NOT pg_try_advisory_xact_lock(k)",
            sorted(by_id),
        )
        return {by_id[k] for (k,) in rows}

    def insert(self, model: Any) -> Any:
        """The backend's own INSERT (it knows ON CONFLICT DO NOTHING and RETURNING)."""
        return (sqlite_insert if self.is_sqlite else pg_insert)(model)

    async def ping(self) -> None:
        # A read: on SQLite it never waits for the writer's lock (a busy service's writer
        # would otherwise keep a second process's ping waiting).
        async with self.read_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def analyze(self) -> None:
        """Gather PostgreSQL's table statistics after a bulk load (a copy, a restore): it plans
        from them, and autovacuum may come to a table much later (or never, where it is off).
        SQLite plans without: nothing to do."""
        if self.is_sqlite:
            return
        async with self.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.autocommit_engine is not None:
            await self.autocommit_engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


def pairs_in(first: Any, second: Any, pairs: Iterable[tuple[Any, Any]], *, pg: bool = False) -> Any:
    """A WHERE clause for rows whose (first, second) may be among `pairs`: each column IN its
    own list. SQLite scans the whole table for a row-value IN list of more than one pair; two
    plain IN lists walk a (first, second) index. It also lets through cross pairs, so callers
    keep only the rows whose pair they asked for. `pg`: as `one_of` arrays."""
    pairs = list(pairs)
    return and_(
        one_of(first, {a for a, _ in pairs}, pg=pg), one_of(second, {b for _, b in pairs}, pg=pg)
    )


def one_of(column: Any, values: Iterable[Any], *, pg: bool = False) -> Any:
    """`column IN (values)`; on PostgreSQL (`pg`) `column = ANY($1)` with the values as one
    array: the statement's text is then the same for any number of values, so it is prepared
    and planned once per connection, not once per list length."""
    ordered = sorted(set(values))
    if pg:
        # No length in the array's type: a cast to varchar(n)[] would cut a longer value
        # down to one that may match.
        element = String() if isinstance(column.type, String) else column.type
        return column == any_(literal(ordered, ARRAY(element)))
    return column.in_(ordered)


def among(column: Any, name: str, *, pg: bool = False) -> Any:
    """`one_of` with the values left to a parameter `name` (a sorted list at execution): the
    statement can then be built once and reused, with no construction nor cache key per run."""
    if pg:
        element = String() if isinstance(column.type, String) else column.type
        return column == any_(bindparam(name, type_=ARRAY(element)))
    return column.in_(bindparam(name, expanding=True))


def is_pg(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_id(key: str) -> int:
    """A signed 64-bit id for an advisory lock, stable across processes."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _ping_on_checkout(engine: AsyncEngine) -> None:
    """The pool's pre-ping in one round trip: a simple-protocol query outside any transaction
    (SQLAlchemy's own wraps it in BEGIN … ROLLBACK). A connection that does not answer drops
    the pool's connections as pre-ping does, and the checkout takes a new one."""

    @event.listens_for(engine.sync_engine, "connect")
    def _fresh(_dbapi_conn: Any, record: Any) -> None:
        record.info["fresh"] = True  # just opened: no need to ask

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if record.info.pop("fresh", False):
            return
        try:
            # Not asyncpg's prepared statements: a pooler's transaction mode may hand the
            # next statement to another server connection. (asyncpg fails on an empty ";".)
            await_(dbapi_conn.driver_connection.execute("SELECT 1"))
        except Exception as exc:
            raise InvalidatePoolError() from exc


def _configure_sqlite(engine: AsyncEngine, *, immediate: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        one_trip(dbapi_conn)  # each statement in one trip to aiosqlite's thread
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own BEGIN is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
