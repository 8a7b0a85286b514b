"""storage commitment requests this node sent (SCU), matched to their reports by Transaction UID

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sent_commitments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transaction_uid", sa.String(length=64), nullable=False),
        sa.Column("destination_ae", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_type", sa.Integer(), nullable=True),
        sa.Column("reporter_ae", sa.String(length=16), nullable=False),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.CheckConstraint("state IN ('waiting', 'committed', 'failed')", name="sent_commitment_state"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("transaction_uid"),
    )
    op.create_index("ix_sent_commitments_state", "sent_commitments", ["state"], unique=False)
    op.create_table(
        "sent_commitment_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_fk", sa.Integer(), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("committed", sa.Boolean(), nullable=True),
        sa.Column("failure_reason", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["request_fk"], ["sent_commitments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sent_commitment_items_request_fk", "sent_commitment_items", ["request_fk"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sent_commitment_items_request_fk", table_name="sent_commitment_items")
    op.drop_table("sent_commitment_items")
    op.drop_index("ix_sent_commitments_state", table_name="sent_commitments")
    op.drop_table("sent_commitments")
