"""`leadbot doctor`'s look at one mailbox: log in and open its folder, as the worker would."""

from __future__ import annotations

import asyncio

import aiosmtplib

from channels.mail.component import imap_server, read_password
from channels.mail.imap import ImapError, ImapSession
from channels.mail.settings import MailboxSettings
from channels.mail.smtp import outbox_of


async def check_mailbox(box: MailboxSettings, timeout: float = 15.0) -> tuple[bool, str]:
    """(ok, what was found or what to fix), never raising."""
    try:
        password = await asyncio.to_thread(read_password, box)
    except Exception as exc:
        return False, f"no password: {exc}; set password, password_file or password_env"
    server = imap_server(box, password)
    who = f"{box.user}@{box.host}:{box.port}"
    try:
        session = await ImapSession.open(server, timeout=timeout)
    except (ImapError, OSError, TimeoutError) as exc:
        why = str(exc) or type(exc).__name__
        return False, f"{who}: {why}; check host, port, security, user and password"
    try:
        selected = await session.select(box.folder)
    except (ImapError, OSError, TimeoutError) as exc:
        return False, f"logged in, but folder {box.folder!r}: {exc}; check folder"
    finally:
        await session.close()
    return True, f"{who} logged in, {box.folder} open (uidvalidity {selected.uidvalidity})"


async def check_smtp(box: MailboxSettings) -> tuple[bool, str]:
    """Connect to the mailbox's SMTP server for replies and log in, sending nothing."""
    assert box.smtp is not None
    outbox = outbox_of(box, box.smtp)
    try:
        password = await asyncio.to_thread(outbox.password)
    except Exception as exc:
        return False, f"no password: {exc}; set smtp.password or the mailbox's password"
    who = f"{outbox.user}@{box.smtp.host}:{box.smtp.port}"
    options = outbox.client_options(password)
    login = (options.pop("username"), options.pop("password"))
    try:
        async with aiosmtplib.SMTP(**options) as client:
            if login[0] and login[1]:
                await client.login(*login)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        why = str(exc) or type(exc).__name__
        return False, f"{who}: {why}; check smtp host, port, security, user and password"
    return True, f"{who} logged in; replies go out from {box.smtp.from_address}"
