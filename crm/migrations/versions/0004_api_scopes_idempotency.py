"""API tokens get scopes and an optional rep; Idempotency-Key answers are kept

Revision ID: 0004
Revises: 0005
Create Date: 2026-12-06 08:00:00.000000

Every token that exists keeps `read` only: the API was read-only when it was made, and
granting it write access on upgrade would widen what a leaked token can do. Grant write by
creating a new token (`leadbot token create NAME --scope read,write`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm.models

revision: str = "0004"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scopes", sa.String(length=40), server_default="read", nullable=False)
        )
        batch_op.add_column(sa.Column("rep_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_api_tokens_rep_id_reps"), "reps", ["rep_id"], ["id"]
        )
    op.create_table(
        "api_idempotency",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("created_at", crm.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"], ["api_tokens.id"], name=op.f("fk_api_idempotency_token_id_api_tokens")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_idempotency")),
        sa.UniqueConstraint("token_id", "key", name=op.f("uq_api_idempotency_token_id_key")),
    )
    with op.batch_alter_table("api_idempotency", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_api_idempotency_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    op.drop_table("api_idempotency")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_tokens_rep_id_reps"), type_="foreignkey")
        batch_op.drop_column("rep_id")
        batch_op.drop_column("scopes")
