"""The caller lookup's fast path, for the PBX that asks while the phone rings: the lookup
of `Telephony.caller` (`caller_sql`, one statement over indexed rows; on PostgreSQL the same
answer in a leaner statement, `one_sql`; on SQLite in steps, `sqlite_caller_row`) run on
read-only connections of its own, so a lookup costs one round trip (PostgreSQL) or a few
index probes on a budget (SQLite, see `_SqliteReader`), with millions of contacts. Where it
cannot have a reader of its own, `Telephony.caller` answers: one lookup, two ways to run it.

In front of both, a bounded cache of answers (`CallerCache`) kept right by the change feed:
a PBX asks about the same caller several times in a call (ring, answer, transfer), and a hit
is a dict lookup instead of a round trip.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import msgspec

from crm.changes import Change, Feed, Subscription
from crm.db import Database
from crm.models import Communication, Company, Contact, Deal, Lead, Rep
from crm.outage import connection_lost
from crm.services.telephony import (
    MAX_HOLDERS,
    CallerInfo,
    RepContact,
    Telephony,
    caller_info,
    sqlite_caller_row,
    warm_sqlite_steps,
)

# Connections a PostgreSQL lookup pool keeps: a lookup is one short round trip.
PG_POOL_SIZE = 2
# Most queued lookups one round trip answers (see `_PostgresReader`).
PG_BATCH_MAX = 32


# How long a lookup may hold the event loop before it is stopped and run on the reader's
# thread instead. A lookup over cached pages takes about 0.1 ms.
INLINE_BUDGET = 0.001
# SQLite virtual machine steps between looks at the clock: fewer than one step of the
# lookup takes (a few dozen each), or the clock is never looked at.
_BUDGET_STEPS = 20


_thread_usage: Callable[[], tuple[float, int]] | None = None
if sys.platform == "linux":  # per-thread usage is Linux's; elsewhere the budget is wall time
    import resource

    def _linux_thread_usage() -> tuple[float, int]:
        """This thread's CPU seconds and blocks read from the disk (not the page cache)."""
        return time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD).ru_inblock

    _thread_usage = _linux_thread_usage


def _retrieved(job: asyncio.Future[Any]) -> None:
    """Retrieve a thread job's exception: its caller may have given up waiting."""
    if not job.cancelled():
        job.exception()


def _end(conn: sqlite3.Connection) -> None:
    """End a lookup's read transaction a step failed in: left open, it would pin the WAL."""
    if conn.in_transaction:
        conn.rollback()


# What the budget's progress handler found in the lookup running inline (reset as each
# starts); a lookup stopped without "disk" was stopped by the CPU budget, by the clock alone
# (no per-thread usage) or by a locked file. Strings, not an Enum: an Enum member costs a
# class attribute look-up on every lookup.
_Verdict = Literal[
    "within",  # inside the deadline so far
    "preempted",  # past it by the clock only, the CPU was elsewhere: let finish
    "disk",  # stopped after a read from the disk: says nothing of the inline connection
]
# The inline connection between lookups: its transitions are `_SqliteReader._ended`'s.
_Inline = Literal["ready", "stopped", "warming"]


class _SqliteReader:
    """Read-only connections of its own on the service's SQLite file. A lookup is a few index
    probes, nearly all of it in SQLite's C code: about 0.1 ms over pages the OS has cached,
    less than the two thread hand-overs of running it elsewhere cost on a loaded machine
    (about 0.25 ms each, measured). So it runs on the event loop, on a budget: a progress
    handler stops one that takes longer than `budget` (cold pages, a busy file), and that one
    runs again on the reader's own thread, which may take as long as it needs. The loop is
    never held up for more than about the budget by the lookup itself. In WAL mode neither
    waits for writers.

    Over the budget by the clock only because the machine ran something else meanwhile (the
    thread was preempted, or waited for the GIL a thread-run lookup held: it neither used the
    budget's CPU time nor read from the disk), a lookup is let finish: running it again on
    the thread would cost its CPU again plus two hand-overs, each one more wait for a CPU, and
    the thread's work holds up the next inline lookups on the GIL. On a loaded machine that
    fed itself: most lookups went to the thread and piled up behind it (SQLite p99 4.5 ms →
    41.7 ms, issue 18). Such lookups are counted in `preempted`.

    No mmap: on large files it costs hundreds of page faults per lookup here (measured 0.7 ms
    against 0.07 ms of CPU per lookup with 1 million contacts).

    The budget's state: of the lookup running inline, its deadline, the thread's CPU time and
    disk reads at its start (`_started`) and what the progress handler found (`_Verdict`); of
    the inline connection across lookups, `_Inline` (with the warming's future while
    "warming"), its transitions in `_ended`.
    """

    def __init__(self, path: str, budget: float = INLINE_BUDGET) -> None:
        self.path = path
        self.budget = budget
        self.overran = 0  # lookups that went to the thread: a cold cache shows here
        self.preempted = 0  # over the budget's wall time only because the CPU was elsewhere
        self.warmed = 0  # warmings of the inline connection after a lookup it stopped
        self.keep_preempted = True  # False: the clock alone decides (as before; the bench)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="caller-lookup")
        # Warms the inline connection again after a stopped lookup: a thread of its own, so
        # that the warming never waits behind answers the reader's thread is still reading.
        self._warmer = ThreadPoolExecutor(1, thread_name_prefix="caller-lookup-warm")
        self._conn: sqlite3.Connection | None = None  # used by that thread only
        self._inline: sqlite3.Connection | None = None  # used on the event loop only
        self._deadline = 0.0
        self._started: tuple[float, int] = (0.0, 0)  # the inline lookup's CPU time, disk reads
        self._verdict: _Verdict = "within"
        self._state: _Inline = "ready"
        self._warming: asyncio.Future[None] | None = None  # set while "warming"

    def _open(self, *, busy_timeout: float) -> sqlite3.Connection:
        # The inline connection is opened on the thread (opening touches the file) and used
        # on the loop: never by two threads at once.
        conn = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA query_only=ON")
        return conn

    def _row(self, e164: str) -> tuple[Any, ...] | None:
        if self._conn is None:
            self._conn = self._open(busy_timeout=30)
        try:
            return sqlite_caller_row(self._conn, e164)
        except BaseException:
            _end(self._conn)
            raise

    def _open_inline(self) -> sqlite3.Connection:
        # Reading the schema and preparing the statement are first-use costs: paid here, on
        # the thread, so they never count against the budget. Here it may wait for a writer
        # (a locked file failed the first lookup with a 500); on the loop it never does: a
        # locked file is a reason to go to the thread.
        conn = self._open(busy_timeout=30)
        try:
            warm_sqlite_steps(conn)
            conn.execute("PRAGMA busy_timeout=0")
        except BaseException:
            conn.close()
            raise
        conn.set_progress_handler(self._over_budget, _BUDGET_STEPS)
        return conn

    def _rewarm(self) -> None:
        """Warm the inline connection again, off the budget, after a lookup the budget
        stopped. A schema another connection changed (a migration, `ANALYZE`) is read again
        by the next statement that runs: where that alone takes longer than the budget, every
        inline lookup would stop in it, leave the schema unread and go to the thread."""
        inline = self._inline
        if inline is None:
            return
        inline.set_progress_handler(None, 0)
        try:
            warm_sqlite_steps(inline)
        except sqlite3.Error:  # a locked file, say: the next inline lookup will see
            _end(inline)
        inline.set_progress_handler(self._over_budget, _BUDGET_STEPS)

    def _over_budget(self) -> bool:
        if time.perf_counter() <= self._deadline:
            return False
        if _thread_usage is None or not self.keep_preempted:
            return True
        cpu, reads = _thread_usage()
        if reads > self._started[1]:
            self._verdict = "disk"  # it waited for the disk
            return True
        if cpu - self._started[0] >= self.budget:
            return True  # slow by itself
        self._verdict = "preempted"
        return False

    @property
    def _waited(self) -> bool:
        """Whether the inline lookup went past the deadline without using it (so far)."""
        return self._verdict == "preempted"

    async def row(self, e164: str) -> tuple[Any, ...] | None:
        loop = asyncio.get_running_loop()
        if self._inline is None:
            conn = await loop.run_in_executor(self._thread, self._open_inline)
            if self._inline is None:
                self._inline = conn
            else:  # another lookup opened one meanwhile
                conn.close()
        while self._warming is not None:  # "warming": the warmer holds the inline connection
            await asyncio.wait((self._warming,))
        if _thread_usage is not None:
            self._started = _thread_usage()
        self._verdict = "within"
        self._deadline = time.perf_counter() + self.budget
        try:
            row = sqlite_caller_row(self._inline, e164)
        except sqlite3.OperationalError:  # interrupted (over budget), or the file is locked
            self.overran += 1
            _end(self._inline)
        else:
            self._ended(stopped=False)
            return row
        # Answered on the thread, which may wait for the disk for milliseconds.
        self._ended(stopped=True)
        job = loop.run_in_executor(self._thread, self._row, e164)
        job.add_done_callback(_retrieved)
        return await asyncio.shield(job)

    def _ended(self, *, stopped: bool) -> None:
        """The inline connection's transitions after a lookup on it (`_Inline`), and the one
        `_rewarmed` makes:

        - "ready" -> "stopped": a lookup on it was stopped, not by the disk.
        - "stopped" -> "ready": the next lookup on it finished.
        - "stopped" -> "warming": the next one was stopped too: warmed on the warmer.
        - "warming" -> "ready": warmed (`_rewarmed`). No lookup runs on it meanwhile: they
          wait for the warming, then run inline.
        - A lookup stopped after a read from the disk changes nothing: the inline connection
          was not the cause.

        Stopped by the CPU budget (a collection of the garbage collector ran in it, say) or
        a locked file twice in a row, it may be a schema to read again (see `_rewarm`). The
        warmer needs the GIL the loop holds, and the waits cost milliseconds: not after
        every stop. (Queued on the thread instead, each lookup waited for every answer
        ahead of it there, plus two hand-overs.)"""
        if not stopped:
            self.preempted += self._verdict == "preempted"
            self._state = "ready"
        elif self._verdict == "disk":
            pass
        elif self._state == "ready":
            self._state = "stopped"
        else:  # "stopped" ("warming" runs no lookup)
            self._state = "warming"
            self.warmed += 1
            loop = asyncio.get_running_loop()
            warming = self._warming = loop.run_in_executor(self._warmer, self._rewarm)
            warming.add_done_callback(self._rewarmed)

    def _rewarmed(self, warming: asyncio.Future[None]) -> None:
        self._state, self._warming = "ready", None
        _retrieved(warming)

    def _close(self) -> None:
        for conn in (self._conn, self._inline):
            if conn is not None:
                conn.close()
        self._conn = self._inline = None

    async def close(self) -> None:
        if self._warming is not None:
            await asyncio.wait((self._warming,))
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=False)
        self._warmer.shutdown(wait=False)


def one_sql() -> str:
    """`caller_sql`'s answer for one number (PostgreSQL; one text parameter), in a statement
    that costs the server less to start and run: the holders gathered into arrays (no
    materialised CTEs, unions or hash aggregates), each pick a lateral subquery that reads
    only the columns the answer needs (the deal and lead rows are not looked up again by
    id), and of the picks in order of precedence (the company's open deal, else the
    contact's) only as many run as it takes to find one. A randomized test holds it equal
    to `caller_sql`."""
    comms, leads = Communication.__tablename__, Lead.__tablename__
    contacts, companies = Contact.__tablename__, Company.__tablename__
    deals, reps = Deal.__tablename__, Rep.__tablename__

    def first_open(table: str, semantic: str, *wheres: str) -> str:
        # The first of the branches' newest open rows: Append runs its branches in order and
        # stops when the LIMIT has its row (a serial plan; the lookup's connections allow no
        # parallel one, see `_PostgresReader`).
        return "\n    UNION ALL\n    ".join(
            f"(SELECT x.id, x.title, x.responsible_id FROM {table} AS x "
            f"WHERE {where} AND x.{semantic} = 'process' "
            "ORDER BY x.modified_at DESC, x.id DESC LIMIT 1)"
            for where in wheres
        )

    def holders(owner_type: str) -> str:
        return f"array_agg(owner_id) FILTER (WHERE owner_type = '{owner_type}')"

    return f"""
SELECT c.id, c.name, co.id, co.title, l.id, l.title, d.id, d.title, hl.any_lead,
       r.id, r.name, r.active, r.extension, r.phone
FROM (
    SELECT {holders("contact")} AS contacts, {holders("company")} AS companies,
           {holders("lead")} AS leads
    FROM (
        SELECT owner_type, owner_id FROM {comms}
        WHERE kind = 'phone' AND value = $1::text
        ORDER BY id DESC LIMIT {MAX_HOLDERS}
    ) AS top
) AS h
CROSS JOIN LATERAL (
    SELECT array_agg(x.contact_id) AS contacts, array_agg(x.company_id) AS companies,
           count(*) > 0 AS any_lead
    FROM {leads} AS x WHERE x.id = ANY (h.leads)
) AS hl
LEFT JOIN LATERAL (
    SELECT x.id, x.name, x.company_id, x.responsible_id FROM {contacts} AS x
    WHERE x.id = ANY (h.contacts || hl.contacts)
    ORDER BY x.modified_at DESC, x.id DESC LIMIT 1
) AS c ON true
LEFT JOIN LATERAL (
    SELECT x.id, x.title, x.responsible_id FROM {companies} AS x
    WHERE x.id = ANY (CASE WHEN c.company_id IS NOT NULL THEN ARRAY[c.company_id]
                           ELSE h.companies || hl.companies END)
    ORDER BY x.modified_at DESC, x.id DESC LIMIT 1
) AS co ON true
LEFT JOIN LATERAL (
    {first_open(deals, "stage_semantic", "x.company_id = co.id", "x.contact_id = c.id")}
    LIMIT 1
) AS d ON true
LEFT JOIN LATERAL (
    {
        first_open(
            leads,
            "status_semantic",
            "x.id = ANY (h.leads)",
            "x.company_id = co.id",
            "x.contact_id = c.id",
        )
    }
    LIMIT 1
) AS l ON true
LEFT JOIN {reps} AS r
    ON r.id = COALESCE(d.responsible_id, l.responsible_id, c.responsible_id, co.responsible_id)
"""


def batch_sql() -> str:
    """`one_sql` for many numbers at once (PostgreSQL; one parameter, a text array): a
    row per number, led by the number's position in the array (from 1)."""
    one = one_sql().replace("$1::text", "n.e164")
    return (
        "SELECT n.ord, x.* FROM unnest($1::text[]) WITH ORDINALITY AS n(e164, ord) "
        f"CROSS JOIN LATERAL ({one}) AS x"
    )


class _PostgresReader:
    """Up to `PG_POOL_SIZE` connections of its own: one round trip per lookup with a
    statement asyncpg prepared once per connection, and lookups never wait for a connection
    intake holds.

    Lookups that find every connection busy queue, and the next connection given back
    answers all of them (up to `PG_BATCH_MAX`) in one round trip of the same statement over
    an array of numbers. A PBX's calls come in bursts: one by one, a burst's last lookup
    waited for a round trip per two lookups ahead of it, each costing the server about as
    much again in starting and ending the statement as in its index probes; together the
    burst costs one round trip and the probes. A lookup that finds a connection idle goes at
    once, so nothing waits to fill a batch: alone, with the statement for one number
    (`one_sql`), as the array's (a lateral join over `unnest`) costs the server more to
    start and run, and this process more to encode.

    Not an asyncpg pool: its acquire and release (a task per release, to shield it from
    cancellation, and the session reset) cost this process more CPU than the round trip
    itself. A lookup only reads and sets nothing, so its connection goes back as it is;
    one whose lookup failed or was cancelled midway is in an unknown state and is closed
    (an error the server reported may come just before it ends the connection). A queued
    lookup that is cancelled is skipped; the batch in flight runs in a task of its
    own, so no caller's cancellation cuts it short for the others."""

    def __init__(self, db: Database) -> None:
        _, kwargs = db.engine.dialect.create_connect_args(db.url)
        # Options of SQLAlchemy's asyncpg dialect, not of asyncpg.connect.
        for key in ("prepared_statement_cache_size", "prepared_statement_name_func"):
            kwargs.pop(key, None)
        # The generic plan is the one every number gets anyway. Left to choose, the server
        # prices it for an array of 10 (its guess for an array parameter), finds it dearer
        # than the custom plans of one number, and plans the statement anew on every
        # execution, which costs more than running it.
        settings = dict(kwargs.pop("server_settings", None) or {})
        settings["plan_cache_mode"] = "force_generic_plan"
        # A serial plan: `one_sql` takes the first row its ordered branches give.
        settings["max_parallel_workers_per_gather"] = "0"
        self._connect = {**kwargs, "server_settings": settings}
        self._sql = batch_sql()
        self._one_sql = one_sql()
        self._idle: list[asyncpg.Connection] = []
        self._open = 0  # connections open or being opened
        # Lookups waiting for a connection: (number, its answer's future), oldest first.
        self._queue: deque[tuple[str, asyncio.Future[tuple[Any, ...] | None]]] = deque()
        self._batches: set[asyncio.Task[None]] = set()  # answering the queue
        self.batched = 0  # lookups answered from the queue (in a round trip with others)
        self._closed = False

    async def row(self, e164: str) -> tuple[Any, ...] | None:
        con: asyncpg.Connection | None = None
        while self._idle:
            kept = self._idle.pop()
            if not kept.is_closed():
                con = kept
                break
            self._open -= 1  # the server closed it meanwhile
        kept = con is not None
        if con is None:
            if self._open >= PG_POOL_SIZE:
                answer: asyncio.Future[tuple[Any, ...] | None]
                answer = asyncio.get_running_loop().create_future()
                self._queue.append((e164, answer))
                return await answer  # cancelled: the batch skips it
            self._open += 1
            try:
                con = await asyncpg.connect(**self._connect)
            except BaseException:
                self._give_back(None)
                raise
        try:
            row = await con.fetchrow(self._one_sql, e164)
        except BaseException as exc:
            con.terminate()
            self._give_back(None)
            if kept and connection_lost(exc, midway=True):  # ended while idle (a restart): again
                return await self.row(e164)
            raise
        self._give_back(con)
        return None if row is None else tuple(row)

    def _give_back(self, con: asyncpg.Connection | None) -> None:
        """A connection (None: the room for one) back: to the queued lookups, else idle;
        closed once the reader is."""
        if self._queue and (con is not None or not self._closed):
            # The queued lookups take it (in place of None, a new one opened for them).
            task = asyncio.get_running_loop().create_task(self._answer_queue(con))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
            return
        if con is not None and not self._closed:
            self._idle.append(con)
            return
        if con is not None:
            con.terminate()
        self._open -= 1
        for _, answer in self._queue:  # the reader is closed: nobody will answer them
            if not answer.done():
                answer.set_exception(asyncpg.InterfaceError("the caller lookup is closed"))
        self._queue.clear()

    async def _answer_queue(self, con: asyncpg.Connection | None) -> None:
        """Answer the queued lookups, `PG_BATCH_MAX` per round trip, then give the
        connection back. A failure fails every lookup queued and closes the connection."""
        batch: list[tuple[str, asyncio.Future[tuple[Any, ...] | None]]] = []
        try:
            if con is None:
                con = await asyncpg.connect(**self._connect)
            while self._queue:
                batch = []
                while self._queue and len(batch) < PG_BATCH_MAX:
                    item = self._queue.popleft()
                    if not item[1].done():
                        batch.append(item)
                if not batch:
                    continue
                rows = await con.fetch(self._sql, [e164 for e164, _ in batch])
                answers = {row[0]: tuple(row)[1:] for row in rows}
                for k, (_, answer) in enumerate(batch, 1):
                    if not answer.done():
                        answer.set_result(answers.get(k))
                self.batched += len(batch)
        except BaseException as exc:
            failed = [*batch, *self._queue]
            self._queue.clear()
            for _, answer in failed:
                if not answer.done():
                    if isinstance(exc, asyncio.CancelledError):
                        answer.cancel()
                    else:
                        answer.set_exception(exc)
            if con is not None:
                con.terminate()
            self._give_back(None)
            if not isinstance(exc, Exception):
                raise
            return
        self._give_back(con)

    async def close(self) -> None:
        self._closed = True
        if self._batches:  # each gives its connection back (closed) when done
            await asyncio.gather(*self._batches, return_exceptions=True)
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        await asyncio.gather(*(con.close() for con in idle), return_exceptions=True)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """How many answers the lookup keeps, and for how long at most (seconds)."""

    size: int = 10_000
    ttl: float = 30.0  # the bound on staleness when the change feed loses a change unnoticed
    negative_ttl: float = 5.0  # "nobody has this number": a new caller should show soon


# Changes that cannot alter any caller answer (an activity names no number, record or rep
# the answer shows).
_IRRELEVANT = frozenset({"activity"})
# How many recent drops the cache remembers, so that a lookup which started before some of
# them can tell whether its number was among them (older than that: its answer is not kept).
_DROPS_KEPT = 1024

DEFAULT_CACHE = CacheSettings()


class CallerCache:
    """Answers by E.164 (negative ones too), least recently used dropped beyond `size`.

    Correct by the change feed, read on each lookup (no task of its own): a change of a lead,
    deal, contact or company drops the answers of the numbers it says it may alter
    (`Change.numbers`, see `crm.affected`), every answer when it does not say (a change of
    a company with many contacts, a message of an older process); so does `Missed`. While
    the feed is not live (Redis away) nothing is answered from or put in the cache. Answers
    also expire after `ttl` (`negative_ttl` for unknown numbers): that bounds staleness where
    a loss goes unnoticed (a process that died between its commit and its publish, a rep's
    own details, which the feed does not carry). A lookup that started before a drop of its
    number (or of all) does not put its answer in.
    """

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self.generation = 0  # bumped by every drop of some answers or all
        self.hits = self.misses = 0
        self.clears = 0  # drops of every answer
        # number -> its answer, flat and untracked by the garbage collector (`_Entry`).
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # (generation, numbers dropped then; None: all), the latest `_DROPS_KEPT`.
        self._drops: deque[tuple[int, frozenset[str] | None]] = deque(maxlen=_DROPS_KEPT)
        self._feed: Feed | None = None
        self._sub: Subscription | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.clears += 1
        self._dropped(None)

    def drop(self, numbers: Iterable[str]) -> None:
        """Forget the answers of these numbers."""
        gone = frozenset(numbers)
        for number in gone:
            self._entries.pop(number, None)
        self._dropped(gone)

    def _dropped(self, numbers: frozenset[str] | None) -> None:
        self.generation += 1
        self._drops.append((self.generation, numbers))

    def _dropped_since(self, generation: int, e164: str) -> bool:
        """Whether the answer of `e164` was dropped after `generation` (or may have been)."""
        if generation == self.generation:
            return False
        if not self._drops or self._drops[0][0] > generation + 1:
            return True  # the drops since then are no longer all known
        for gen, numbers in reversed(self._drops):
            if gen <= generation:
                break
            if numbers is None or e164 in numbers:
                return True
        return False

    def _current(self, feed: Feed) -> bool:
        """Apply what the feed delivered since the last look; whether the cache may be used."""
        if feed is not self._feed:  # first use, or the database was given another feed
            self.close()
            self._feed, self._sub = feed, feed.subscribe()
            self.clear()
        assert self._sub is not None
        numbers: set[str] = set()
        everything = False
        while (item := self._sub.get_nowait()) is not None:
            if not isinstance(item, Change):  # Missed
                everything = True
            elif item.kind not in _IRRELEVANT:
                if item.numbers is None:
                    everything = True
                else:
                    numbers.update(item.numbers)
        if everything:
            self.clear()
        elif numbers:
            self.drop(numbers)
        if not feed.live:
            if self._entries:
                self.clear()
            return False
        return True

    def get(self, feed: Feed, e164: str) -> tuple[CallerInfo | None] | None:
        """The cached answer (in a tuple: None is an answer too), or None."""
        if not self._current(feed):
            return None
        entry = self._entries.get(e164)
        if entry is None or entry.expires < time.monotonic():
            self.misses += 1
            return None
        self._entries.move_to_end(e164)
        self.hits += 1
        return (_unpack(entry),)

    def put(self, feed: Feed, e164: str, info: CallerInfo | None, generation: int) -> None:
        """Keep an answer read while the cache stood at `generation`, unless the answer of
        its number was dropped since (then it may be stale)."""
        if not self._current(feed) or self._dropped_since(generation, e164):
            return
        ttl = self.settings.ttl if info is not None else self.settings.negative_ttl
        self._entries[e164] = _pack(time.monotonic() + ttl, info)
        self._entries.move_to_end(e164)
        if len(self._entries) > self.settings.size:
            self._entries.popitem(last=False)

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
        self._feed = self._sub = None
        self.clear()


class _Entry(msgspec.Struct, gc=False):
    """A cached answer, flat: plain values only, so no reference cycle can form and the
    garbage collector need not track it. A tuple is tracked from its making until a
    collection finds it holds plain values: every answer kept counted towards the next
    young-generation collection, a pause on the event loop (misses made them more frequent
    than lookups without the cache)."""

    expires: float
    number: str | None  # None: nobody has the number
    contact_id: int | None = None
    contact_name: str | None = None
    company_id: int | None = None
    company_name: str | None = None
    lead_id: int | None = None
    lead_title: str | None = None
    deal_id: int | None = None
    deal_title: str | None = None
    rep_id: int | None = None  # None: no responsible rep
    rep_name: str = ""
    rep_active: bool = False
    rep_extension: str | None = None
    rep_phone: str | None = None


def _pack(expires: float, info: CallerInfo | None) -> _Entry:
    if info is None:
        return _Entry(expires, None)
    rep = info.responsible
    entry = _Entry(
        expires,
        info.number,
        info.contact_id,
        info.contact_name,
        info.company_id,
        info.company_name,
        info.lead_id,
        info.lead_title,
        info.deal_id,
        info.deal_title,
    )
    if rep is not None:
        entry.rep_id, entry.rep_name, entry.rep_active = rep.id, rep.name, rep.active
        entry.rep_extension, entry.rep_phone = rep.extension, rep.phone
    return entry


def _unpack(entry: _Entry) -> CallerInfo | None:
    if entry.number is None:
        return None
    rep = None
    if entry.rep_id is not None:
        rep = RepContact(
            entry.rep_id, entry.rep_name, entry.rep_active, entry.rep_extension, entry.rep_phone
        )
    return CallerInfo(
        entry.number,
        entry.contact_id,
        entry.contact_name,
        entry.company_id,
        entry.company_name,
        entry.lead_id,
        entry.lead_title,
        entry.deal_id,
        entry.deal_title,
        rep,
    )


class CallerLookup:
    """`caller(e164)` as `Telephony.caller` answers it, in one statement (see the module),
    behind a `CallerCache` (on unless `configure_cache(None)`).

    The reader is opened at the first lookup and dropped by `close` (the next lookup opens a
    new one). An in-memory SQLite database cannot be opened a second time: there, and on a
    driver other than asyncpg, the lookup goes through `Telephony`.
    """

    def __init__(
        self, db: Database, telephony: Telephony, cache: CacheSettings | None = DEFAULT_CACHE
    ) -> None:
        self.db = db
        self.telephony = telephony
        self._reader: _SqliteReader | _PostgresReader | None = None
        self.cache: CallerCache | None = None
        self.configure_cache(cache)

    def configure_cache(self, settings: CacheSettings | None) -> None:
        """Cache answers with these settings; None: every lookup reads the database."""
        if self.cache is not None:
            self.cache.close()
        self.cache = CallerCache(settings) if settings is not None else None

    def _open(self) -> _SqliteReader | _PostgresReader | None:
        db = self.db
        if db.sqlite_file is not None:
            self._reader = _SqliteReader(db.sqlite_file)
        elif not db.is_sqlite and db.url.get_driver_name() == "asyncpg":
            self._reader = _PostgresReader(db)
        return self._reader

    async def caller(self, e164: str) -> CallerInfo | None:
        cache = self.cache
        if cache is None:
            return await self._read(e164)
        feed = self.db.feed
        hit = cache.get(feed, e164)
        if hit is not None:
            return hit[0]
        generation = cache.generation
        info = await self._read(e164)
        cache.put(feed, e164, info, generation)
        return info

    async def _read(self, e164: str) -> CallerInfo | None:
        reader = self._reader or self._open()
        if reader is None:
            return await self.telephony.caller(e164)
        return caller_info(e164, await reader.row(e164))

    async def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()
