"""a phone entry keeps its extension

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 05:00:00.000000

Until now an extension lived only in the call activity's raw number and, on entries created
with one, as the label "ext. 12"; it moves into its own column (labels keep "invalid" and
messenger usernames).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PREFIX = "ext. "
# The columns the data step touches, as they are at this revision (not the current model).
comms = sa.table(
    "communications",
    sa.column("kind", sa.String),
    sa.column("label", sa.String),
    sa.column("extension", sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table("communications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("extension", sa.String(length=20), nullable=True))
    # substr() is 1-based on both SQLite and PostgreSQL.
    op.execute(
        comms.update()
        .where(comms.c.kind == "phone", comms.c.label.like(_PREFIX + "%"))
        .values(extension=sa.func.substr(comms.c.label, len(_PREFIX) + 1, 20), label=None)
    )


def downgrade() -> None:
    op.execute(
        comms.update()
        .where(comms.c.kind == "phone", comms.c.extension.is_not(None), comms.c.label.is_(None))
        .values(label=_PREFIX + comms.c.extension)
    )
    with op.batch_alter_table("communications", schema=None) as batch_op:
        batch_op.drop_column("extension")
