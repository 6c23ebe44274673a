"""The quarantine: mail the spam filter moved to a mailbox's spam folder, listed with the reason
it was caught, and released back to the watched folder when it was a customer after all.

The mail stays on the IMAP server; the mail channel reaches it through the `SpamFolders` port
(channels.mail.spamfolders, set by the service), and the reason comes from the notes the
mailbox worker wrote when it filed the mail (`MailState.spam`). Supervisors and admins only:
a mail in a spam folder is nobody's yet and may be any rep's customer, which is what
supervisors oversee, and releasing it does no more than intake would have done with it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from sqlalchemy import select

from crm.db import Database
from crm.dto import Actor
from crm.errors import CrmError, Forbidden, NotFound
from crm.models import MailSpamNote

log = logging.getLogger(__name__)

PAGE_SIZE = 25
MAX_PAGE = 100


class MailboxUnavailable(CrmError):
    """The mailbox's IMAP server could not be reached or refused us; `str()` says why."""

    code = "unavailable"


@dataclass(frozen=True, slots=True)
class HeldMail:
    """One mail in a spam folder, as the server holds it (texts decoded, never HTML)."""

    uid: int  # in the spam folder: what a release names
    received: datetime | None  # the server's arrival time (a sender's Date can lie)
    sender: str
    subject: str
    message_id: str | None  # as the mail channel keys mail (a synthetic one without a header)
    layer: str | None = None  # filled from the notes: which spam layer caught it
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class HeldPage:
    mailbox: str
    folder: str
    mails: list[HeldMail]  # newest first
    total: int  # held in the folder, on every page
    uidvalidity: int | None = None  # of the folder the UIDs are from (None: no folder yet)


class SpamFolders(Protocol):
    """Each configured mailbox's spam folder on its IMAP server."""

    @property
    def mailboxes(self) -> Sequence[str]: ...

    async def held(self, mailbox: str, *, offset: int, limit: int) -> HeldPage:
        """Mails tagged as Leadbot's spam, newest first. `NotFound` for an unknown mailbox,
        `MailboxUnavailable` when the server cannot be asked."""
        ...

    async def release(self, mailbox: str, uid: int, uidvalidity: int | None = None) -> str:
        """Move the mail back to the watched folder for the worker to take as new mail; the
        folder's name. `NotFound` when it is no longer in the spam folder, or the folder is no
        longer the one `uidvalidity` names."""
        ...


def require_supervisor(actor: Actor) -> None:
    if not actor.sees_everything:
        raise Forbidden("the quarantine is for supervisors and admins")


class Quarantine:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Set by the service when mailboxes are configured.
        self.folders: SpamFolders | None = None

    def mailboxes(self, actor: Actor) -> list[str]:
        require_supervisor(actor)
        return list(self.folders.mailboxes) if self.folders is not None else []

    async def held(
        self, mailbox: str, actor: Actor, *, offset: int = 0, limit: int = PAGE_SIZE
    ) -> HeldPage:
        require_supervisor(actor)
        page = await self._folders().held(
            mailbox, offset=max(0, offset), limit=min(max(1, limit), MAX_PAGE)
        )
        ids = {message_key(m.message_id) for m in page.mails if m.message_id}
        if not ids:
            return page
        async with self.db.read() as s:
            rows = await s.execute(
                select(MailSpamNote.message_id, MailSpamNote.layer, MailSpamNote.reason)
                .where(
                    MailSpamNote.mailbox == note_key(mailbox),
                    MailSpamNote.message_id.in_(sorted(ids)),
                )
                .order_by(MailSpamNote.noted_at)  # the latest note of a Message-ID wins
            )
            notes = {r.message_id: (r.layer, r.reason) for r in rows}
        mails = [
            replace(m, layer=note[0], reason=note[1])
            if m.message_id and (note := notes.get(message_key(m.message_id)))
            else m
            for m in page.mails
        ]
        return replace(page, mails=mails)

    async def release(
        self, mailbox: str, uid: int, actor: Actor, *, uidvalidity: int | None = None
    ) -> str:
        """What `leadbot mail release` does; the watched folder it went back to. `uidvalidity`:
        the folder's on the page the UID was read from."""
        require_supervisor(actor)
        folder = await self._folders().release(mailbox, uid, uidvalidity)
        log.info("mailbox %s: rep #%s released UID %s to %s", mailbox, actor.rep_id, uid, folder)
        return folder

    def _folders(self) -> SpamFolders:
        if self.folders is None:
            raise NotFound("no mailbox is configured")
        return self.folders


def note_key(mailbox: str) -> str:
    """A mailbox's name as the notes keep it."""
    return mailbox[:100]


def message_key(message_id: str) -> str:
    """A Message-ID as the notes keep it (a header line is shorter anyway)."""
    return message_id[:1000]
