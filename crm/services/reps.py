"""Reps, invites, and the round-robin distribution queue for new leads."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import case, delete, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bulk import driver, fetch
from crm.bulk_sqlite import fetch as sqlite_fetch
from crm.db import Database, is_pg
from crm.dto import SYSTEM, Actor, RepView
from crm.errors import Conflict, Forbidden, InvalidInput, NotFound
from crm.models import KeyValue, Rep, WebSession, utcnow
from crm.services.access import get_or_404, secret_hash
from crm.services.views import rep_view

ROLES = ("rep", "supervisor", "admin")
INVITE_TTL = timedelta(days=7)


def require_admin(actor: Actor, what: str = "administer the team") -> None:
    """Only admins (and the operator's CLI, which acts as SYSTEM) may `what`."""
    if actor.role != "admin":
        raise Forbidden(f"only an admin can {what}")


def invite_text(bot_username: str | None, code: str) -> str:
    """What the CLI prints and the console shows for a new invite."""
    if bot_username:
        return f"invite link (valid 7 days, one use): https://t.me/{bot_username}?start={code}"
    return f"invite code (valid 7 days, one use): send the bot  /start {code}"


class Reps:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Called after a rep is added, joins, changes role or is deactivated (the bot redraws
        # the chat's command menu at once).
        self.on_change: list[Callable[[], None]] = []

    def _changed(self, rep: RepView) -> RepView:
        for hook in self.on_change:
            hook()
        return rep

    async def add(
        self,
        name: str,
        *,
        role: str = "rep",
        telegram_user_id: int | None = None,
        email: str | None = None,
        phone: str | None = None,
        extension: str | None = None,
        actor: Actor = SYSTEM,
    ) -> RepView:
        require_admin(actor, "add a rep")
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
        if not name.strip():
            raise InvalidInput("a rep needs a name")
        try:
            async with self.db.transaction() as s:
                rep = Rep(
                    name=name.strip(),
                    role=role,
                    telegram_user_id=telegram_user_id,
                    email=email.lower() if email else None,
                    phone=phone,
                    extension=extension,
                    active=True,
                    created_at=utcnow(),
                )
                s.add(rep)
                await s.flush()
                added = rep_view(rep)
        except IntegrityError:
            raise Conflict(f"Telegram user {telegram_user_id} is a rep already") from None
        return self._changed(added)

    async def all(self, include_inactive: bool = True) -> list[RepView]:
        async with self.db.read() as s:
            query = select(Rep).order_by(Rep.id)
            if not include_inactive:
                query = query.where(Rep.active.is_(True))
            return [rep_view(r) for r in await s.scalars(query)]

    async def get(self, rep_id: int) -> RepView:
        async with self.db.read() as s:
            return rep_view(await get_or_404(s, Rep, rep_id, "rep"))

    async def by_telegram(self, telegram_user_id: int) -> RepView | None:
        async with self.db.read() as s:
            rep = await s.scalar(select(Rep).where(Rep.telegram_user_id == telegram_user_id))
            return rep_view(rep) if rep else None

    async def deactivate(self, rep_id: int, actor: Actor = SYSTEM) -> RepView:
        require_admin(actor, "deactivate a rep")
        if rep_id == actor.rep_id:
            raise Conflict("you cannot deactivate yourself: ask another admin")
        async with self.db.transaction() as s:
            rep: Rep = await get_or_404(s, Rep, rep_id, "rep")
            rep.active = False
            # Signed out of the web console at once, in the same transaction.
            await s.execute(delete(WebSession).where(WebSession.rep_id == rep_id))
            gone = rep_view(rep)
        return self._changed(gone)

    async def set_role(self, rep_id: int, role: str, actor: Actor = SYSTEM) -> RepView:
        require_admin(actor, "change a rep's role")
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
        if rep_id == actor.rep_id and role != "admin":
            # The last admin could otherwise lock everyone out of the admin pages.
            raise Conflict("you cannot take away your own admin role: ask another admin")
        async with self.db.transaction() as s:
            rep: Rep = await get_or_404(s, Rep, rep_id, "rep")
            rep.role = role
            changed = rep_view(rep)
        return self._changed(changed)

    async def ensure_admins(self, telegram_ids: Sequence[int]) -> None:
        """Admins named in the configuration exist and are active admins."""
        async with self.db.transaction() as s:
            for tg_id in telegram_ids:
                rep = await s.scalar(select(Rep).where(Rep.telegram_user_id == tg_id))
                if rep is None:
                    s.add(Rep(name=f"Admin {tg_id}", telegram_user_id=tg_id, role="admin"))
                else:
                    rep.role, rep.active = "admin", True

    async def create_invite(self, rep_id: int, actor: Actor = SYSTEM) -> str:
        """A one-time code; `/start <code>` binds the Telegram account that sends it."""
        require_admin(actor, "invite a rep")
        code = secrets.token_urlsafe(18)
        async with self.db.transaction() as s:
            rep: Rep = await get_or_404(s, Rep, rep_id, "rep")
            if not rep.active:
                raise Conflict(f"{rep.name} is deactivated: an invite would not work")
            rep.invite_code_hash = secret_hash(code)
            rep.invite_expires_at = utcnow() + INVITE_TTL
        return code

    async def redeem_invite(self, code: str, telegram_user_id: int) -> RepView:
        async with self.db.transaction() as s:
            rep = await s.scalar(
                select(Rep).where(Rep.invite_code_hash == secret_hash(code.strip()))
            )
            if rep is None or not rep.active:
                raise NotFound("this invite link is not valid")
            if rep.invite_expires_at and rep.invite_expires_at < utcnow():
                raise Conflict("this invite link has expired; ask for a new one")
            other = await s.scalar(select(Rep).where(Rep.telegram_user_id == telegram_user_id))
            if other is not None and other.id != rep.id:
                raise Conflict("this Telegram account already belongs to another rep")
            rep.telegram_user_id = telegram_user_id
            rep.invite_code_hash = None
            rep.invite_expires_at = None
            joined = rep_view(rep)
        return self._changed(joined)


# `next_in_queue`'s UPSERT with the active ids as one array ($2): the first pick is the first
# id above the stored position (wrapping), the stored position becomes the count-th ($3) pick.
_PG_PICK = (
    "INSERT INTO state (key, value, updated_at)"
    " VALUES ($1, json_build_object('last', ($2::int[])[1 + ($3 - 1) % cardinality($2::int[])]),"
    " $4) ON CONFLICT (key) DO UPDATE SET value = json_build_object('last', ($2::int[])[1 + ("
    "(SELECT count(*)::int FROM unnest($2::int[]) AS r"
    " WHERE r <= coalesce((state.value ->> 'last')::int, 0)) + $3 - 1) % cardinality($2::int[])]),"
    " updated_at = $4 RETURNING (value ->> 'last')::int"
)


async def roles_of_active(s: AsyncSession) -> dict[int, str]:
    """Every active rep's role, by id."""
    if is_pg(s):  # read by every intake batch
        return dict(await fetch(s, "SELECT id, role FROM reps WHERE active"))
    return dict(await sqlite_fetch(s, "SELECT id, role FROM reps WHERE active IS 1"))


def rotation(members: Sequence[int], active_roles: Mapping[int, str]) -> list[int]:
    """The ids a distribution queue goes round: its active members (all active reps when none
    are named; supervisors and admins only when there is no rep), sorted."""
    if members:
        return sorted(set(members).intersection(active_roles))
    active = sorted(r for r, role in active_roles.items() if role == "rep")
    return active or sorted(active_roles)


async def next_in_rotation(conn: Any, queue_name: str, active: list[int], count: int) -> list[int]:
    """`next_in_queue` on PostgreSQL, on an asyncpg connection (`driver`, or one of
    `Database.autocommit`) over the `rotation` ids: one statement, the same whatever the
    members, so it is prepared once per connection."""
    if not active or count < 1:
        return []
    stored = await conn.fetchval(_PG_PICK, f"rr:{queue_name}", active, count, utcnow())
    end = active.index(int(stored))
    return [active[(end - count + 1 + i) % len(active)] for i in range(count)]


async def next_in_queue(
    s: AsyncSession,
    queue_name: str,
    members: Sequence[int] = (),
    count: int = 1,
    active_roles: Mapping[int, str] | None = None,
) -> list[int]:
    """The next `count` picks of a strict round robin over the active members (all active
    reps when none are named); empty when nobody is active.

    The position (the last rep picked) is stored in the database, so a restart does not reset
    it, and it moves in one statement (an UPSERT … RETURNING of its row): concurrent workers
    in their own transactions each get the next picks, never the same ones, on PostgreSQL
    as on SQLite. `active_roles`: every active rep's role by id, when the caller read them
    already (else they are read here).
    """
    if active_roles is None:
        active_roles = await roles_of_active(s)
    active = rotation(members, active_roles)
    if not active or count < 1:
        return []
    if s.get_bind().dialect.name == "postgresql":
        return await next_in_rotation(await driver(s), queue_name, active, count)
    size = len(active)
    key = f"rr:{queue_name}"
    last = func.coalesce(KeyValue.value["last"].as_integer(), 0)
    # The first pick is the first active id above `last` (wrapping): its index is how many
    # active ids are <= last; the stored position becomes the count-th pick from there.
    first = sum((case((last >= rep, 1), else_=0) for rep in active), literal(0))

    def position(index: Any) -> Any:
        return case(*((index % size == i, rep) for i, rep in enumerate(active)))

    build = func.json_object if s.get_bind().dialect.name == "sqlite" else func.json_build_object
    insert = sqlite_insert if s.get_bind().dialect.name == "sqlite" else pg_insert
    now = utcnow()
    stmt = (
        insert(KeyValue)
        .values(key=key, value=build("last", active[(count - 1) % size]), updated_at=now)
        .on_conflict_do_update(
            index_elements=[KeyValue.key],
            set_={"value": build("last", position(first + (count - 1))), "updated_at": now},
        )
        .returning(KeyValue.value)
    )
    stored = await s.scalar(stmt)
    end = active.index(int((stored or {})["last"]))
    # The picks are the `count` ids of the rotation that end at the stored position.
    return [active[(end - count + 1 + i) % size] for i in range(count)]
