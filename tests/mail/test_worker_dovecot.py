"""The mailbox worker against a real Dovecot: delivery, restarts, renumbering, quarantine."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from channels.mail.mailbox import QUARANTINE_KEYWORD
from crm.services.mailstate import MailState, MailSync

from . import handmade
from .dovecot import Dovecot
from .samples import raw
from .support import (
    count_is,
    customer_mail,
    event_count,
    events,
    eventually,
    holds,
    leads,
    seen,
    uids_in,
    watching,
    worker_of,
)

pytestmark = pytest.mark.slow

Start = Callable[..., Awaitable[Any]]


async def test_appended_mail_is_a_lead_within_two_seconds(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot)
    started = time.monotonic()
    uid = await dovecot.append(raw("plain_customer.eml"))

    found = await eventually(lambda: leads(service.db), timeout=2.0, what="a lead")
    assert time.monotonic() - started < 2.0
    assert [lead.title for lead in found] == ["Anfrage: 40 Pflanzkübel für Firmengelände"]
    [event] = await events(service.db)
    assert event.external_id == "<5f1c2a90-1d2e-4b7a-9a51-3c2e1f0d9b11@gartenbau-schmidt.de>"
    assert event.payload["emails"] == ["anna.schmidt@gartenbau-schmidt.de"]
    assert event.payload["line"] == "sales"
    # Committed first, then flagged read.
    await eventually(lambda: seen(dovecot, uid), timeout=2.0, what="\\Seen flag")


async def test_dovecot_restart_loses_and_doubles_nothing(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot)
    worker = worker_of(service)
    first = [customer_mail(f"kunde{i}@example.org") for i in range(4)]
    for mail in first:
        await dovecot.append(mail)
    await dovecot.restart()  # likely while the worker is still on the batch
    second = [customer_mail(f"kunde{i}@example.org", subject="Nachtrag") for i in range(4, 8)]
    for mail in second:
        await dovecot.append(mail)

    await eventually(lambda: count_is(service, 8), timeout=10.0, what="8 events")
    assert worker.stats.connects >= 2
    logged = await events(service.db)
    assert len({e.external_id for e in logged}) == 8
    assert len(await leads(service.db)) == 8
    for uid in await dovecot.uids():
        await eventually(lambda uid=uid: seen(dovecot, uid), what=f"UID {uid} read")


async def test_changed_uidvalidity_reads_again_without_duplicates(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot)
    worker = worker_of(service)
    for i in range(3):
        await dovecot.append(customer_mail(f"alt{i}@example.org"))
    await eventually(lambda: count_is(service, 3), what="3 events")
    await eventually(lambda: holds(worker.stats.waiting), what="caught up")
    committed = worker.stats.committed

    validity = await dovecot.change_uidvalidity()
    await dovecot.append(customer_mail("neu@example.org"))

    await eventually(lambda: count_is(service, 4), timeout=10.0, what="the new mail")
    # The three old mails were read again and recognized by their Message-ID.
    await eventually(lambda: holds(worker.stats.committed >= committed + 4), what="re-read")
    assert len(await leads(service.db)) == 4
    top = max(await dovecot.uids())
    saved = await eventually(lambda: _saved_at(service, top), what=f"sync point at UID {top}")
    assert saved.uidvalidity == validity


async def _saved_at(service: Any, uid: int) -> MailSync | None:
    saved = await MailState(service.db).load("sales")
    return saved if saved is not None and saved.last_uid == uid else None


async def test_unreadable_mime_goes_to_quarantine_and_the_worker_goes_on(
    start_service: Start, dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    service = await watching(start_service, dovecot)
    await dovecot.append(handmade.NO_BOUNDARY_BINARY)  # no boundary, and no text either
    await dovecot.append(raw("plain_customer.eml"))

    await eventually(lambda: leads(service.db), what="the good mail's lead")
    await eventually(
        lambda: uids_in(dovecot, "Leadbot-Quarantine"), what="a mail in the quarantine folder"
    )
    [logged] = await events(service.db)
    assert logged.external_id.endswith("@gartenbau-schmidt.de>")
    [uid] = await dovecot.uids("Leadbot-Quarantine")
    flags = await dovecot.flags("Leadbot-Quarantine", uid)
    assert QUARANTINE_KEYWORD in flags and "\\Seen" not in flags  # a human should look at it
    assert await dovecot.uids("INBOX") != []  # the good mail stays in place, read
    assert worker_of(service).stats.quarantined == 1
    [logged_error] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "quarantine" in logged_error.getMessage()
    assert "broken boundary" in logged_error.getMessage()  # the reason, for the admin


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_restarted_service_resumes_after_the_last_uid(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot)
    for i in range(2):
        await dovecot.append(customer_mail(f"vorher{i}@example.org"))
    await eventually(lambda: count_is(service, 2), what="two events")
    await service.stop()
    await dovecot.append(customer_mail("waehrenddessen@example.org"))

    service = await watching(start_service, dovecot)
    await eventually(lambda: count_is(service, 3), what="the mail that came meanwhile")
    assert worker_of(service).stats.committed == 1  # the first two were not read again


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_first_sync_reads_only_the_configured_window(
    start_service: Start, dovecot: Dovecot
) -> None:
    old = await dovecot.append(
        customer_mail("alt@example.org"), received=datetime.now(UTC) - timedelta(days=10)
    )
    read_by_someone = await dovecot.append(
        customer_mail("gelesen@example.org"),
        flags="(\\Seen)",
        received=datetime.now(UTC) - timedelta(days=2),
    )
    service = await watching(start_service, dovecot, first_sync_days=7)

    [logged] = await events(service.db)
    assert logged.payload["emails"] == ["gelesen@example.org"]  # \Seen does not mean handled
    assert "\\Seen" not in await dovecot.flags("INBOX", old)  # never touched
    saved = await MailState(service.db).load("sales")
    assert saved is not None and saved.last_uid == read_by_someone
    await service.stop()
    service = await watching(start_service, dovecot, first_sync_days=30)
    assert await event_count(service.db) == 1  # the window applies to the first connect only


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_idle_is_renewed_on_the_same_connection(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot, idle_renew_seconds=0.2)
    worker = worker_of(service)
    await eventually(lambda: holds(worker.stats.idle_renewals >= 3), what="3 IDLE renewals")
    started = time.monotonic()
    await dovecot.append(customer_mail("spaet@example.org"))
    await eventually(lambda: leads(service.db), timeout=2.0, what="the lead")
    assert time.monotonic() - started < 2.0
    assert worker.stats.connects == 1


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_handled_mail_moves_to_the_processed_folder(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot, processed_folder="Leadbot.Erledigt ✓")
    await dovecot.append(raw("plain_customer.eml"))
    await dovecot.append(raw("dsn_bounce.eml"))

    # Non-ASCII folder names travel in modified UTF-7 (RFC 3501 5.1.3).
    moved = await eventually(lambda: uids_in(dovecot, "Leadbot.Erledigt &JxM-"), what="a move")
    assert len(moved) == 1
    assert len(await dovecot.uids("INBOX")) == 1  # the ignored bounce stays for a human
    # ... and is in the event log as ignored (the customer's mail as a new lead). The two mails
    # are handled one after the other: the move may come before the bounce's verdict.

    async def outcomes() -> list[str]:
        found = sorted(e.outcome for e in await events(service.db))
        return found if len(found) == 2 else []

    assert await eventually(outcomes, what="both mails in the event log") == ["ignored", "new_lead"]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_processed_folder_the_server_refuses_falls_back_toseen(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot, processed_folder="Leads/Done")
    uid = await dovecot.append(raw("plain_customer.eml"))
    await eventually(lambda: seen(dovecot, uid), what="flagged read in place")
    worker = worker_of(service)
    await eventually(lambda: holds(worker.stats.waiting), what="caught up")
    assert (worker.stats.committed, worker.stats.failures) == (1, 0)  # not read again and again
