"""Encrypted mailboxes: implicit TLS and STARTTLS, and a certificate that is not trusted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from .dovecot import Dovecot
from .samples import raw
from .support import eventually, holds, leads, mailbox, watching, worker_of

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"])]

MakeDovecot = Callable[..., Awaitable[Dovecot]]
Start = Callable[..., Awaitable[Any]]


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_encrypted_mailbox_delivers_leads(
    make_dovecot: MakeDovecot, start_service: Start, security: str
) -> None:
    server = await make_dovecot(tls=True)
    port = server.tls_port if security == "tls" else server.port
    service = await watching(
        start_service, server, security=security, port=port, ca_file=str(server.certificate)
    )
    await server.append(raw("plain_customer.eml"))
    await eventually(lambda: leads(service.db), what="a lead over TLS")


async def test_untrusted_certificate_is_refused(
    make_dovecot: MakeDovecot, start_service: Start
) -> None:
    from channels.mail.component import mail_component

    server = await make_dovecot(tls=True)
    service = await start_service(
        components=[mail_component],
        mailboxes=[mailbox(server, security="tls", port=server.tls_port)],  # system CAs only
    )
    worker = worker_of(service)
    await eventually(lambda: holds(worker.stats.failures >= 2), what="refused connections")
    assert worker.stats.connects == 0
    assert "CERTIFICATE_VERIFY_FAILED" in (worker.stats.last_error or "")


async def test_starttls_required_but_not_offered(dovecot: Dovecot, start_service: Start) -> None:
    from channels.mail.component import mail_component

    service = await start_service(
        components=[mail_component], mailboxes=[mailbox(dovecot, security="starttls")]
    )
    worker = worker_of(service)
    await eventually(lambda: holds(worker.stats.failures >= 1), what="a refused session")
    assert worker.stats.connects == 0  # never logs in over plain text
    assert "does not offer STARTTLS" in (worker.stats.last_error or "")
