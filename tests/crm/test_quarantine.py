"""The quarantine service on SQLite and PostgreSQL: the spam notes the mail worker writes, joined
to what a spam folder holds; old notes pruned; supervisors and admins only. The spam folders
are a small in-memory port here (the real one, on Dovecot: tests/console/test_quarantine.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import select

from crm.db import Database
from crm.dto import Actor
from crm.errors import Forbidden, NotFound
from crm.models import MailSpamNote, utcnow
from crm.services.mailstate import SPAM_NOTE_DAYS, MailState
from crm.services.quarantine import HeldMail, HeldPage, Quarantine
from tests.servers import free_port

ADMIN, SUPERVISOR, REP = Actor(1, "admin"), Actor(2, "supervisor"), Actor(3, "rep")


class Folders:
    """Two mails held in `sales`; the second has no note."""

    mailboxes: Sequence[str] = ("sales",)

    def __init__(self) -> None:
        self.released: list[tuple[str, int]] = []
        self.asked: list[tuple[int, int]] = []

    async def held(self, mailbox: str, *, offset: int, limit: int) -> HeldPage:
        if mailbox != "sales":
            raise NotFound(f"no mailbox {mailbox!r} is configured")
        self.asked.append((offset, limit))
        mails = [
            HeldMail(9, None, "a@spam.example", "Gewinn", "<a@spam.example>"),
            HeldMail(4, None, "b@kunde.example", "Anfrage", "<b@kunde.example>"),
        ]
        return HeldPage(mailbox, "Leadbot-Spam", mails, 2)

    async def release(self, mailbox: str, uid: int, uidvalidity: int | None = None) -> str:
        self.released.append((mailbox, uid))
        return "INBOX"


async def test_held_mail_shows_the_latest_note_of_its_mailbox(db: Database) -> None:
    state, quarantine = MailState(db), Quarantine(db)
    quarantine.folders = folders = Folders()
    await state.spam("sales", "<a@spam.example>", "markers", "markers 5 ≥ 5: old")
    await state.spam("sales", "<a@spam.example>", "headers", "X-Spam-Flag: YES")
    await state.spam("support", "<b@kunde.example>", "scanner", "another mailbox's")

    page = await quarantine.held("sales", SUPERVISOR, offset=-5, limit=10_000)
    assert [(m.uid, m.layer, m.reason) for m in page.mails] == [
        (9, "headers", "X-Spam-Flag: YES"),
        (4, None, None),
    ]
    assert folders.asked == [(0, 100)]  # the page size is bounded
    assert await quarantine.release("sales", 9, ADMIN) == "INBOX"
    assert folders.released == [("sales", 9)]
    assert quarantine.mailboxes(ADMIN) == ["sales"]


async def test_reps_are_refused_and_without_mailboxes_there_is_nothing(db: Database) -> None:
    quarantine = Quarantine(db)
    assert quarantine.mailboxes(ADMIN) == []
    with pytest.raises(NotFound, match="no mailbox is configured"):
        await quarantine.held("sales", ADMIN)
    quarantine.folders = folders = Folders()
    with pytest.raises(Forbidden, match="for supervisors and admins"):
        quarantine.mailboxes(REP)
    with pytest.raises(Forbidden):
        await quarantine.held("sales", REP)
    with pytest.raises(Forbidden):
        await quarantine.release("sales", 9, REP)
    assert folders.released == [] and folders.asked == []


async def test_old_notes_are_pruned_and_a_failed_note_does_not_raise(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    old = utcnow() - timedelta(days=SPAM_NOTE_DAYS, hours=1)
    async with db.transaction() as s:
        s.add(MailSpamNote(mailbox="sales", message_id="<old@x>", layer="headers", reason="r"))
        s.add(
            MailSpamNote(
                mailbox="sales", message_id="<older@x>", layer="headers", reason="r", noted_at=old
            )
        )
    state = MailState(db)
    await state.spam("sales", "<new@x>", "markers", "m" * 900)
    async with db.read() as s:
        notes = {n.message_id: n for n in await s.scalars(select(MailSpamNote))}
    assert sorted(notes) == ["<new@x>", "<old@x>"]
    assert len(notes["<new@x>"].reason) == 500

    # A database that does not answer: logged, not raised (spam must not stall a mailbox).
    down = Database(f"postgresql+asyncpg://leadbot@127.0.0.1:{free_port()}/none")
    try:
        await MailState(down).spam("sales", "<lost@x>", "markers", "r")
    finally:
        await down.dispose()
    assert "mailbox sales: noting why <lost@x> is spam failed" in caplog.text
