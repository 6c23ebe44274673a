"""REST API bearer tokens, stored hashed, with scopes and an optional rep they act as."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from crm.db import Database
from crm.dto import SYSTEM, Actor
from crm.errors import InvalidInput, NotFound
from crm.models import ApiToken, Rep, utcnow
from crm.services.access import active_rep, secret_hash
from crm.services.reps import require_admin

SCOPES = ("read", "write")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    active: bool
    scopes: tuple[str, ...]
    rep_id: int | None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a valid token lets in: its scopes, and the actor whose rights apply."""

    token_id: int
    scopes: frozenset[str]
    actor: Actor


def parse_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    given = {s.strip() for s in scopes if s.strip()}
    unknown = given - set(SCOPES)
    if unknown or not given:
        raise InvalidInput(
            f"scopes must be some of {', '.join(SCOPES)}"
            + (f", not {', '.join(sorted(unknown))}" if unknown else "")
        )
    return tuple(s for s in SCOPES if s in given)


class Tokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        name: str,
        *,
        scopes: Iterable[str] = ("read",),
        rep_id: int | None = None,
        actor: Actor = SYSTEM,
    ) -> tuple[int, str]:
        require_admin(actor, "create API tokens")
        if not name.strip():
            raise InvalidInput("a token needs a name")
        checked = parse_scopes(scopes)
        token = "lb_" + secrets.token_urlsafe(32)
        async with self.db.transaction() as s:
            if rep_id is not None:
                await active_rep(s, rep_id)
            row = ApiToken(
                name=name.strip(),
                token_hash=secret_hash(token),
                created_at=utcnow(),
                scopes=",".join(checked),
                rep_id=rep_id,
            )
            s.add(row)
            await s.flush()
            return row.id, token

    async def revoke(self, token_id: int, actor: Actor = SYSTEM) -> None:
        require_admin(actor, "revoke API tokens")
        async with self.db.transaction() as s:
            row = await s.get(ApiToken, token_id)
            if row is None:
                raise NotFound(f"token #{token_id} does not exist")
            row.revoked_at = row.revoked_at or utcnow()

    async def all(self, actor: Actor = SYSTEM) -> list[TokenInfo]:
        require_admin(actor, "list API tokens")
        async with self.db.read() as s:
            rows = await s.scalars(select(ApiToken).order_by(ApiToken.id))
            return [
                TokenInfo(r.id, r.name, r.revoked_at is None, tuple(r.scopes.split(",")), r.rep_id)
                for r in rows
            ]

    async def check(self, token: str) -> bool:
        return await self.identify(token) is not None

    async def identify(self, token: str) -> Caller | None:
        """The caller behind a token; None for an unknown or revoked one, or one whose rep
        was deactivated (a token must not outlive its rep's access)."""
        async with self.db.read() as s:
            row = await s.scalar(select(ApiToken).where(ApiToken.token_hash == secret_hash(token)))
            if row is None or row.revoked_at is not None:
                return None
            actor = SYSTEM
            if row.rep_id is not None:
                rep = await s.get(Rep, row.rep_id)
                if rep is None or not rep.active:
                    return None
                actor = Actor(rep.id, rep.role)
            return Caller(row.id, frozenset(row.scopes.split(",")), actor)
