"""Schema migrations (Alembic), run from code: `leadbot db upgrade` and the tests use this."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from crm.db import Database

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the database to `revision`, inside one connection of the service's engine."""

    def _upgrade(connection: Connection) -> None:
        cfg = alembic_config(db.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(_upgrade)


def upgrade_blocking(url: str, revision: str = "head") -> None:
    """For a CLI process with no running loop."""

    async def _go() -> None:
        db = Database(url)
        try:
            await upgrade(db, revision)
        finally:
            await db.dispose()

    asyncio.run(_go())


def head_revision() -> str | None:
    """The revision this version of Leadbot needs."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(db: Database) -> str | None:
    """The revision the database is at; None for a database never migrated. Read from
    Alembic's version table directly: a MigrationContext would log two lines to say it."""

    def _current(connection: Connection) -> str | None:
        if not inspect(connection).has_table("alembic_version"):
            return None
        found = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return str(found) if found is not None else None

    async with db.read_engine.connect() as conn:
        return await conn.run_sync(_current)


async def is_empty(db: Database) -> bool:
    """No table at all: a database (file) just made."""
    async with db.read_engine.connect() as conn:
        names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    return not names
