"""The Dovecot fixture behaves like the real mailbox the IMAP worker will face."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aioimaplib
import pytest

from .dovecot import Dovecot
from .samples import raw

pytestmark = pytest.mark.slow


@pytest.fixture
async def client(dovecot: Dovecot) -> AsyncIterator[aioimaplib.IMAP4]:
    imap = aioimaplib.IMAP4(host=dovecot.host, port=dovecot.port, timeout=5)
    await imap.wait_hello_from_server()
    assert (await imap.login(dovecot.user, dovecot.password)).result == "OK"
    yield imap
    await imap.logout()


def _joined(lines: list[bytes | bytearray]) -> bytes:
    return b"\n".join(bytes(line) for line in lines)


async def test_appended_mail_is_visible_over_imap(
    dovecot: Dovecot, client: aioimaplib.IMAP4
) -> None:
    uid = await dovecot.append(raw("plain_customer.eml"))
    assert await dovecot.uids("INBOX") == [uid]
    assert "\\Seen" not in await dovecot.flags("INBOX", uid)

    await client.select("INBOX")
    answer = await client.uid("fetch", str(uid), "(BODY[HEADER.FIELDS (MESSAGE-ID)])")
    assert answer.result == "OK"
    assert b"<5f1c2a90-1d2e-4b7a-9a51-3c2e1f0d9b11@gartenbau-schmidt.de>" in _joined(answer.lines)
    # A non-peek fetch marks it read, as a mail client would.
    assert "\\Seen" in await dovecot.flags("INBOX", uid)


async def test_idle_push_arrives_soon_after_delivery(
    dovecot: Dovecot, client: aioimaplib.IMAP4
) -> None:
    await client.select("INBOX")
    idle = await client.idle_start(timeout=10)
    started = time.monotonic()
    await dovecot.append(raw("threaded_reply.eml"))
    push = await client.wait_server_push(timeout=2)
    assert time.monotonic() - started < 2
    assert any(line.endswith(b"EXISTS") for line in push)
    client.idle_done()
    await asyncio.wait_for(idle, timeout=2)


async def test_folders_keep_their_own_uids(dovecot: Dovecot) -> None:
    await dovecot.append(raw("plain_customer.eml"))
    await dovecot.create_folder("Leadbot Quarantine")
    uid = await dovecot.append(raw("broken_mime.eml"), folder="Leadbot Quarantine")
    assert await dovecot.uids("Leadbot Quarantine") == [uid] == [1]


async def test_restart_keeps_port_mail_and_uidvalidity(dovecot: Dovecot) -> None:
    uid = await dovecot.append(raw("plain_customer.eml"))
    validity = await dovecot.uidvalidity()
    await dovecot.restart()
    assert await dovecot.uids() == [uid]
    assert await dovecot.uidvalidity() == validity
    assert await dovecot.append(raw("form_robot.eml")) == uid + 1


async def test_uidvalidity_change_renumbers_the_same_mail(dovecot: Dovecot) -> None:
    for name in ("plain_customer.eml", "form_robot.eml", "threaded_reply.eml"):
        await dovecot.append(raw(name))
    before = await dovecot.uidvalidity()
    after = await dovecot.change_uidvalidity()
    assert after != before
    assert await dovecot.uidvalidity() == after
    assert len(await dovecot.uids()) == 3  # nothing lost
