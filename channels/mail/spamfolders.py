"""The mailboxes' spam folders for the console's quarantine page (`crm.services.quarantine`'s
`SpamFolders` port): what Leadbot filed there, and the release `leadbot mail release` does.

One short IMAP session per request, with a shorter timeout than the worker's: a person waits
for the page. A listing has a deadline in all too (`console.quarantine_timeout`): the page
shows every mailbox's answer at once, so one server that hangs would hold the whole page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from channels.mail.component import configured_mailbox
from channels.mail.imap import Headers, ImapError, ImapRefused, ImapSession, Selected
from channels.mail.mailbox import MailboxConfig
from channels.mail.parse import MailParseError, parse_message
from channels.mail.release import NotInSpam, release
from channels.mail.settings import MailboxSettings
from channels.mail.spamguard import SPAM_KEYWORD, spam_id
from crm.config import ConfigError
from crm.errors import NotFound
from crm.services.quarantine import HeldMail, HeldPage, MailboxUnavailable

PAGE_TIMEOUT = 10.0  # seconds per IMAP command while a person waits
LIST_TIMEOUT = 5.0  # seconds for a whole listing, unless told (console.quarantine_timeout)


def held_mail(found: Headers) -> HeldMail:
    """One listed mail from its header section (decoded as the worker decodes mail)."""
    try:
        parsed = parse_message(found.raw)
    except MailParseError:
        return HeldMail(found.uid, found.received, "(unreadable)", "", spam_id(None, found.raw))
    sender = parsed.sender
    shown = f"{sender.name} <{sender.address}>" if sender.name else sender.address
    message_id = None if parsed.synthetic_id else parsed.message_id
    return HeldMail(
        found.uid, found.received, shown, parsed.subject, spam_id(message_id, found.raw)
    )


class ImapSpamFolders:
    """Each configured mailbox's spam folder on its server."""

    def __init__(
        self,
        mailboxes: Sequence[MailboxSettings],
        default_region: str,
        *,
        list_timeout: float = LIST_TIMEOUT,
    ) -> None:
        self._boxes = {box.name: box for box in mailboxes}
        self._all = tuple(mailboxes)
        self._region = default_region
        self._list_timeout = list_timeout

    @property
    def mailboxes(self) -> Sequence[str]:
        return tuple(self._boxes)

    async def held(self, mailbox: str, *, offset: int, limit: int) -> HeldPage:
        deadline = asyncio.timeout(self._list_timeout)
        try:
            async with deadline:
                return await self._held(await self._config(mailbox), offset, limit)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise MailboxUnavailable(
                f"mailbox {mailbox}: the IMAP server did not answer within {self._list_timeout:g} s"
            ) from None

    async def _held(self, config: MailboxConfig, offset: int, limit: int) -> HeldPage:
        mailbox, folder = config.name, config.spam.folder
        try:
            session = await ImapSession.open(config.server, timeout=config.timeout)
            try:
                selected, uids, found = await _listing(session, folder, offset, limit)
            except BaseException:
                # Failed, or the deadline passed: no logout the server may not answer either.
                await session.close(logout=False)
                raise
            await session.close()
        except (ImapError, OSError) as exc:
            raise MailboxUnavailable(f"mailbox {mailbox}: {_why(exc)}") from None
        if selected is None:  # nothing was ever caught: the folder does not exist yet
            return HeldPage(mailbox, folder, [], 0)
        mails = sorted(map(held_mail, found), key=lambda m: m.uid, reverse=True)
        return HeldPage(mailbox, folder, mails, len(uids), selected.uidvalidity)

    async def release(self, mailbox: str, uid: int, uidvalidity: int | None = None) -> str:
        config = await self._config(mailbox)
        try:
            await release(config, str(uid), uidvalidity=uidvalidity)
        except NotInSpam as exc:
            raise NotFound(str(exc)) from None
        except (ImapError, OSError) as exc:
            raise MailboxUnavailable(f"mailbox {mailbox}: {_why(exc)}") from None
        return config.folder

    async def _config(self, mailbox: str) -> MailboxConfig:
        box = self._boxes.get(mailbox)
        if box is None:
            raise NotFound(f"no mailbox {mailbox!r} is configured")
        try:
            config = await asyncio.to_thread(configured_mailbox, box, self._all, self._region)
        except ConfigError as exc:
            raise MailboxUnavailable(str(exc)) from None
        return replace(config, timeout=min(config.timeout, PAGE_TIMEOUT))


async def _listing(
    session: ImapSession, folder: str, offset: int, limit: int
) -> tuple[Selected | None, list[int], list[Headers]]:
    """The folder (None when it does not exist), its held UIDs newest first, and the header
    sections of one page of them."""
    try:
        selected = await session.select(folder)
    except ImapRefused:
        return None, [], []
    # UIDs grow as mail is filed: the highest were caught last.
    uids = sorted(await session.search("KEYWORD", SPAM_KEYWORD), reverse=True)
    return selected, uids, await session.headers(uids[offset : offset + limit])


def _why(exc: BaseException) -> str:
    if isinstance(exc, ImapRefused):
        return str(exc)
    return f"the IMAP server does not answer ({exc or type(exc).__name__})"
