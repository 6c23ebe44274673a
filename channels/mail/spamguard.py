"""The three spam layers of one mailbox in order: the upstream server's verdict headers, cheap
markers, then (optional) spamd. The first that calls a mail spam decides.

A scanner that is down or slow never holds mail back: the mail goes on unscanned (the first two
layers still apply), the outage is logged once and again when it is over, and every unscanned
mail is counted; while it is down it is asked again every 30 s, not for every mail. Holding
mail until the scanner is back would stall the whole mailbox (mail is handled in order) for a
filter that only ever keeps mail *out*.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from channels.mail.parse import ParsedMail
from channels.mail.settings import MailboxSettings
from channels.mail.spam import SpamLayer, SpamPolicy, SpamVerdict, judge
from channels.mail.spamd import MAX_MESSAGE_BYTES, SpamdClient, SpamdError

log = logging.getLogger(__name__)

# Set on mail moved to the spam folder (a mail that could not be moved is never read again),
# and on released mail instead (read again, not judged again).
SPAM_KEYWORD = "$LeadbotSpam"
RELEASED_KEYWORD = "$LeadbotReleased"
_SHOWN_SYMBOLS = 8
RETRY_SCANNER_SECONDS = 30.0  # after a failed scan, ask the scanner again after this long
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class SpamConfig:
    folder: str = "Leadbot-Spam"
    policy: SpamPolicy = field(default_factory=SpamPolicy)
    spamd: SpamdClient | None = None  # None: no scanner


def spam_config(box: MailboxSettings) -> SpamConfig:
    policy = SpamPolicy(
        trust_headers=box.spam_trust_headers,
        markers=box.spam_markers,
        marker_score=box.spam_marker_score,
    )
    spamd = None
    if box.spamd_host:
        spamd = SpamdClient(box.spamd_host, box.spamd_port, box.spamd_timeout)
    return SpamConfig(folder=box.spam_folder, policy=policy, spamd=spamd)


def spam_id(message_id: str | None, raw: bytes) -> str:
    """The key a spam note is filed under: the Message-ID, or for a mail without one a hash of
    its header section, which the quarantine page fetches anyway (the synthetic Message-ID of
    `parse_message` hashes the whole mail, too much to fetch for a list)."""
    if message_id is not None:
        return message_id
    header = _BLANK_LINE.split(raw, 1)[0].replace(b"\r\n", b"\n").rstrip(b"\n")
    return f"<{hashlib.sha256(header).hexdigest()}@header.leadbot>"


class SpamGuard:
    def __init__(
        self, config: SpamConfig, mailbox: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.mailbox = mailbox
        self.unscanned = 0  # mails the scanner should have seen but could not
        self._clock = clock
        self._scanner_down = False
        self._retry_at = 0.0  # while down: mail goes on unscanned without asking until then

    async def check(self, raw: bytes, parsed: ParsedMail, *, robot: bool) -> SpamVerdict | None:
        """Spam (with the layer and reason) or None; never raises. `robot`: a web-form robot
        sent it (its Reply-To is the customer, not a trick)."""
        try:
            verdict = await asyncio.to_thread(
                partial(judge, raw, parsed, self.config.policy, robot=robot)
            )
        except Exception:  # a bug in a marker must not block the mailbox
            log.exception("mailbox %s: spam markers failed on %s", self.mailbox, parsed.message_id)
            verdict = None
        if verdict is not None or self.config.spamd is None:
            return verdict
        return await self._scan(self.config.spamd, raw, parsed)

    async def _scan(self, spamd: SpamdClient, raw: bytes, parsed: ParsedMail) -> SpamVerdict | None:
        if len(raw) > MAX_MESSAGE_BYTES:  # as spamc: big mail is rarely spam and slow to scan
            log.info(
                "mailbox %s: %s not scanned: %d bytes", self.mailbox, parsed.message_id, len(raw)
            )
            return None
        now = self._clock()
        if self._scanner_down and now < self._retry_at:
            self.unscanned += 1  # a hanging scanner must not cost every mail its timeout
            return None
        try:
            result = await spamd.symbols(raw)
        except SpamdError as exc:
            self.unscanned += 1
            self._retry_at = self._clock() + RETRY_SCANNER_SECONDS
            if not self._scanner_down:
                self._scanner_down = True
                log.warning(
                    "mailbox %s: spam scanner unavailable (%s); mail goes on unscanned until "
                    "it answers again",
                    self.mailbox,
                    exc,
                )
            return None
        if self._scanner_down:
            self._scanner_down = False
            log.warning("mailbox %s: spam scanner answers again", self.mailbox)
        if not result.spam:
            return None
        shown = ",".join(result.symbols[:_SHOWN_SYMBOLS])
        more = "…" if len(result.symbols) > _SHOWN_SYMBOLS else ""
        reason = f"spamd {result.score:g} / {result.threshold:g}: {shown}{more}"
        return SpamVerdict(SpamLayer.SCANNER, reason)
