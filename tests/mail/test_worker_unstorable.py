"""Mail whose headers carry what a database cannot store (NUL, a lone surrogate from an
encoded word, control characters) is cleaned where the parsed mail enters: the worker's own
look-ups before intake (the per-sender rate limit) must not fail on it either."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from .dovecot import Dovecot
from .support import count_is, events, eventually, leads, uids_in, watching, worker_of

pytestmark = pytest.mark.slow

# The sender's display name and address, and the subject, each with a NUL (an encoded word
# =00) and a lone surrogate (UTF-7 "+2AA-" decodes to U+D800), the subject with a raw ^A.
POISON = (
    b"From: =?utf-8?q?Anna=00_?= =?utf-7?q?Meier+2AA-?= <=?utf-8?q?an=00na?=@gift.example>\r\n"
    b"To: info@beispiel-shop.de\r\n"
    b"Subject: =?utf-8?q?Angebot=00?= =?utf-7?q?K+2AA-bel?=\x01\r\n"
    b"Message-ID: <poison-1@gift.example>\r\n"
    b"Date: Sun, 06 Dec 2026 03:00:00 +0000\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Guten Tag,\x01 bitte ein Angebot.\r\n"
)


@pytest.mark.parametrize("backend", ["postgres"])
async def test_poison_headers_make_one_lead_with_the_cleaned_text(
    start_service: Callable[..., Awaitable[Any]], dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot)
    uid = await dovecot.append(POISON)
    await eventually(lambda: count_is(service, 1), what="the poison mail's event", timeout=30)

    [lead] = await leads(service.db)
    assert lead.name == "Anna Meier\ufffd"
    [event] = await events(service.db)
    assert event.outcome == "new_lead"
    assert event.payload["emails"] == ["anna@gift.example"]
    assert event.payload["subject"] == "AngebotK\ufffdbel"
    worker = worker_of(service)
    assert (worker.stats.failures, worker.stats.quarantined) == (0, 0)
    assert await uids_in(dovecot, "Leadbot-Quarantine") == []
    assert await dovecot.uids("INBOX") == [uid] and "\\Seen" in await dovecot.flags("INBOX", uid)
