"""The migrations make exactly the schema the models describe, on both databases: a column
added to a model without its migration (or the other way round) fails here, not in an
operator's `leadbot db upgrade`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from crm.db import Database
from crm.models import Base
from crm.schema import current_revision, head_revision, upgrade


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_a_migrated_database_has_the_models_schema(tmp_path: Path, pg_url: str) -> None:
    sqlite = Database(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert await current_revision(sqlite) is None
        await upgrade(sqlite)
        assert await current_revision(sqlite) == head_revision()
        async with sqlite.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await sqlite.dispose()
    postgres = Database(pg_url)  # migrated by the pg_url fixture
    try:
        assert await current_revision(postgres) == head_revision()
        async with postgres.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await postgres.dispose()
