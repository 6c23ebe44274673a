"""Web console sign-in links and sessions (crm.web_sessions), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from crm.errors import Forbidden, NotFound
from crm.facade import Crm
from crm.models import WebLink, WebSession, utcnow
from crm.services.websessions import WebSessions


async def test_a_link_signs_in_once_and_the_session_knows_the_rep(crm: Crm) -> None:
    rep = await crm.reps.add("Rita Rep", role="supervisor")
    token = await crm.web_sessions.create_link(rep.id)
    signed = await crm.web_sessions.redeem(token)
    session = await crm.web_sessions.resolve(signed.session_token)
    assert session is not None
    assert (session.rep.id, session.rep.role, session.csrf_token) == (
        rep.id,
        "supervisor",
        signed.csrf_token,
    )
    assert session.actor.rep_id == rep.id and session.actor.sees_everything
    with pytest.raises(Forbidden, match="already used"):
        await crm.web_sessions.redeem(token)


async def test_only_hashes_of_the_tokens_are_stored(crm: Crm) -> None:
    rep = await crm.reps.add("Rita Rep")
    token = await crm.web_sessions.create_link(rep.id)
    signed = await crm.web_sessions.redeem(token)
    async with crm.db.read() as s:
        link = await s.scalar(select(WebLink))
        session = await s.scalar(select(WebSession))
    assert link is not None and session is not None
    assert token not in link.token_hash and signed.session_token not in session.token_hash


async def test_an_expired_link_is_refused(crm: Crm) -> None:
    rep = await crm.reps.add("Rita Rep")
    eleven_minutes_ago = WebSessions(crm.db, clock=lambda: utcnow() - timedelta(minutes=11))
    token = await eleven_minutes_ago.create_link(rep.id)
    with pytest.raises(Forbidden, match="expired"):
        await crm.web_sessions.redeem(token)


async def test_unknown_links_and_inactive_reps_are_refused(crm: Crm) -> None:
    with pytest.raises(Forbidden):
        await crm.web_sessions.redeem("no-such-token")
    with pytest.raises(NotFound):
        await crm.web_sessions.create_link(999)
    rep = await crm.reps.add("Rita Rep")
    token = await crm.web_sessions.create_link(rep.id)
    await crm.reps.deactivate(rep.id)
    with pytest.raises(Forbidden, match="deactivated"):
        await crm.web_sessions.redeem(token)
    with pytest.raises(Forbidden, match="deactivated"):
        await crm.web_sessions.create_link(rep.id)


async def test_sessions_expire_on_the_server_and_end(crm: Crm) -> None:
    rep = await crm.reps.add("Rita Rep")
    short = WebSessions(crm.db, session_ttl=timedelta(seconds=-1))
    stale = await short.redeem(await short.create_link(rep.id))
    assert await crm.web_sessions.resolve(stale.session_token) is None
    live = await crm.web_sessions.redeem(await crm.web_sessions.create_link(rep.id))
    other = await crm.web_sessions.redeem(await crm.web_sessions.create_link(rep.id))
    await crm.web_sessions.end(live.session_token)
    assert await crm.web_sessions.resolve(live.session_token) is None
    assert await crm.web_sessions.resolve(other.session_token) is not None
    assert await crm.web_sessions.resolve("") is None


async def test_deactivating_a_rep_ends_their_sessions(crm: Crm) -> None:
    rep = await crm.reps.add("Rita Rep")
    keep = await crm.reps.add("Karl Keep")
    gone = await crm.web_sessions.redeem(await crm.web_sessions.create_link(rep.id))
    kept = await crm.web_sessions.redeem(await crm.web_sessions.create_link(keep.id))
    await crm.reps.deactivate(rep.id)
    assert await crm.web_sessions.resolve(gone.session_token) is None
    assert await crm.web_sessions.resolve(kept.session_token) is not None
    await crm.web_sessions.end_all(keep.id)
    assert await crm.web_sessions.resolve(kept.session_token) is None
