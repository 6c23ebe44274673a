"""The rep bot as a service component: PTB's Application inside the service's event loop.

Start-up never waits for Telegram: connecting runs in the background with backoff, so intake
keeps working while Telegram is unreachable and the outbox simply fills up. Long polling is the
default; in webhook mode our own HTTP server takes Telegram's POSTs (secret token checked) and
feeds them to the Application.

Customers write to the same bot (anyone who is not a rep), or, with `telegram.customer_token`,
to a second bot: a second Application built the same way, run side by side with the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from aiohttp import web
from telegram import Update
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder

from bot.actions import Actions
from bot.cards import Cards
from bot.clock import Clock, SystemClock
from bot.command_menu import CommandMenus, default_menu
from bot.commands import Commands
from bot.customers import CustomerDesk
from bot.handlers import Handlers
from bot.notifier import CardCounters, Notifier
from bot.relay import Relay
from bot.reminders import Duties
from bot.request import GET_UPDATES_POOL_SIZE, POOL_SIZE, CleaningRequest
from bot.settings import TelegramSettings
from bot.sync import CardSync
from bot.telegram_replies import TelegramReplies
from crm.config import ConfigError
from crm.dto import IntakeResult
from crm.facade import Crm
from crm.replies import ReplySenders
from crm.supervisor import TaskHost
from httpkit import BadInput, json_error, read_json
from matching.event import Channel, InboundEvent
from matching.text import clean_json

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
UPDATES = ["message", "callback_query"]
CUSTOMER_UPDATES = ["message"]
CUSTOMER_HOOK = "/customers"  # appended to webhook_path for the customer bot
FIRST_CONNECT_DELAY = 1.0
MAX_CONNECT_DELAY = 60.0
STOP_GRACE = 5.0


class _Http(Protocol):
    @property
    def public_url(self) -> str: ...


class _Console(Protocol):
    @property
    def enabled(self) -> bool: ...


class BotSettings(Protocol):
    """The settings sections the bot reads."""

    @property
    def telegram(self) -> TelegramSettings: ...

    @property
    def http(self) -> _Http: ...

    @property
    def console(self) -> _Console: ...


class BotMetrics(Protocol):
    @property
    def cards(self) -> CardCounters: ...


class BotHost(TaskHost, Protocol):
    """What the bot needs from the process that runs it (`leadbot.app.Service`)."""

    @property
    def settings(self) -> BotSettings: ...

    @property
    def crm(self) -> Crm: ...

    @property
    def metrics(self) -> BotMetrics: ...

    @property
    def http(self) -> bool: ...

    # Called after every committed event; must not block.
    @property
    def after_intake(self) -> list[Callable[[IntakeResult], None]]: ...

    # Called when a channel wrote rep notifications itself (outside intake).
    @property
    def outbox_listeners(self) -> list[Callable[[], None]]: ...

    # How a rep's answer reaches a customer, by channel; channels add theirs, the bot adds
    # Telegram's.
    @property
    def reply_senders(self) -> ReplySenders: ...

    async def submit(self, event: InboundEvent) -> None: ...


class BotComponent:
    def __init__(self, service: BotHost, clock: Clock) -> None:
        settings = service.settings.telegram
        assert settings.token is not None
        self.service = service
        self.tasks: TaskHost = service
        self.settings = settings
        self.clock = clock
        crm = service.crm
        self.app = self._build(settings.token.get_secret_value())
        # The customer-facing bot, when it is a separate one.
        self.customer_app = (
            self._build(settings.customer_token.get_secret_value())
            if settings.customer_token is not None
            else None
        )
        tz = ZoneInfo(crm.config.timezone)
        self.cards = Cards(crm, tz, service.reply_senders)
        sync = CardSync(crm, self.cards, clock)
        self.notifier = Notifier(
            crm,
            self.app.bot,
            self.cards,
            clock,
            poll_interval=settings.outbox_poll_interval,
            retries=settings.send_retries,
            max_backoff=settings.max_backoff,
            sync=sync,
            counters=service.metrics.cards,
        )
        self.duties = Duties(
            crm.followups,
            clock,
            interval=settings.duties_interval,
            escalate_after=timedelta(minutes=crm.config.escalation_minutes),
            max_escalations=settings.escalation_max,
            queued=self.notifier.wake,
            team=crm.team,
            digest_at=settings.digest_at,
            tz=tz,
            tidy=(crm.outbox.forget_old_headlines, crm.prompts.forget_old),
        )
        commands = Commands(crm, self.cards, clock, tz)
        customer_bot = (self.customer_app or self.app).bot
        service.reply_senders[Channel.TELEGRAM.value] = TelegramReplies(customer_bot)
        actions = Actions(
            crm,
            self.cards,
            commands,
            clock,
            tz,
            settings.junk_reasons,
            self.notifier.wake,
            relay=Relay(self.cards, crm.messages, service.reply_senders),
        )
        self.desk = CustomerDesk(
            service.submit, crm.chat_states, clock, ask_phone=settings.ask_phone
        )
        shared = self.desk if self.customer_app is None else None
        public = service.settings.http.public_url.rstrip("/")
        web_url = public if service.settings.console.enabled and public else None
        self.menus = CommandMenus(crm, self.app.bot, shared=self.customer_app is None)
        self.handlers = Handlers(
            crm,
            commands,
            actions,
            sync,
            customers=shared,
            web_url=web_url,
            on_join=self.menus.sync,
        )
        self.handlers.register(self.app)
        if self.customer_app is not None:
            self.desk.register(self.customer_app)
            self.customer_app.add_error_handler(self.handlers.error)
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _build(self, token: str) -> Application[Any, Any, Any, Any, Any, Any]:
        builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any] = (
            Application.builder()
            .token(token)
            .base_url(self.settings.base_url)
            .base_file_url(self.settings.base_file_url)
            # What reps and customers send is cleaned like every channel's input.
            .request(CleaningRequest(connection_pool_size=POOL_SIZE))
            .get_updates_request(CleaningRequest(connection_pool_size=GET_UPDATES_POOL_SIZE))
        )
        if self.settings.mode == "webhook":
            builder = builder.updater(None)
        return builder.build()

    def _apps(self) -> list[tuple[Application[Any, Any, Any, Any, Any, Any], list[str], str]]:
        """Each Application with the updates it wants and its webhook path."""
        path = self.settings.webhook_path
        apps = [(self.app, UPDATES, path)]
        if self.customer_app is not None:
            apps.append((self.customer_app, CUSTOMER_UPDATES, path.rstrip("/") + CUSTOMER_HOOK))
        return apps

    # --- component protocol -----------------------------------------------------------------

    def routes(self) -> list[web.AbstractRouteDef]:
        if self.settings.mode != "webhook":
            return []
        return [web.post(path, self._webhook(app)) for app, _, path in self._apps()]

    async def start(self) -> None:
        self._stop.clear()
        # Events committed in this process wake the notifier at once; rows written by other
        # worker processes are found by the outbox poll.
        self.service.after_intake.append(self._wake_notifier)
        self.service.outbox_listeners.append(self.notifier.wake)
        # A rep who joins, changes role or is deactivated here gets the new menu at once.
        self.service.crm.reps.on_change.append(self.menus.wake)
        spawn, stop = self.tasks.spawn, self._stop
        interval = self.settings.duties_interval
        self._tasks.append(spawn("bot.duties", lambda: self.duties.run(stop), stop))
        self._tasks.append(spawn("bot.desk", lambda: self.desk.run(stop, interval), stop))
        # Connecting ends once the bot is live; it starts the notifier then.
        self._tasks.append(spawn("bot.connect", self._connect, stop, once=True))

    def _wake_notifier(self, _result: object) -> None:
        self.notifier.wake()

    async def stop(self) -> None:
        if self._wake_notifier in self.service.after_intake:
            self.service.after_intake.remove(self._wake_notifier)
        if self.notifier.wake in self.service.outbox_listeners:
            self.service.outbox_listeners.remove(self.notifier.wake)
        if self.menus.wake in self.service.crm.reps.on_change:
            self.service.crm.reps.on_change.remove(self.menus.wake)
        self._stop.set()
        # Let a delivery round finish (a card sent but not marked would be sent again).
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=STOP_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.ready.clear()
        await self._halt()
        for app, _, _ in self._apps():
            with contextlib.suppress(Exception):
                await app.shutdown()

    async def wait_ready(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.ready.wait(), timeout)

    # --- connecting -----------------------------------------------------------------------------

    async def _connect(self) -> None:
        delay = FIRST_CONNECT_DELAY
        while not self._stop.is_set():
            try:
                await self._go_live()
                break
            except (TelegramError, OSError) as err:
                log.warning("Telegram not reachable (%s); retrying in %.0fs", err, delay)
                await self._halt()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, MAX_CONNECT_DELAY)
        else:
            return
        stop = self._stop
        self._tasks.append(self.tasks.spawn("bot.notifier", lambda: self.notifier.run(stop), stop))
        interval = self.settings.duties_interval
        self._tasks.append(
            self.tasks.spawn("bot.menus", lambda: self.menus.run(stop, interval), stop)
        )
        self.ready.set()
        log.info("Telegram bot @%s is running (%s)", self.app.bot.username, self.settings.mode)

    async def _go_live(self) -> None:
        """Every step may fail while Telegram is unreachable; each is safe to repeat."""
        for app, updates, path in self._apps():
            await app.initialize()  # getMe; does nothing once it succeeded
            if app is self.app:
                await self.menus.register()
            else:
                await default_menu(app.bot)
            if not app.running:
                await app.start()
            if self.settings.mode == "webhook":
                await self._set_webhook(app, updates, path)
            elif app.updater is not None and not app.updater.running:
                await app.updater.start_polling(
                    timeout=self.settings.polling_timeout, allowed_updates=updates
                )

    async def _halt(self) -> None:
        """Undo a half-done start (polling, the update processing); keep the session."""
        for app, _, _ in self._apps():
            with contextlib.suppress(Exception):
                if app.updater is not None and app.updater.running:
                    await app.updater.stop()
            with contextlib.suppress(Exception):
                if app.running:
                    await app.stop()

    async def _set_webhook(
        self, app: Application[Any, Any, Any, Any, Any, Any], updates: list[str], path: str
    ) -> None:
        secret = self.settings.webhook_secret
        assert secret is not None
        base = self.settings.webhook_url or (
            self.service.settings.http.public_url.rstrip("/") + self.settings.webhook_path
        )
        url = base if app is self.app else base.rstrip("/") + CUSTOMER_HOOK
        await app.bot.set_webhook(
            url, secret_token=secret.get_secret_value(), allowed_updates=updates
        )

    # --- webhook ------------------------------------------------------------------------------

    def _webhook(
        self, app: Application[Any, Any, Any, Any, Any, Any]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def receive(request: web.Request) -> web.Response:
            return await self._receive(app, request)

        return receive

    async def _receive(
        self, app: Application[Any, Any, Any, Any, Any, Any], request: web.Request
    ) -> web.Response:
        secret = self.settings.webhook_secret
        given = request.headers.get(SECRET_HEADER, "")
        if secret is None or not hmac.compare_digest(
            given.encode(), secret.get_secret_value().encode()
        ):
            return json_error(403, "forbidden", "wrong or missing Telegram secret token")
        if not self.ready.is_set():  # Telegram retries later
            return json_error(503, "not_ready", "the bot is still connecting to Telegram")
        try:
            # Cleaned like every channel's input (matching.text): customers' and reps' text
            # is stored as it comes.
            data = clean_json(await read_json(request))
        except BadInput:
            data = None
        update = None
        if isinstance(data, dict) and type(data.get("update_id")) is int:
            try:
                update = Update.de_json(data, app.bot)
            # de_json raises whatever its field parsing meets (AttributeError, OverflowError,
            # …): any failure here means the JSON is not an update.
            except Exception:
                update = None
        if update is None:
            return json_error(400, "bad_update", "the body is not a Telegram update")
        await app.process_update(update)
        return web.json_response({"ok": True})


def bot_component(service: BotHost, clock: Clock | None = None) -> BotComponent | None:
    """The rep bot, or None when no token is configured or the process has no HTTP server
    (separate intake workers must not poll Telegram or deliver cards a second time)."""
    settings = service.settings.telegram
    if settings.token is None or not service.http:
        return None
    if settings.mode == "webhook":
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
        if not secret or not all(c.isalnum() or c in "_-" for c in secret) or len(secret) > 256:
            raise ConfigError(
                "telegram.webhook_secret is required in webhook mode: 1-256 characters "
                "A-Z, a-z, 0-9, _ and -"
            )
    return BotComponent(service, clock or SystemClock())
