"""per-column counters of the board, kept by triggers on leads and deals

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-06 09:00:00.000000

The board's counts and deal sums per column were a GROUP BY over every lead or deal (hundreds
of milliseconds at 1,000,000 records); the counters make them O(columns). The triggers catch
every write path; the counters are filled from the records as they are.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from crm.counters import backfill_sql, drop_ddl, trigger_ddl

revision: str = "0007"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "board_counters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=4), nullable=False),
        sa.Column("col", sa.String(length=50), nullable=False),
        sa.Column("responsible_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("priced", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_board_counters")),
        sa.UniqueConstraint(
            "kind",
            "col",
            "responsible_id",
            "currency",
            "slot",
            name=op.f("uq_board_counters_kind_col_responsible_id_currency_slot"),
        ),
    )
    dialect = op.get_bind().dialect.name
    for sql in trigger_ddl(dialect) + backfill_sql():
        op.execute(sql)


def downgrade() -> None:
    for sql in drop_ddl(op.get_bind().dialect.name):
        op.execute(sql)
    op.drop_table("board_counters")
