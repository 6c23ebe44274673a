"""Web console sign-in: one-time links (from the bot's /web or the CLI) and browser sessions.

Only hashes of the link and session tokens are stored, so a copy of the database signs no one
in. A session's CSRF token is not a credential on its own (it is useless without the cookie), so
it is kept as is and handed to the pages.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from crm.db import Database
from crm.dto import Actor, RepView
from crm.errors import Forbidden
from crm.models import Rep, WebLink, WebSession, utcnow
from crm.services.access import get_or_404, secret_hash
from crm.services.views import rep_view

LINK_TTL = timedelta(minutes=10)
DEFAULT_SESSION_TTL = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """What redeeming a link gives the browser: the cookie value and the CSRF token."""

    session_token: str
    csrf_token: str


@dataclass(frozen=True, slots=True)
class WebSessionView:
    rep: RepView
    csrf_token: str
    expires_at: datetime

    @property
    def actor(self) -> Actor:
        return Actor(rep_id=self.rep.id, role=self.rep.role)


class WebSessions:
    def __init__(
        self,
        db: Database,
        *,
        session_ttl: timedelta = DEFAULT_SESSION_TTL,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.session_ttl = session_ttl
        self.clock = clock

    async def create_link(self, rep_id: int) -> str:
        """A one-time sign-in token for an active rep, valid for `LINK_TTL`."""
        token = secrets.token_urlsafe(32)
        async with self.db.transaction() as s:
            rep: Rep = await get_or_404(s, Rep, rep_id, "rep")
            if not rep.active:
                raise Forbidden(f"rep #{rep_id} is deactivated")
            now = self.clock()
            # Expired links are of no use to anyone: drop them as new ones are made.
            await s.execute(delete(WebLink).where(WebLink.expires_at < now))
            s.add(WebLink(token_hash=secret_hash(token), rep_id=rep.id, expires_at=now + LINK_TTL))
        return token

    async def redeem(self, token: str) -> SignedIn:
        """Turn a link into a session, once; Forbidden when it is unknown, used, expired or
        its rep was deactivated."""
        now = self.clock()
        async with self.db.transaction() as s:
            link = await s.scalar(
                select(WebLink).where(WebLink.token_hash == secret_hash(token)).with_for_update()
            )
            if link is None or link.used_at is not None:
                raise Forbidden("this sign-in link was already used or does not exist")
            if link.expires_at <= now:
                raise Forbidden("this sign-in link has expired")
            link.used_at = now
            rep = await s.get(Rep, link.rep_id)
            if rep is None or not rep.active:
                raise Forbidden("this rep is deactivated")
            await s.execute(delete(WebSession).where(WebSession.expires_at < now))
            session_token = secrets.token_urlsafe(32)
            csrf = secrets.token_urlsafe(32)
            s.add(
                WebSession(
                    token_hash=secret_hash(session_token),
                    rep_id=rep.id,
                    csrf_token=csrf,
                    created_at=now,
                    expires_at=now + self.session_ttl,
                )
            )
        return SignedIn(session_token, csrf)

    async def resolve(self, session_token: str) -> WebSessionView | None:
        """The live session of this cookie value with its rep, or None (unknown, expired,
        ended, or the rep was deactivated)."""
        if not session_token:
            return None
        async with self.db.read() as s:
            row = await s.execute(
                select(WebSession, Rep)
                .join(Rep, Rep.id == WebSession.rep_id)
                .where(WebSession.token_hash == secret_hash(session_token))
            )
            found = row.first()
            if found is None:
                return None
            session, rep = found
            if session.expires_at <= self.clock() or not rep.active:
                return None
            return WebSessionView(rep_view(rep), session.csrf_token, session.expires_at)

    async def end(self, session_token: str) -> None:
        async with self.db.transaction() as s:
            await s.execute(
                delete(WebSession).where(WebSession.token_hash == secret_hash(session_token))
            )

    async def end_all(self, rep_id: int) -> None:
        """Sign a rep out everywhere (on deactivation)."""
        async with self.db.transaction() as s:
            await s.execute(delete(WebSession).where(WebSession.rep_id == rep_id))
