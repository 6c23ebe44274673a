"""One watched mailbox: its settings and what the worker needs from the rest of the service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from channels.event import InboundEvent
from channels.mail.filters import MailPolicy
from channels.mail.imap import ImapServer
from channels.mail.spamguard import SpamConfig

# Set on a message before it goes to quarantine, so even one that could not be moved is never
# read again (searches skip it).
QUARANTINE_KEYWORD = "$LeadbotQuarantine"


@dataclass(frozen=True, slots=True)
class MailboxConfig:
    name: str  # also the event's `line` and the key of the persisted sync point
    server: ImapServer
    folder: str = "INBOX"
    processed_folder: str | None = None  # None: flag \Seen and leave the mail where it is
    quarantine_folder: str = "Leadbot-Quarantine"
    region: str | None = None  # default phone region of numbers in these mails
    queue: tuple[int, ...] = ()  # rep ids for the round robin of new leads
    first_sync_days: int = 7  # a mailbox never seen before: read this many days back
    # Own mailboxes, robots, lists and the rate limit; rep addresses are added at run time.
    policy: MailPolicy = field(default_factory=MailPolicy)
    poll_interval: float = 60.0  # without IDLE
    idle_renew_seconds: float = 25 * 60.0  # servers drop IDLE after 30 minutes (RFC 2177)
    reconnect_min_seconds: float = 1.0
    reconnect_max_seconds: float = 120.0
    timeout: float = 30.0  # for one IMAP command
    max_attempts: int = 3  # intake failing this often on one mail (not an outage): quarantine
    spam: SpamConfig = field(default_factory=SpamConfig)

    def __post_init__(self) -> None:
        aside = (self.processed_folder, self.quarantine_folder, self.spam.folder)
        for folder in (self.folder, *aside):
            if folder is not None and (not folder.strip() or any(c in folder for c in "\0\r\n")):
                raise ValueError(f"mailbox {self.name}: bad folder name {folder!r}")
        if self.folder in aside:
            raise ValueError(
                f"mailbox {self.name}: the processed, quarantine and spam folders must differ "
                f"from the watched folder {self.folder}"
            )
        if self.first_sync_days < 0 or self.max_attempts < 1:
            raise ValueError(f"mailbox {self.name}: first_sync_days and max_attempts out of range")
        limits = (self.poll_interval, self.idle_renew_seconds, self.timeout)
        if min(limits) <= 0 or not 0 < self.reconnect_min_seconds <= self.reconnect_max_seconds:
            raise ValueError(f"mailbox {self.name}: intervals must be positive")

    @property
    def source(self) -> str:
        """Which server folder the sync point belongs to; another one starts afresh."""
        return f"{self.server.user}@{self.server.host}:{self.server.port}/{self.folder}"


class SyncRecord(Protocol):
    """A persisted sync point (crm.services.mailstate.MailSync)."""

    @property
    def uidvalidity(self) -> int: ...

    @property
    def last_uid(self) -> int: ...

    @property
    def source(self) -> str: ...

    @property
    def synced_at(self) -> datetime: ...


class MailStore(Protocol):
    """Persistence and CRM facts (crm.services.mailstate.MailState)."""

    async def load(self, mailbox: str) -> SyncRecord | None: ...

    async def save(self, mailbox: str, *, uidvalidity: int, last_uid: int, source: str) -> None: ...

    async def recent_from(self, address: str, since: datetime) -> int: ...

    async def rep_addresses(self) -> frozenset[str]: ...

    async def synced(self, mailbox: str) -> None: ...  # for channel health; never raises

    async def failed(self, mailbox: str, error: str) -> None: ...  # likewise

    # Why a mail goes to the spam folder (the console's quarantine page); never raises.
    async def spam(self, mailbox: str, message_id: str, layer: str, reason: str) -> None: ...


class Committed(Protocol):
    @property
    def outcome(self) -> str: ...


# Commits one event through intake and returns once it is durable (Service.process_now).
Sink = Callable[[InboundEvent], Awaitable[Committed]]
