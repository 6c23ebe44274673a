"""a phone entry keeps its extension; unassigned numbers stop matching

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 05:00:00.000000

Until now an extension lived only in the call activity's raw number and, on entries created
with one, as the label "ext. 12"; it moves into its own column (labels keep "invalid" and
messenger usernames). Phone entries stored with a number no country assigns (+49000000, from
"0000000") lose their match key and are flagged "invalid", as new ones are now: they glued
different people together.
"""

from collections.abc import Sequence

import phonenumbers
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
    sa.column("id", sa.Integer),
    sa.column("value", sa.String),
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
    _unmatch_unassigned_numbers()


def _assigned(e164: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return False


def _unmatch_unassigned_numbers() -> None:
    bind = op.get_bind()
    stored = bind.execute(
        sa.select(comms.c.id, comms.c.value).where(
            comms.c.kind == "phone", comms.c.value.is_not(None)
        )
    )
    bad = [ident for ident, value in stored if not _assigned(value)]
    for start in range(0, len(bad), 500):
        bind.execute(
            comms.update()
            .where(comms.c.id.in_(bad[start : start + 500]))
            .values(value=None, label="invalid")
        )


def downgrade() -> None:
    op.execute(
        comms.update()
        .where(comms.c.kind == "phone", comms.c.extension.is_not(None), comms.c.label.is_(None))
        .values(label=_PREFIX + comms.c.extension)
    )
    with op.batch_alter_table("communications", schema=None) as batch_op:
        batch_op.drop_column("extension")
