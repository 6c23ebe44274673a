"""REST API bearer tokens, stored hashed."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from crm.db import Database
from crm.dto import SYSTEM, Actor
from crm.errors import InvalidInput, NotFound
from crm.models import ApiToken, utcnow
from crm.services.reps import require_admin


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, name: str, actor: Actor = SYSTEM) -> tuple[int, str]:
        require_admin(actor, "create API tokens")
        if not name.strip():
            raise InvalidInput("a token needs a name")
        token = "lb_" + secrets.token_urlsafe(32)
        async with self.db.transaction() as s:
            row = ApiToken(name=name.strip(), token_hash=_hash(token), created_at=utcnow())
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

    async def all(self, actor: Actor = SYSTEM) -> list[tuple[int, str, bool]]:
        require_admin(actor, "list API tokens")
        async with self.db.read() as s:
            rows = await s.scalars(select(ApiToken).order_by(ApiToken.id))
            return [(r.id, r.name, r.revoked_at is None) for r in rows]

    async def check(self, token: str) -> bool:
        async with self.db.read() as s:
            row = await s.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(token)))
            return row is not None and row.revoked_at is None
