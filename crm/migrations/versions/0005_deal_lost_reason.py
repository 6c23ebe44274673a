"""a lost deal keeps its reason

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-06 08:00:00.000000

Until now the reason lived only in the deal's timeline entry; /stats counts lost deals by
reason, so it moves into its own column. Deals lost earlier keep a NULL reason ("no reason").
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lost_reason", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deals", schema=None) as batch_op:
        batch_op.drop_column("lost_reason")
