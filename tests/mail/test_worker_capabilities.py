"""Servers without IDLE, MOVE or UIDPLUS: polling and the COPY + EXPUNGE fallback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from channels.mail.component import mail_component

from .dovecot import Dovecot
from .samples import raw
from .support import customer_mail, event_count, eventually, holds, mailbox, uids_in, worker_of

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"])]

MakeDovecot = Callable[[str], Awaitable[Dovecot]]
Start = Callable[..., Awaitable[Any]]


@pytest.mark.parametrize("uidplus", [True, False])
async def test_plain_server_is_polled_and_mail_copied_then_expunged(
    make_dovecot: MakeDovecot, start_service: Start, uidplus: bool
) -> None:
    caps = "IMAP4rev1 LITERAL+" + (" UIDPLUS" if uidplus else "")
    dovecot = await make_dovecot(f"imap_capability = {caps}\n")
    service = await start_service(
        components=[mail_component],
        mailboxes=[mailbox(dovecot, poll_interval=0.2, processed_folder="Erledigt")],
    )
    worker = worker_of(service)
    await eventually(lambda: holds(worker.stats.waiting), what="first sync done")
    await dovecot.append(raw("plain_customer.eml"))  # found by the next poll
    await dovecot.append(customer_mail("zweite@example.org"))

    done = await eventually(lambda: uids_in(dovecot, "Erledigt"), what="copies in Erledigt")
    await eventually(lambda: _len_is(uids_in(dovecot, "Erledigt"), 2), what="both copied")
    await eventually(lambda: _len_is(dovecot.uids("INBOX"), 0), what="INBOX expunged")
    assert done and await event_count(service.db) == 2
    assert worker.stats.idle_renewals == 0  # no IDLE offered: polled
    assert worker.stats.connects == 1


async def _len_is(found: Awaitable[list[int]], expected: int) -> bool:
    return len(await found) == expected
