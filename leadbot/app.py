"""The composition root: builds every part from the settings and runs them in one loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from channels.mail.spamfolders import ImapSpamFolders
from console.component import ConsoleComponent
from crm.config import CrmConfig, PipelineDef, StatusDef
from crm.db import Database
from crm.deadletters import AsyncJournalDeadLetters, RedisDeadLetters
from crm.dto import IntakeResult
from crm.facade import Crm
from crm.journal import JournaledQueue
from crm.looping import breathe
from crm.outage import is_outage
from crm.queue import (
    DONE,
    EventQueue,
    InProcessQueue,
    Outcome,
    QueueItem,
    RawInput,
    RedisSeen,
    RedisStreamQueue,
    RetryPolicy,
    outcome_of,
)
from crm.replies import ReplySenders
from crm.supervisor import Health, Run, Supervisor, TaskState, describe
from leadbot import heap
from leadbot.api.component import ApiComponent
from leadbot.logs import safe_redis_url, safe_url
from leadbot.loop import running_loop_name
from leadbot.metrics import Metrics
from leadbot.refusals import Refusals
from leadbot.settings import Settings, effective
from leadbot.web import (
    Check,
    Outages,
    edge_middleware,
    health_routes,
    prometheus_text,
)
from leadbot.wiring import COMPONENTS, Component, ComponentFactory, ConfiguresApp, change_feed
from matching.event import Channel, InboundEvent
from matching.model import CrmMode, MatchSettings
from matching.text import clean_event, clean_json, is_clean_json

log = logging.getLogger("leadbot")


# Turns a channel's `RawInput` into its event in the worker; None: nothing to record.
Converter = Callable[[RawInput], InboundEvent | None]


def crm_config(settings: Settings) -> CrmConfig:
    c = settings.crm
    return CrmConfig(
        match=MatchSettings(
            crm_mode=CrmMode(c.mode),
            repeat_sales=c.repeat_sales,
            traditional_mode=c.traditional_mode and not c.repeat_sales,
        ),
        default_region=c.default_region.upper(),
        currency=c.default_currency,
        lead_converts_to=tuple(c.lead_converts_to),
        lead_statuses=tuple(StatusDef(s.id, s.name, s.semantic) for s in c.lead_statuses),
        pipelines=tuple(
            PipelineDef(p.id, p.name, tuple(StatusDef(s.id, s.name, s.semantic) for s in p.stages))
            for p in c.pipelines
        ),
        escalation_minutes=c.escalation_minutes,
        timezone=c.timezone,
        lost_reasons=c.lost_reasons,
        admin_telegram_ids=tuple(settings.telegram.admins),
        web_session_hours=settings.console.session_hours,
    )


def aof_is_off(config_answer: Any) -> bool:
    """Whether Redis' answer to CONFIG GET appendonly says the append-only file is off."""
    value = config_answer.get("appendonly") or config_answer.get(b"appendonly")
    return value in ("no", b"no")


def journal_dir(settings: Settings, db: Database) -> Path | None:
    """The in-process queue's journal: `queue.journal_dir`; unset, `<file>.queue` next to a
    SQLite file and `leadbot-queue` next to the config file (else in the working directory)
    for another database; None when turned off ("") or for an in-memory SQLite database
    (nothing of it outlives the process anyway)."""
    configured = settings.queue.journal_dir
    if configured is not None:
        return Path(configured) if configured else None
    if db.is_sqlite:
        return Path(f"{db.sqlite_file}.queue") if db.sqlite_file else None
    return settings.base_dir / "leadbot-queue"


class Service:
    """One Leadbot process. `http=False` makes a bare worker (`leadbot worker`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        components: list[ComponentFactory] | None = None,
        http: bool = True,
        workers: int = 1,
        journal: bool = True,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        # Events received per channel since /metrics was last read (`received_counts`).
        self._received: dict[Channel, int] = {}
        self._gc_before: tuple[int, int, int] | None = None  # thresholds `heap.settle` replaced
        self.db = Database(
            settings.database.url,
            echo=settings.database.echo,
            pool_size=settings.database.pool_size,
        )
        self.redis: Redis | None = (
            Redis.from_url(settings.redis.url) if settings.redis.url else None
        )
        self.feed = change_feed(self.redis, settings.redis.stream)
        self.db.feed = self.feed
        self.crm = Crm(
            self.db, crm_config(settings), seen=RedisSeen(self.redis) if self.redis else None
        )
        if settings.mailboxes:  # the console's quarantine page lists and releases through it
            self.crm.quarantine.folders = ImapSpamFolders(
                settings.mailboxes,
                settings.crm.default_region,
                list_timeout=settings.console.quarantine_timeout,
            )
        self.queue: EventQueue = self._queue(journal)
        self.http = http
        self.workers = workers
        # By RawInput kind; channels register theirs when built (in every process, so a
        # `leadbot worker` converts what the web process queued).
        self.converters: dict[str, Converter] = {}
        # How a rep's answer reaches a customer, by channel: filled by the components as they
        # are built (before the loop below finishes), read by the bot.
        self.reply_senders: ReplySenders = {}
        self.components: list[Component] = []
        for factory in components if components is not None else default_components():
            comp = factory(self)
            if comp is not None:
                self.components.append(comp)
        # Called after every committed event (the bot wakes its notifier instead of waiting
        # for its next look at the outbox). Must not block.
        self.after_intake: list[Callable[[IntakeResult], None]] = []
        # Called when a channel wrote rep notifications itself (outside intake).
        self.outbox_listeners: list[Callable[[], None]] = []
        self._stop = asyncio.Event()
        # Every long-running task of the process, the components' too (`spawn`).
        self.supervisor = Supervisor()
        self.outages = Outages()
        self.refusals = Refusals(self.metrics.refused, note=self.crm.health.webhook)
        # Readiness of the components' own parts (a mailbox's login), by check name.
        self.component_checks: dict[str, Callable[[], Health]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def _queue(self, journal: bool) -> EventQueue:
        """Redis Streams when Redis is configured; else in process, journaled on disk unless
        `journal` is off (a one-shot run such as `leadbot ingest` has its input file)."""
        q = self.settings.queue
        policy = RetryPolicy(q.max_failures, q.retry_delay, q.retry_max_delay)
        dead = self.metrics.dead_letters.inc
        queue: EventQueue
        if self.redis is not None:
            r = self.settings.redis
            queue = RedisStreamQueue(
                self.redis,
                stream=r.stream,
                group=r.group,
                claim_idle_ms=r.claim_idle_ms,
                policy=policy,
                on_dead=dead,
            )
        elif journal and (directory := journal_dir(self.settings, self.db)) is not None:
            queue = JournaledQueue(
                directory, sync=q.journal_sync, policy=policy, on_dead=dead, linger=q.linger
            )
        else:
            if journal:
                log.warning(
                    "the in-process queue has no journal: events acknowledged but not yet "
                    "processed are lost if the process dies (set queue.journal_dir, or "
                    "redis.url)"
                )
            queue = InProcessQueue(policy=policy, on_dead=dead, linger=q.linger)
        self.metrics.dead_letters_waiting.set_function(lambda: queue.dead_waiting)
        # Channel health lists and retries them where this queue keeps them.
        if isinstance(queue, RedisStreamQueue):
            self.crm.health.dead = RedisDeadLetters(queue.redis, queue.stream)
        elif isinstance(queue, JournaledQueue):
            self.crm.health.dead = AsyncJournalDeadLetters(queue.dead)
        return queue

    # --- the event path -------------------------------------------------------------------

    # Every channel's input passes one of these three before it is acknowledged: text a
    # database can never store (NUL, lone surrogates, control characters) is cleaned here
    # (matching.text), so an acknowledged event cannot fail at every intake and be retried
    # forever.

    async def submit(self, event: InboundEvent) -> None:
        """Hand an event to the queue; channels call this and acknowledge right after."""
        self._count_received(event.channel)
        await self.queue.put(clean_event(event))

    def count_rejected(self, channel: Channel, n: int = 1) -> None:
        """Count input a channel acknowledged but could not turn into events (logged there)."""
        self.metrics.rejected.labels(channel.value).inc(n)

    def _count_received(self, channel: Channel) -> None:
        # Counted here, added to the metric when it is read (`received_counts`): a
        # prometheus counter takes a lock on every inc(), and this runs for every event.
        self._received[channel] = self._received.get(channel, 0) + 1

    def received_counts(self) -> None:
        """Add the events received since the last call to `metrics.received`."""
        counts, self._received = self._received, {}
        for channel, n in counts.items():
            self.metrics.received.labels(channel.value).inc(n)

    def submit_raw(
        self, channel: Channel, raw: RawInput, *, cleaned: bool = False
    ) -> Awaitable[None]:
        """Hand checked channel input to the queue; await it: it returns once queued. The
        worker converts it (`converters`). `cleaned`: the channel cleaned the document already
        (`matching.text.clean_json`). (The queue's own awaitable, not a coroutine around it.)"""
        self._count_received(channel)
        # A JSON text that shows nothing to clean spares the walk over the document.
        if not cleaned and (raw.text is None or not is_clean_json(raw.text)):
            doc = clean_json(raw.document())
            if doc is not raw.doc:  # the text as received is not the cleaned document's
                raw = RawInput(raw.kind, raw.received_at, doc, None)
        return self.queue.put(raw)

    async def process_now(self, event: InboundEvent) -> IntakeResult:
        """Synchronous path for protocols whose reply must carry the outcome."""
        self._count_received(event.channel)
        return await self.handle(clean_event(event))

    async def handle(self, event: InboundEvent) -> IntakeResult:
        result = (await self.handle_many([event]))[0]
        if isinstance(result, Exception):
            raise result
        return result

    async def handle_many(self, events: list[InboundEvent]) -> list[IntakeResult | Exception]:
        """Intake for a batch (one transaction), with metrics and the after-intake hooks.
        An event that met an outage (`is_outage`) is not counted as failed: it is retried."""
        started = time.perf_counter()
        results = await self.crm.intake.process_many(events)
        took = time.perf_counter() - started
        for event, result in zip(events, results, strict=True):
            channel = event.channel.value
            if isinstance(result, Exception):
                if not is_outage(result):
                    self.metrics.failed.labels(channel).inc()
                continue
            self.metrics.processed.labels(channel, result.outcome).inc()
            self.metrics.latency.labels(channel).observe(took)
            for hook in self.after_intake:
                hook(result)
        return results

    def outbox_written(self) -> None:
        """A channel committed outbox rows of its own: whoever delivers them looks now."""
        for listener in self.outbox_listeners:
            listener()

    async def _from_queue(self, items: list[QueueItem]) -> list[Outcome]:
        """The queue's handler: each item's outcome. A raw input no converter takes, or one
        whose converter raises, failed (after `queue.max_failures` tries it is a dead letter,
        put back with `leadbot dead retry` once its channel is configured or fixed); intake's
        errors are outages or failures by `outcome_of`."""
        outcomes = [DONE] * len(items)
        events: list[InboundEvent] = []
        slots: list[int] = []
        for k, item in enumerate(items):
            await breathe(k)  # converting (parsing numbers) is most of a webhook event's work
            if isinstance(item, RawInput):
                converter = self.converters.get(item.kind)
                if converter is None:  # logged by the queue, with the tries left
                    outcomes[k] = Outcome(
                        "failed", f"no converter for {item.kind!r} input (channel not configured?)"
                    )
                    continue
                try:
                    event = converter(item)
                except Exception as exc:  # a bug, not bad input (that was refused when received)
                    log.exception("converting a queued %r input failed", item.kind)
                    outcomes[k] = outcome_of(exc)
                    continue
                if event is None:  # nothing to record (an internal call, say)
                    continue
                item = event
            events.append(item)
            slots.append(k)
        if events:
            try:
                results = await self.handle_many(events)
            except Exception as exc:  # the batch as a whole: the database is down, say
                log.warning("intake of %d queued events failed: %s", len(events), exc)
                results = [exc] * len(events)
            for k, result in zip(slots, results, strict=True):
                if isinstance(result, Exception):
                    outcomes[k] = outcome_of(result)
        return outcomes

    # --- lifecycle ------------------------------------------------------------------------

    def spawn(
        self, name: str, run: Run, stop: asyncio.Event, *, once: bool = False
    ) -> asyncio.Task[None]:
        """Run background work under the supervisor (`crm.supervisor.TaskHost`)."""
        return self.supervisor.spawn(name, run, stop, once=once)

    def add_check(self, name: str, check: Callable[[], Health]) -> None:
        self.component_checks[name] = check

    def web_app(self) -> web.Application:
        app = web.Application(
            middlewares=[edge_middleware(self.outages, self.refusals)],
            client_max_size=2 * 1024 * 1024,
        )
        app.add_routes(health_routes(self.readiness_checks, self._metrics_text))
        sources: set[str] = set()
        for comp in self.components:
            added = app.add_routes(comp.routes())
            if isinstance(comp, ConfiguresApp):
                comp.configure(app)
            # The REST API and the console's pages are no webhook sources.
            if not isinstance(comp, ApiComponent | ConsoleComponent):
                sources.update(r.resource.canonical for r in added if r.resource is not None)
        self.refusals.sources = frozenset(sources)
        return app

    def effective_settings(self) -> dict[str, Any]:
        """The settings in force, every secret masked (the console's admin settings page)."""
        return effective(self.settings)

    def readiness_checks(self) -> dict[str, Check]:
        checks: dict[str, Check] = {"database": self._database_ready}
        if self.redis is not None:
            checks["redis"] = self._redis_ready
        checks["tasks"] = self._tasks_ready
        checks["backlog"] = self._backlog_ready
        for name, check in self.component_checks.items():
            checks[name] = _async(check)
        return checks

    async def _database_ready(self) -> Health:
        await self.db.ping()
        self.outages.end("database")  # a passing check ends an outage the webhooks met
        return Health(True)

    async def _redis_ready(self) -> Health:
        assert self.redis is not None
        await self.redis.ping()
        self.outages.end("queue (redis)")
        return Health(True)

    async def _tasks_ready(self) -> Health:
        return self.supervisor.health()

    async def _backlog_ready(self) -> Health:
        backlog = await self.queue.backlog()
        limit = self.settings.queue.max_backlog_age
        age = backlog.oldest_age
        detail = {
            "items": backlog.items,
            "oldest_age": None if age is None else round(age, 3),
            "max_age": limit,
        }
        return Health(age is None or age <= limit, detail)

    async def _metrics_text(self) -> bytes:
        self.received_counts()
        self._task_gauges(self.supervisor.states())
        for name, check in self.component_checks.items():
            if name.startswith(MAILBOX_CHECK):
                self.metrics.mailbox_connected.labels(name[len(MAILBOX_CHECK) :]).set(
                    1 if check().ok else 0
                )
        with contextlib.suppress(Exception):  # the queue's server may be down: keep the last
            await asyncio.wait_for(self._backlog_gauges(), 2)
        return prometheus_text(self.metrics.registry)

    def _task_gauges(self, states: list[TaskState]) -> None:
        for state in states:
            up = state.state in ("running", "done")
            self.metrics.task_up.labels(state.name).set(1 if up else 0)
            self.metrics.task_restarts.labels(state.name).set(state.restarts)

    async def _backlog_gauges(self) -> None:
        backlog = await self.queue.backlog()
        self.metrics.queue_depth.set(backlog.items)
        self.metrics.backlog_items.set(backlog.items)
        self.metrics.backlog_age.set(backlog.oldest_age or 0.0)

    def describe_setup(self) -> str:
        """What this process uses, for its first log line (no password, no token)."""
        database = safe_url(self.settings.database.url)
        if self.redis is not None and self.settings.redis.url:
            where = safe_redis_url(self.settings.redis.url)
            queue = f"Redis stream {self.settings.redis.stream} on {where}"
        elif isinstance(self.queue, JournaledQueue):
            queue = f"in process, journal {self.queue.directory}"
        else:
            queue = "in process, no journal"
        names = [type(c).__name__.removesuffix("Component").lower() for c in self.components]
        line = (
            f"database {database}; queue {queue}; components {', '.join(names) or 'none'}; "
            f"event loop {running_loop_name()}"
        )
        if self.http:
            line += f"; public URL {self.settings.http.public_url}"
        return line

    async def start(self) -> None:
        log.info("using %s", self.describe_setup())
        await self.crm.prepare()
        if self.redis is not None:
            await self.redis.ping()
            await self._warn_without_aof()
        await self.feed.start()
        await self.queue.open()  # a journal hands over what an earlier run left
        # Components first: a converter may need what its channel loads at start (the phone
        # channel's rep directory) before the workers hand it queued input.
        for comp in self.components:
            await comp.start()
        for k in range(self.workers):
            self._tasks.append(
                self.spawn(
                    f"queue.consumer-{k + 1}",
                    lambda: self.queue.run(self._from_queue, self._stop),
                    self._stop,
                )
            )
        self._tasks.append(self.spawn("metrics.gauges", self._gauges, self._stop))
        self._tasks.append(self.spawn("health.flush", self._flush_health, self._stop))
        if self.http:
            self._runner = web.AppRunner(
                self.web_app(),
                shutdown_timeout=self.settings.http.shutdown_timeout,
                access_log=None,
                auto_decompress=False,  # leadbot.web.decoded decodes bodies
            )
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.settings.http.host, self.settings.http.port)
            await site.start()
            # Port 0 asks the OS for a free port: the runner knows which one it bound.
            self.port = int(self._runner.addresses[0][1])
            log.info("listening on http://%s:%s", self.settings.http.host, self.port)
        self._gc_before = heap.settle()  # start-up's objects frozen, young passes rarer

    async def _warn_without_aof(self) -> None:
        """Redis acknowledges an XADD from memory: without the append-only file, a Redis
        restart loses what was acknowledged since its last snapshot."""
        assert self.redis is not None
        try:
            answer: Any = await self.redis.config_get("appendonly")
        except ResponseError as exc:  # CONFIG renamed or disabled (managed Redis): unknown
            log.info("cannot read Redis' persistence settings (%s)", describe(exc))
            return
        if aof_is_off(answer):
            log.warning(
                "Redis runs without its append-only file (appendonly no): events already "
                "acknowledged to a channel may be lost if Redis restarts; turn on "
                "`appendonly yes` in redis.conf"
            )

    async def _gauges(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # the next round tries again
                await self._backlog_gauges()
                self.metrics.outbox_pending.set(await self.crm.outbox.pending_count())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=5)

    async def _flush_health(self) -> None:
        """Webhook health notes reach the `state` table at most once a second per source."""
        while not self._stop.is_set():
            await self.crm.health.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=1)

    async def stop(self) -> None:
        """Stop accepting, finish in-flight work, close connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for comp in reversed(self.components):
            try:
                await comp.stop()
            except Exception:
                log.exception("stopping %s failed", type(comp).__name__)
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
        await self.supervisor.close()
        await self.crm.health.flush(everything=True)  # what is not written yet
        await self.queue.close()
        await self.feed.close()
        await self.crm.close()
        await self.db.dispose()
        if self._gc_before is not None:  # a process that goes on (tests, an embedder)
            heap.unsettle(self._gc_before)
            self._gc_before = None

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
            log.info("shutting down")
        finally:
            await self.stop()


# Readiness checks named `mailbox:<name>` are a mailbox's login (leadbot_mailbox_connected).
MAILBOX_CHECK = "mailbox:"


def _async(check: Callable[[], Health]) -> Check:
    async def run() -> Health:
        return check()

    return run


def default_components() -> list[ComponentFactory]:
    """Every channel, the REST API and the bot; each returns None when not configured."""
    return list(COMPONENTS)
