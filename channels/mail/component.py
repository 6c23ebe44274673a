"""The mail channel as a service component: one worker task per configured mailbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from channels.mail.filters import MailPolicy
from channels.mail.imap import ImapServer
from channels.mail.mailbox import MailboxConfig
from channels.mail.metrics import MailCounters
from channels.mail.settings import MailboxSettings
from channels.mail.spamguard import spam_config
from channels.mail.worker import MailboxWorker
from crm import outage
from crm.config import ConfigError
from crm.dto import IntakeResult
from crm.services.mailstate import MailState
from crm.supervisor import TaskHost
from matching.event import InboundEvent

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 10.0  # a mail in the middle of intake may finish
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def is_outage(exc: BaseException) -> bool:
    """Errors of a database or Redis that is down (`crm.outage`), or of the network: retry
    the mail later, never quarantine it."""
    return isinstance(exc, OSError) or outage.is_outage(exc)


def own_addresses(mailboxes: Sequence[MailboxSettings]) -> frozenset[str]:
    """Every mailbox login that is an address: mail from them is our own."""
    return frozenset(m.user.strip().lower() for m in mailboxes if "@" in m.user)


def read_password(box: MailboxSettings) -> str:
    """The password from the config, a file or the environment (blocking: call in a thread)."""
    if box.password is not None:
        return box.password.get_secret_value()
    if box.password_env is not None:
        value = os.environ.get(box.password_env)
        if not value:
            raise ConfigError(
                f"mailbox {box.name}: environment variable {box.password_env} is not set"
            )
        return value
    path = box.password_file
    assert path is not None  # the settings demand exactly one of the three
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"mailbox {box.name}: password_file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"mailbox {box.name}: password_file {path} is not UTF-8 text") from None
    if not value:
        raise ConfigError(f"mailbox {box.name}: password_file {path} is empty")
    return value


def imap_server(box: MailboxSettings, password: str) -> ImapServer:
    return ImapServer(
        host=box.host,
        port=box.port,
        security=box.security,
        user=box.user,
        password=password,
        ca_file=str(box.ca_file) if box.ca_file else None,
    )


def mailbox_config(
    box: MailboxSettings, password: str, own: frozenset[str], default_region: str
) -> MailboxConfig:
    try:
        return MailboxConfig(
            name=box.name,
            server=imap_server(box, password),
            folder=box.folder,
            processed_folder=box.processed_folder,
            quarantine_folder=box.quarantine_folder,
            region=(box.region or default_region).upper(),
            queue=box.queue,
            first_sync_days=box.first_sync_days,
            policy=MailPolicy(
                own_addresses=own,
                allow_lists=box.allow_lists,
                robot_senders=frozenset(box.robot_senders),
                rate_limit_per_hour=box.rate_limit_per_hour,
            ),
            poll_interval=box.poll_interval,
            idle_renew_seconds=box.idle_renew_seconds,
            reconnect_min_seconds=box.reconnect_min_seconds,
            reconnect_max_seconds=max(box.reconnect_min_seconds, box.reconnect_max_seconds),
            timeout=box.command_timeout,
            spam=spam_config(box),
        )
    except ValueError as exc:
        raise ConfigError(f"config error: mailboxes: {exc}") from None


def configured_mailbox(
    box: MailboxSettings, mailboxes: Sequence[MailboxSettings], default_region: str
) -> MailboxConfig:
    """One of `mailboxes` ready to connect (reads its password: call in a thread)."""
    return mailbox_config(box, read_password(box), own_addresses(mailboxes), default_region)


class _Crm(Protocol):
    @property
    def default_region(self) -> str: ...


class MailCrm(Protocol):
    """The part of the `Crm` facade the mail channel uses."""

    @property
    def mail_state(self) -> MailState: ...


class MailSettings(Protocol):
    """The settings the mail channel reads."""

    @property
    def crm(self) -> _Crm: ...

    @property
    def mailboxes(self) -> Sequence[MailboxSettings]: ...


class _Metrics(Protocol):
    @property
    def registry(self) -> CollectorRegistry: ...


class MailHost(TaskHost, Protocol):
    """What the mail channel needs from the process that runs it (`leadbot.app.Service`)."""

    @property
    def settings(self) -> MailSettings: ...

    @property
    def crm(self) -> MailCrm: ...

    @property
    def http(self) -> bool: ...

    @property
    def metrics(self) -> _Metrics: ...

    async def process_now(self, event: InboundEvent) -> IntakeResult: ...


class MailComponent:
    def __init__(self, service: MailHost, mailboxes: Sequence[MailboxSettings]) -> None:
        names = [m.name for m in mailboxes]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ConfigError(f"config error: mailboxes: name {doubled[0]!r} is used twice")
        self.service = service
        self.mailboxes = tuple(mailboxes)
        self.workers: list[MailboxWorker] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._counters = MailCounters(lambda: self.workers)

    def routes(self) -> list[web.AbstractRouteDef]:
        return []

    async def start(self) -> None:
        own = own_addresses(self.mailboxes)
        region = self.service.settings.crm.default_region
        store = self.service.crm.mail_state
        self._stop.clear()
        for box in self.mailboxes:
            if box.security == "none" and box.host not in _LOOPBACK:
                log.warning("mailbox %s: password goes unencrypted to %s", box.name, box.host)
            password = await asyncio.to_thread(read_password, box)
            config = mailbox_config(box, password, own, region)
            worker = MailboxWorker(config, self.service.process_now, store, is_outage=is_outage)
            self.workers.append(worker)
        self.service.metrics.registry.register(self._counters)
        tasks: TaskHost = self.service
        stop = self._stop
        for worker in self.workers:
            name = worker.config.name
            tasks.add_check(f"mailbox:{name}", worker.health)
            self._tasks.append(tasks.spawn(f"mailbox.{name}", partial(worker.run, stop), stop))

    async def stop(self) -> None:
        """Let each worker finish the mail it is on, then cut what still hangs."""
        self._stop.set()
        with contextlib.suppress(KeyError):  # not registered: start failed or never ran
            self.service.metrics.registry.unregister(self._counters)
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=STOP_GRACE_SECONDS)
        for task in pending:
            log.warning("mailbox worker %s did not stop in time", task.get_name())
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self.workers.clear()


def mail_component(service: MailHost) -> MailComponent | None:
    """The factory for `leadbot.wiring.COMPONENTS`: None when no mailbox is configured, and in
    bare `leadbot worker` processes (only `serve` watches the inboxes, so no two processes
    read the same mailbox)."""
    mailboxes = service.settings.mailboxes
    return MailComponent(service, mailboxes) if mailboxes and service.http else None
