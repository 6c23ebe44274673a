"""why a mail went to the spam folder

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 03:00:00.000000

The spam filter's layer and reason were only logged; the console's quarantine page shows them
next to the mail the IMAP server holds. Mail filed before this migration shows no reason.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm.models

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mail_spam_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=100), nullable=False),
        sa.Column("message_id", sa.String(length=1000), nullable=False),
        sa.Column("layer", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("noted_at", crm.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_spam_notes")),
    )
    op.create_index(
        "ix_mail_spam_notes_mailbox_message_id",
        "mail_spam_notes",
        ["mailbox", "message_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_mail_spam_notes_noted_at"), "mail_spam_notes", ["noted_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_mail_spam_notes_noted_at"), table_name="mail_spam_notes")
    op.drop_index("ix_mail_spam_notes_mailbox_message_id", table_name="mail_spam_notes")
    op.drop_table("mail_spam_notes")
