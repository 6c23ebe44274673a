"""Idempotency keys of the write API: the same key with the same body answers what the
first request answered (kept 24 hours); another body under the key is refused.

The key's row is committed before the work starts, so of two concurrent requests with one
key only the one that inserted it does the work; the other finds the row unfinished and is
told to retry (PostgreSQL's unique index makes the second INSERT wait for the first commit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from crm.db import Database
from crm.errors import Conflict, CrmError
from crm.models import IdempotentRequest, utcnow

KEEP = timedelta(hours=24)
# A key whose first request never finished (its process died, or the database went away
# before the answer was stored) is free again after this, so a retry is not refused all day.
STALE = timedelta(minutes=2)


class KeyReused(CrmError):
    """The key was used before with another request (422 in the API)."""

    code = "idempotency_key_reused"


@dataclass(frozen=True, slots=True)
class Stored:
    status: int
    body: str  # the JSON text answered the first time


class Idempotency:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def begin(self, token_id: int, key: str, request_hash: str) -> Stored | None:
        """None: this request owns the key and must `finish` (or `abandon`) it; else the
        answer to repeat."""
        cutoff = utcnow() - KEEP
        try:
            async with self.db.transaction() as s:
                await s.execute(
                    delete(IdempotentRequest).where(IdempotentRequest.created_at < cutoff)
                )
                s.add(
                    IdempotentRequest(
                        token_id=token_id, key=key, request_hash=request_hash, created_at=utcnow()
                    )
                )
            return None
        except IntegrityError:
            pass
        async with self.db.read() as s:
            row = await s.scalar(
                select(IdempotentRequest).where(
                    IdempotentRequest.token_id == token_id, IdempotentRequest.key == key
                )
            )
        if row is None:  # expired and purged by another request in between
            return await self.begin(token_id, key, request_hash)
        unfinished = row.status is None or row.response is None
        if unfinished and row.created_at < utcnow() - STALE and await self._release(row.id):
            return await self.begin(token_id, key, request_hash)
        if row.request_hash != request_hash:
            raise KeyReused(
                "this Idempotency-Key was used with another request; use a new key for it"
            )
        if unfinished or row.status is None or row.response is None:
            raise Conflict("a request with this Idempotency-Key is still being answered; retry")
        return Stored(row.status, row.response)

    async def finish(self, token_id: int, key: str, status: int, body: str) -> None:
        async with self.db.transaction() as s:
            row = await s.scalar(
                select(IdempotentRequest).where(
                    IdempotentRequest.token_id == token_id, IdempotentRequest.key == key
                )
            )
            if row is not None:
                row.status, row.response = status, body

    async def _release(self, row_id: int) -> bool:
        """Drop an unfinished key's row; False when another request did so first."""
        async with self.db.transaction() as s:
            done = await s.execute(
                delete(IdempotentRequest).where(
                    IdempotentRequest.id == row_id, IdempotentRequest.status.is_(None)
                )
            )
            return bool(getattr(done, "rowcount", 0))

    async def abandon(self, token_id: int, key: str) -> None:
        """Free the key after a failure nothing was answered for, so a retry can run."""
        async with self.db.transaction() as s:
            await s.execute(
                delete(IdempotentRequest).where(
                    IdempotentRequest.token_id == token_id, IdempotentRequest.key == key
                )
            )
