"""The `dovecot` fixture: a fresh IMAP server per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .dovecot import DOVECOT, Dovecot


@pytest.fixture
async def dovecot() -> AsyncIterator[Dovecot]:
    if not DOVECOT.exists():
        pytest.skip(f"{DOVECOT} is not installed (apt-get install dovecot-imapd)")
    server = Dovecot()
    try:
        await server.start()
        yield server
    finally:
        await server.close()
