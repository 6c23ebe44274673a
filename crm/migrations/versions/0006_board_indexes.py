"""indexes for the pipeline board and a record's history

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-06 08:00:00.000000

The board reads a column (lead status / deal stage) newest first with keyset paging, for
everyone or for one rep; the history reads the inbound events of a record.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_leads_status_created", "leads", ["status", "created_at", "id"]),
    (
        "ix_leads_responsible_status_created",
        "leads",
        ["responsible_id", "status", "created_at", "id"],
    ),
    ("ix_deals_stage_created", "deals", ["stage_id", "created_at", "id"]),
    (
        "ix_deals_responsible_stage_created",
        "deals",
        ["responsible_id", "stage_id", "created_at", "id"],
    ),
    ("ix_inbound_events_lead", "inbound_events", ["lead_id", "received_at"]),
    ("ix_inbound_events_deal", "inbound_events", ["deal_id", "received_at"]),
    ("ix_inbound_events_contact", "inbound_events", ["contact_id", "received_at"]),
    ("ix_inbound_events_company", "inbound_events", ["company_id", "received_at"]),
    ("ix_inbound_events_activity", "inbound_events", ["activity_id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
