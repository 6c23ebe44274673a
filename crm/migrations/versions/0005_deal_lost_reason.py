"""a lost deal keeps its reason

Revision ID: 0005
Revises: 0006
Create Date: 2026-12-06 08:00:00.000000

Until now the reason lived only in the deal's timeline entry; /stats counts lost deals by
reason, so it moves into its own column. Deals lost earlier keep a NULL reason ("no reason").
The numbers of a period look deals up by closing time and leads by the time they were taken:
both get an index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lost_reason", sa.String(length=500), nullable=True))
    op.create_index("ix_deals_closed_at", "deals", ["closed_at"])
    op.create_index("ix_leads_taken_at", "leads", ["taken_at"])


def downgrade() -> None:
    op.drop_index("ix_leads_taken_at", table_name="leads")
    op.drop_index("ix_deals_closed_at", table_name="deals")
    with op.batch_alter_table("deals", schema=None) as batch_op:
        batch_op.drop_column("lost_reason")
