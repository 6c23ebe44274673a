"""The IMAP loop of one mailbox: sync, then IDLE (or poll), reconnecting with backoff.

Order per message, so nothing is lost or doubled: fetch without \\Seen → parse → filter →
commit through intake → flag \\Seen or move → persist the UID. A crash anywhere before the last
step only re-reads the mail, and intake is idempotent by Message-ID.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from channels.event import EventMeta, InboundEvent
from channels.mail.filters import Verdict, VerdictKind, classify, customer, is_robot
from channels.mail.imap import ImapError, ImapRefused, ImapSession, Selected, imap_date
from channels.mail.mailbox import QUARANTINE_KEYWORD, MailboxConfig, MailStore, Sink
from channels.mail.parse import MailParseError, ParsedMail, parse_message
from channels.mail.spam import SpamVerdict
from channels.mail.spamguard import RELEASED_KEYWORD, SPAM_KEYWORD, SpamGuard, spam_id
from channels.mail.to_event import to_event
from crm.supervisor import Health

log = logging.getLogger(__name__)

RATE_WINDOW = timedelta(hours=1)


def backoff_delay(attempt: int, low: float, high: float, jitter: float) -> float:
    """Capped exponential backoff; `jitter` in [0, 1) spreads it over [half, full] delay."""
    grown: float = low * 2.0 ** min(attempt, 32)
    return min(high, grown) * (0.5 + jitter / 2)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OSError | TimeoutError)


@dataclass
class MailboxStats:
    """Counters for logs, metrics and tests."""

    connects: int = 0
    committed: int = 0  # went through intake (duplicates included)
    ignored: int = 0
    quarantined: int = 0
    spam: dict[str, int] = field(default_factory=dict)  # moved to the spam folder, by layer
    failures: int = 0  # sessions that ended in an error
    last_error: str | None = None
    waiting: bool = False  # caught up, in IDLE or between polls
    idle_renewals: int = 0  # IDLE ended by our timer, not by news
    # The last login: None before the first try, then whether it succeeded, since when
    # (unix time) and, when it failed, why. /readyz and leadbot_mailbox_connected show it.
    login_ok: bool | None = None
    login_since: float | None = None
    login_error: str | None = None
    # When the folder was last read to its end (unix time): a mailbox that logs in but never
    # gets through its folder shows as a growing age.
    synced_at: float | None = None

    def sync_age(self, now: float) -> float | None:
        return None if self.synced_at is None else max(0.0, now - self.synced_at)

    def login(self, ok: bool, error: str | None = None) -> None:
        if ok != self.login_ok:
            self.login_since = time.time()
        self.login_ok, self.login_error = ok, error


@dataclass
class _Cursor:
    uidvalidity: int
    last_uid: int
    # A first sync or a resync after a UIDVALIDITY change reads by date, then by UID.
    since: date | None = None
    uidnext: int | None = None

    def criteria(self) -> tuple[str, ...]:
        # Quarantined or spam mail that could not be moved: the keyword keeps it from a resync.
        # A spam-tagged mail with a new UID was moved back by a person: a release.
        if self.since is not None:
            skip = ("UNKEYWORD", QUARANTINE_KEYWORD, "UNKEYWORD", SPAM_KEYWORD)
            return ("SINCE", imap_date(self.since), *skip)
        return ("UID", f"{self.last_uid + 1}:*", "UNKEYWORD", QUARANTINE_KEYWORD)


class MailboxWorker:
    def __init__(
        self,
        config: MailboxConfig,
        sink: Sink,
        store: MailStore,
        *,
        is_outage: Callable[[BaseException], bool] = _is_outage,
        clock: Callable[[], datetime] = _utcnow,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.sink = sink
        self.store = store
        self.is_outage = is_outage
        self.clock = clock
        self.jitter = jitter
        self.stats = MailboxStats()
        self.spam_guard = SpamGuard(config.spam, config.name)
        self._policy = config.policy
        self._failed: dict[tuple[int, int], int] = {}  # (uidvalidity, uid) → failed tries
        self._folders: set[str] = set()  # created in this session

    def health(self) -> Health:
        """Ready once logged in, and while the last login succeeded (not before the first)."""
        st = self.stats
        age = st.sync_age(time.time())
        return Health(
            st.login_ok is True,
            {
                "logged_in": st.login_ok,
                "since": st.login_since,
                "error": st.login_error,
                "last_sync_age": None if age is None else round(age, 1),
            },
        )

    # --- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; every error ends the session and reconnects later."""
        name = self.config.name
        attempt = 0
        while not stop.is_set():
            try:
                if await self._session(stop):
                    attempt = 0
            except Exception as exc:
                self.stats.failures += 1
                self.stats.last_error = str(exc) or type(exc).__name__
                if isinstance(exc, ImapRefused):  # login, folder …: needs an admin
                    log.error("mailbox %s: %s", name, self.stats.last_error)
                elif isinstance(exc, ImapError) or self.is_outage(exc):
                    log.warning("mailbox %s: %s", name, self.stats.last_error)
                else:
                    log.exception("mailbox %s: unexpected error", name)
                await self.store.failed(name, self.stats.last_error)
            if stop.is_set():
                break
            delay = backoff_delay(
                attempt,
                self.config.reconnect_min_seconds,
                self.config.reconnect_max_seconds,
                self.jitter(),
            )
            attempt += 1
            log.info("mailbox %s: reconnecting in %.1f s", name, delay)
            await _sleep(stop, delay)

    async def _session(self, stop: asyncio.Event) -> bool:
        """One connection; returns when stopped, raises on failure."""
        cfg = self.config
        try:
            session = await ImapSession.open(cfg.server, timeout=cfg.timeout)
        except Exception as exc:
            self.stats.login(False, str(exc) or type(exc).__name__)
            raise
        self.stats.login(True)
        self._folders.clear()
        try:
            self.stats.connects += 1
            cursor = await self._cursor(await session.select(cfg.folder))
            idle = session.offers("IDLE")
            log.info(
                "mailbox %s: connected to %s, %s",
                cfg.name,
                cfg.source,
                "waiting in IDLE" if idle else f"polling every {cfg.poll_interval:g} s",
            )
            healthy = False
            while not stop.is_set():
                await self._drain(session, cursor, stop)
                self.stats.synced_at = time.time()
                await self.store.synced(cfg.name)
                healthy = True
                if stop.is_set():
                    break
                self.stats.waiting = True
                try:
                    if idle:
                        news = await session.idle(cfg.idle_renew_seconds, stop)
                        if not news and not stop.is_set():
                            self.stats.idle_renewals += 1
                    elif not await _sleep(stop, cfg.poll_interval):
                        await session.noop()
                finally:
                    self.stats.waiting = False
            return healthy
        finally:
            await session.close()

    async def _cursor(self, selected: Selected) -> _Cursor:
        cfg = self.config
        saved = await self.store.load(cfg.name)
        now = self.clock()
        window = (now - timedelta(days=cfg.first_sync_days)).date() if cfg.first_sync_days else None
        since: date | None
        if saved is not None and saved.source == cfg.source:
            if saved.uidvalidity == selected.uidvalidity:
                return _Cursor(selected.uidvalidity, saved.last_uid)
            # The server renumbered the folder: read again everything since we last looked;
            # intake drops what it has already seen by Message-ID.
            since = (saved.synced_at - timedelta(days=1)).date()
            since = min(since, window) if window else since
            log.warning(
                "mailbox %s: UIDVALIDITY changed from %s to %s, reading again since %s",
                cfg.name,
                saved.uidvalidity,
                selected.uidvalidity,
                since,
            )
        else:
            since = window
            log.info("mailbox %s: first sync, reading mail since %s", cfg.name, since or "now")
        cursor = _Cursor(selected.uidvalidity, 0, since=since, uidnext=selected.uidnext)
        if since is None:  # nothing old wanted: start after the newest mail
            await self._finish_first_sync(cursor, [])
        return cursor

    async def _finish_first_sync(self, cursor: _Cursor, handled: list[int]) -> None:
        top = [*handled, cursor.last_uid]
        if cursor.uidnext is not None:
            top.append(cursor.uidnext - 1)
        cursor.since, cursor.last_uid = None, max(top)
        await self._save(cursor)

    async def _save(self, cursor: _Cursor) -> None:
        await self.store.save(
            self.config.name,
            uidvalidity=cursor.uidvalidity,
            last_uid=cursor.last_uid,
            source=self.config.source,
        )

    async def _drain(self, session: ImapSession, cursor: _Cursor, stop: asyncio.Event) -> None:
        """Handle every mail after the cursor, oldest first, persisting progress per mail.

        Searches again until nothing new turns up: aioimaplib drops the EXISTS a server sends
        outside IDLE, so the last command before IDLE must be a search that found nothing.
        """
        while not stop.is_set():
            uids = [u for u in await session.search(*cursor.criteria()) if u > cursor.last_uid]
            if uids:
                reps = await self.store.rep_addresses()
                self._policy = replace(self.config.policy, rep_addresses=reps)
            for uid in uids:
                if stop.is_set():
                    return
                await self._handle(session, cursor.uidvalidity, uid)
                cursor.last_uid = uid
                await self._save(cursor)
            if cursor.since is not None:
                await self._finish_first_sync(cursor, uids)
            elif not uids:
                return

    # --- one message -------------------------------------------------------------------------

    async def _handle(self, session: ImapSession, uidvalidity: int, uid: int) -> None:
        """One mail. A failure that is neither an outage nor a lost connection (intake or
        the server refusing this mail) is retried `max_attempts` times, then quarantined."""
        cfg = self.config
        key = (uidvalidity, uid)
        try:
            await self._process(session, uidvalidity, uid)
        except Exception as exc:
            lost = isinstance(exc, ImapError) and not isinstance(exc, ImapRefused)
            if lost or self.is_outage(exc):
                raise
            self._failed[key] = self._failed.get(key, 0) + 1
            if self._failed[key] < cfg.max_attempts:
                raise
            log.error("mailbox %s: giving up on UID %s", cfg.name, uid, exc_info=exc)
            await self._quarantine(session, uid, f"failed {cfg.max_attempts} times: {exc}")
        self._failed.pop(key, None)

    async def _process(self, session: ImapSession, uidvalidity: int, uid: int) -> None:
        cfg = self.config
        raw = await session.fetch(uid)
        if raw is None:
            log.info("mailbox %s: UID %s vanished before it was read", cfg.name, uid)
            return
        try:
            parsed = await asyncio.to_thread(parse_message, raw, phone_region=cfg.region)
        except MailParseError as exc:
            await self._quarantine(session, uid, f"unreadable mail: {exc}")
            return
        except Exception as exc:  # a parser bug must not block the mailbox either
            log.exception("mailbox %s: parser crashed on UID %s", cfg.name, uid)
            await self._quarantine(session, uid, f"parser error: {exc!r}")
            return
        verdict = await self._verdict(parsed)
        if verdict.kind is VerdictKind.IGNORE:
            # Into the event log with its reason (nothing else is written), then left as it
            # is: a bounce or an auto-reply is a human's business, not the CRM's.
            await self.sink(self._event(parsed, verdict, uidvalidity, uid))
            self.stats.ignored += 1
            log.info(
                "mailbox %s: UID %s %s from %s ignored: %s",
                cfg.name,
                uid,
                parsed.message_id,
                parsed.sender.address,
                verdict.reason,
            )
            return
        robot = is_robot(parsed.sender.address, self._policy)
        spam = await self.spam_guard.check(raw, parsed, robot=robot)
        released = ("OR", "KEYWORD", RELEASED_KEYWORD, "KEYWORD", SPAM_KEYWORD)
        if spam is not None and not await session.search("UID", str(uid), *released):
            await self._to_spam(session, uid, raw, parsed, spam)
            return
        result = await self.sink(self._event(parsed, verdict, uidvalidity, uid))
        self.stats.committed += 1
        log.info("mailbox %s: UID %s %s → %s", cfg.name, uid, parsed.message_id, result.outcome)
        if cfg.processed_folder:
            try:
                await self._move(session, uid, cfg.processed_folder)
                return
            except ImapRefused as exc:  # a bad folder name must not stall the mailbox
                log.error("mailbox %s: UID %s stays, flagged read: %s", cfg.name, uid, exc)
        await session.add_flags(uid, "\\Seen")

    async def _verdict(self, parsed: ParsedMail) -> Verdict:
        verdict = classify(parsed, self._policy, 0)
        if verdict.kind is VerdictKind.IGNORE:
            return verdict
        who = customer(parsed, self._policy).address
        if who in self._policy.robot_senders:
            # A form robot without Reply-To: its volume is the web form's, not a loop.
            return verdict
        recent = await self.store.recent_from(who, self.clock() - RATE_WINDOW)
        return classify(parsed, self._policy, recent)

    def _event(
        self, parsed: ParsedMail, verdict: Verdict, uidvalidity: int, uid: int
    ) -> InboundEvent:
        cfg = self.config
        event = to_event(parsed, cfg.name, cfg.region, self._policy, verdict, now=self.clock())
        meta: EventMeta = {**event.meta}
        if cfg.queue:
            meta["queue"] = list(cfg.queue)  # intake's round robin for this mailbox
        return replace(event, meta=meta, raw_ref=f"imap:{cfg.name}/{uidvalidity}/{uid}")

    async def _quarantine(self, session: ImapSession, uid: int, reason: str) -> None:
        cfg = self.config
        self.stats.quarantined += 1
        log.error(
            "mailbox %s: UID %s goes to quarantine folder %s: %s",
            cfg.name,
            uid,
            cfg.quarantine_folder,
            reason,
        )
        try:
            await session.add_flags(uid, QUARANTINE_KEYWORD)
            await self._move(session, uid, cfg.quarantine_folder)
        except ImapRefused as exc:
            # The keyword (if set) keeps it from a resync; the saved UID from everything else.
            log.error("mailbox %s: UID %s stays in %s: %s", cfg.name, uid, cfg.folder, exc)

    async def _to_spam(
        self, session: ImapSession, uid: int, raw: bytes, parsed: ParsedMail, spam: SpamVerdict
    ) -> None:
        """Never intake (no record, no notification, no event: a release must find the
        Message-ID unseen); the reason goes to the log and to the quarantine's notes."""
        cfg = self.config
        self.stats.spam[spam.layer] = self.stats.spam.get(spam.layer, 0) + 1
        log.info(  # routine, like an ignored bounce; the reason lets a rep spot a mistake
            "mailbox %s: UID %s %s from %s goes to spam folder %s: %s",
            cfg.name,
            uid,
            parsed.message_id,
            parsed.sender.address,
            cfg.spam.folder,
            spam.reason,
        )
        message_id = None if parsed.synthetic_id else parsed.message_id
        await self.store.spam(cfg.name, spam_id(message_id, raw), spam.layer, spam.reason)
        try:
            await session.add_flags(uid, SPAM_KEYWORD)
            await self._move(session, uid, cfg.spam.folder)
        except ImapRefused as exc:
            log.error("mailbox %s: UID %s stays in %s: %s", cfg.name, uid, cfg.folder, exc)

    async def _move(self, session: ImapSession, uid: int, folder: str) -> None:
        if folder not in self._folders:
            try:
                await session.create(folder)
            except ImapRefused as exc:  # servers word "exists already" differently; MOVE tells
                log.debug("mailbox %s: %s", self.config.name, exc)
            self._folders.add(folder)
        await session.move(uid, folder)


async def _sleep(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep unless stopped first; True if stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
