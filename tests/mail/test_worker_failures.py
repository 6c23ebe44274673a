"""The worker when things break: the server between commit and flag, intake, the network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from channels.event import InboundEvent
from channels.mail.imap import ImapServer
from channels.mail.mailbox import QUARANTINE_KEYWORD, MailboxConfig
from channels.mail.worker import MailboxWorker, backoff_delay
from crm.dto import IntakeResult
from crm.services.mailstate import MailState

from .dovecot import Dovecot
from .support import (
    customer_mail,
    event_count,
    events,
    eventually,
    holds,
    leads,
    message_id,
    seen,
    uids_in,
)

pytestmark = pytest.mark.slow

Sink = Callable[[InboundEvent], Awaitable[IntakeResult]]


def config(dovecot: Dovecot, **overrides: Any) -> MailboxConfig:
    server = ImapServer(dovecot.host, dovecot.port, "none", dovecot.user, dovecot.password)
    base = MailboxConfig(
        name="sales",
        server=server,
        reconnect_min_seconds=0.05,
        reconnect_max_seconds=0.2,
        timeout=5.0,
    )
    return replace(base, **overrides)


@pytest.fixture
async def service(start_service: Callable[..., Awaitable[Any]]) -> Any:
    return await start_service(components=[])


@pytest.fixture
async def run_worker() -> AsyncIterator[Callable[[MailboxWorker], None]]:
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    def _run(worker: MailboxWorker) -> None:
        tasks.append(asyncio.create_task(worker.run(stop)))

    yield _run
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_server_gone_between_commit_and_flag_rereads_without_doubling(
    service: Any, dovecot: Dovecot, run_worker: Callable[[MailboxWorker], None]
) -> None:
    mails = [customer_mail(f"kunde{i}@example.org") for i in range(5)]
    victim = message_id(mails[2])
    outcomes: dict[str, list[str]] = {}

    async def sink(event: InboundEvent) -> IntakeResult:
        result: IntakeResult = await service.process_now(event)
        outcomes.setdefault(event.external_id, []).append(result.outcome)
        if event.external_id == victim and len(outcomes[victim]) == 1:
            await dovecot.restart()  # committed, but the \Seen flag can no longer be set
        return result

    for mail in mails:
        await dovecot.append(mail)
    worker = MailboxWorker(config(dovecot), sink, MailState(service.db))
    run_worker(worker)

    await eventually(lambda: holds(len(outcomes) >= 5), timeout=10.0, what="5 mails")
    await eventually(lambda: _allseen(dovecot), what="all five read")
    assert outcomes[victim] == ["new_lead", "duplicate"]
    assert worker.stats.connects == 2
    assert await event_count(service.db) == 5
    assert len(await leads(service.db)) == 5


async def _allseen(dovecot: Dovecot) -> bool:
    uids = await dovecot.uids()
    return bool(uids) and all([await seen(dovecot, uid) for uid in uids])


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_mail_intake_keeps_failing_on_goes_to_quarantine(
    service: Any, dovecot: Dovecot, run_worker: Callable[[MailboxWorker], None]
) -> None:
    poison = customer_mail("gift@example.org")
    calls: list[str] = []

    async def sink(event: InboundEvent) -> IntakeResult:
        calls.append(event.external_id)
        if event.external_id == message_id(poison):
            raise ValueError("intake bug")
        result: IntakeResult = await service.process_now(event)
        return result

    await dovecot.append(poison)
    await dovecot.append(customer_mail("gut@example.org"))
    worker = MailboxWorker(config(dovecot, max_attempts=3), sink, MailState(service.db))
    run_worker(worker)

    await eventually(lambda: uids_in(dovecot, "Leadbot-Quarantine"), what="poison in quarantine")
    await eventually(lambda: leads(service.db), what="the next mail's lead")
    assert calls.count(message_id(poison)) == 3  # tried, then given up: never forever
    [uid] = await dovecot.uids("Leadbot-Quarantine")
    assert QUARANTINE_KEYWORD in await dovecot.flags("Leadbot-Quarantine", uid)
    # Two sessions ended on the error and were retried after a backoff; the third gave up.
    assert (worker.stats.failures, worker.stats.quarantined) == (2, 1)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_database_outage_is_retried_never_quarantined(
    service: Any, dovecot: Dovecot, run_worker: Callable[[MailboxWorker], None]
) -> None:
    down = True
    attempts = 0

    async def sink(event: InboundEvent) -> IntakeResult:
        nonlocal attempts
        attempts += 1
        if down:
            raise ConnectionRefusedError("database is down")
        result: IntakeResult = await service.process_now(event)
        return result

    uid = await dovecot.append(customer_mail("geduld@example.org"))
    worker = MailboxWorker(config(dovecot, max_attempts=2), sink, MailState(service.db))
    run_worker(worker)
    await eventually(lambda: holds(attempts >= 5), what="five attempts")
    assert not await seen(dovecot, uid)
    down = False

    await eventually(lambda: leads(service.db), what="the lead once the database is back")
    await eventually(lambda: seen(dovecot, uid), what="read after commit")
    assert await dovecot.uids("INBOX") == [uid]  # never moved to quarantine
    assert worker.stats.quarantined == 0


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_worker_waits_for_a_server_that_is_down_at_start(
    service: Any, dovecot: Dovecot, run_worker: Callable[[MailboxWorker], None]
) -> None:
    await dovecot.append(customer_mail("frueh@example.org"))
    await dovecot.stop()
    worker = MailboxWorker(config(dovecot), service.process_now, MailState(service.db))
    run_worker(worker)
    await eventually(lambda: holds(worker.stats.failures >= 3), what="3 failures")
    assert worker.stats.connects == 0
    await dovecot.start()

    await eventually(lambda: leads(service.db), what="the lead after the server came up")
    [logged] = await events(service.db)
    assert logged.payload["emails"] == ["frueh@example.org"]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_server_that_never_greets_times_out_and_is_retried(
    service: Any, dovecot: Dovecot, run_worker: Callable[[MailboxWorker], None]
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, say nothing, until the client gives up
        writer.close()

    mute = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = mute.sockets[0].getsockname()[1]
    server = ImapServer("127.0.0.1", port, "none", "alice", "secret")
    worker = MailboxWorker(
        config(dovecot, server=server, timeout=0.2), service.process_now, MailState(service.db)
    )
    async with mute:
        run_worker(worker)
        await eventually(lambda: holds(worker.stats.failures >= 2), what="two timeouts")
    assert worker.stats.connects == 0
    assert "connect" in (worker.stats.last_error or "")


def test_backoff_grows_to_the_cap_with_jitter() -> None:
    delays = [backoff_delay(n, 1.0, 60.0, 0.999) for n in range(10)]
    assert delays[:4] == pytest.approx([1.0, 2.0, 4.0, 8.0], rel=1e-3)
    assert max(delays) == pytest.approx(60.0, rel=1e-3)
    assert backoff_delay(3, 1.0, 60.0, 0.0) == 4.0  # jitter: between half and the full delay
    assert backoff_delay(10_000, 1.0, 60.0, 0.5) == 45.0  # no overflow after days of outage
