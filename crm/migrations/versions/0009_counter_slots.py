"""board counter slots per transaction, not per backend

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 03:30:00.000000

Two transactions whose backends shared a counter slot could deadlock on the counter rows
(crm/counters.py says how). The triggers are replaced; the counters stay as they are.
"""

from collections.abc import Sequence

from alembic import op

from crm.counters import drop_ddl, trigger_ddl

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for sql in drop_ddl(dialect) + trigger_ddl(dialect):
        op.execute(sql)


def downgrade() -> None:
    pass  # the triggers of 0007 were the same but for the slot: these serve it as well
