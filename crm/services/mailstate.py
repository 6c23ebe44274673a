"""What the IMAP workers persist between runs, and the facts they ask the CRM for.

Per mailbox: the UIDVALIDITY and the last UID handled (in the `state` table), so a restart
resumes where it stopped. Per mail moved to the spam folder: why (`mail_spam_notes`), for the
console's quarantine page. Per sender: how many mails arrived in a recent window (from the event
log, so the count survives restarts and covers every mailbox), for the loop rate limit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from crm.db import Database
from crm.models import InboundEventLog, KeyValue, MailSpamNote, Rep, utcnow
from crm.services.quarantine import message_key, note_key

log = logging.getLogger(__name__)

SYNC_PREFIX = "mail.sync:"
HEALTH_PREFIX = "health.mail:"  # last sync and last error, for channel health
SYNCED_EVERY = 30.0  # seconds: a polling mailbox reads to its end every few seconds
# Spam notes outlive what servers commonly keep in a spam folder (30 days is usual); older ones
# are deleted at most once an hour, by the worker that writes a new one.
SPAM_NOTE_DAYS = 90
PRUNE_EVERY = 3600.0


@dataclass(frozen=True, slots=True)
class MailSync:
    uidvalidity: int
    last_uid: int  # every UID up to this one is handled (committed, ignored or quarantined)
    source: str  # "user@host/folder": a changed mailbox address means a fresh start
    synced_at: datetime


class MailState:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._synced: dict[str, float] = {}
        self._pruned = -PRUNE_EVERY

    async def synced(self, mailbox: str) -> None:
        """The folder was read to its end (written at most every SYNCED_EVERY seconds)."""
        now = time.monotonic()
        if now - self._synced.get(mailbox, -SYNCED_EVERY) < SYNCED_EVERY:
            return
        self._synced[mailbox] = now
        await self._health(mailbox, {"last_sync": utcnow().isoformat()})

    async def failed(self, mailbox: str, error: str) -> None:
        """A session ended in this error (the worker reconnects with a back-off)."""
        await self._health(
            mailbox, {"last_error": error[:500], "last_error_at": utcnow().isoformat()}
        )

    async def _health(self, mailbox: str, fields: dict[str, str]) -> None:
        # Health notes must never stop a mailbox: a failure here is logged and forgotten.
        try:
            async with self.db.transaction() as s:
                row = await s.get(KeyValue, HEALTH_PREFIX + mailbox)
                if row is None:
                    s.add(KeyValue(key=HEALTH_PREFIX + mailbox, value=fields, updated_at=utcnow()))
                else:
                    row.value, row.updated_at = {**row.value, **fields}, utcnow()
        except Exception as exc:
            log.warning("mailbox %s: recording its health failed (%s)", mailbox, exc)

    async def spam(self, mailbox: str, message_id: str, layer: str, reason: str) -> None:
        """Why this mail goes to the spam folder. Like the health notes, a failure is logged
        and forgotten: the reason is in the log line too, and spam must not stall a mailbox."""
        now = utcnow()
        prune = time.monotonic() - self._pruned >= PRUNE_EVERY
        try:
            async with self.db.transaction() as s:
                if prune:
                    cutoff = now - timedelta(days=SPAM_NOTE_DAYS)
                    await s.execute(delete(MailSpamNote).where(MailSpamNote.noted_at < cutoff))
                s.add(
                    MailSpamNote(
                        mailbox=note_key(mailbox),
                        message_id=message_key(message_id),
                        layer=layer[:20],
                        reason=reason[:500],
                        noted_at=now,
                    )
                )
        except Exception as exc:
            log.warning("mailbox %s: noting why %s is spam failed (%s)", mailbox, message_id, exc)
            return
        if prune:
            self._pruned = time.monotonic()

    async def load(self, mailbox: str) -> MailSync | None:
        async with self.db.transaction() as s:
            row = await s.get(KeyValue, SYNC_PREFIX + mailbox)
        if row is None:
            return None
        v = row.value
        try:
            return MailSync(
                uidvalidity=int(v["uidvalidity"]),
                last_uid=int(v["last_uid"]),
                source=str(v["source"]),
                synced_at=datetime.fromisoformat(str(v["synced_at"])),
            )
        except (KeyError, TypeError, ValueError):  # hand-edited or foreign row: start afresh
            return None

    async def save(self, mailbox: str, *, uidvalidity: int, last_uid: int, source: str) -> None:
        now = utcnow()
        value = {
            "uidvalidity": uidvalidity,
            "last_uid": last_uid,
            "source": source,
            "synced_at": now.isoformat(),
        }
        async with self.db.transaction() as s:
            row = await s.get(KeyValue, SYNC_PREFIX + mailbox)
            if row is None:
                s.add(KeyValue(key=SYNC_PREFIX + mailbox, value=value, updated_at=now))
            else:
                row.value, row.updated_at = value, now

    async def recent_from(self, address: str, since: datetime) -> int:
        """Mail events received since `since` whose customer address is `address`."""
        customer = InboundEventLog.payload[("meta", "customer")].as_string()
        async with self.db.transaction() as s:
            count = await s.scalar(
                select(func.count())
                .select_from(InboundEventLog)
                .where(
                    InboundEventLog.channel == "email",
                    InboundEventLog.received_at >= since,
                    InboundEventLog.outcome != "ignored",  # auto-replies do not use it up
                    customer == address.lower(),
                )
            )
        return int(count or 0)

    async def rep_addresses(self) -> frozenset[str]:
        """Every rep's email address (inactive ones too: their old mail still loops)."""
        async with self.db.transaction() as s:
            found = await s.scalars(select(Rep.email).where(Rep.email.is_not(None)))
            return frozenset(e.strip().lower() for e in found if e and e.strip())
