"""The `dovecot` fixture: a fresh IMAP server per test; `spamd_port`: one spamd per session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from .dovecot import DOVECOT, Dovecot
from .spamd import running_spamd


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


@pytest.fixture
async def make_dovecot() -> AsyncIterator[Callable[..., Awaitable[Dovecot]]]:
    """Start other servers: `await make_dovecot(extra_config, tls=True)`."""
    if not DOVECOT.exists():
        pytest.skip(f"{DOVECOT} is not installed (apt-get install dovecot-imapd)")
    started: list[Dovecot] = []

    async def _make(extra_config: str = "", *, tls: bool = False) -> Dovecot:
        server = Dovecot(extra_config, tls=tls)
        started.append(server)
        await server.start()
        return server

    yield _make
    for server in started:
        await server.close()


@pytest.fixture(scope="session")
def spamd_port() -> Iterator[int]:
    """A real spamd for the whole session (it takes seconds to start): its port."""
    with running_spamd() as port:
        yield port
