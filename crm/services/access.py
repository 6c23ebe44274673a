"""Loading a record or refusing: not found (404 in the API, a polite bot reply) or
another rep's (forbidden); an active rep to give something to; what is kept of a secret."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm.changes import acting_rep
from crm.dto import (
    Actor,
)
from crm.errors import Conflict, Forbidden, NotFound
from crm.models import Rep


async def get_or_404(session: AsyncSession, model: Any, ident: int, what: str) -> Any:
    row = await session.get(model, ident)
    if row is None:
        raise NotFound(f"{what} #{ident} does not exist")
    return row


async def active_rep(session: AsyncSession, rep_id: int) -> Rep:
    """The rep a record or token is given to: one who exists and still works here."""
    rep: Rep = await get_or_404(session, Rep, rep_id, "rep")
    if not rep.active:
        raise Conflict(f"{rep.name} is not active")
    return rep


def secret_hash(secret: str) -> str:
    """What the database keeps of an invite code, API token, sign-in link or session: a
    stolen copy of the table signs nobody in."""
    return hashlib.sha256(secret.encode()).hexdigest()


def act_as(actor: Actor) -> None:
    """Name the rep the current transaction writes for, in the changes it publishes."""
    acting_rep.set(actor.rep_id)


def may_read(actor: Actor, responsible_id: int | None) -> bool:
    """A rep works own records and unassigned queue items; supervisors and admins everything."""
    return actor.sees_everything or responsible_id is None or responsible_id == actor.rep_id


def check_access(actor: Actor, responsible_id: int | None, what: str) -> None:
    act_as(actor)
    if not may_read(actor, responsible_id):
        raise Forbidden(f"{what} belongs to another rep")
