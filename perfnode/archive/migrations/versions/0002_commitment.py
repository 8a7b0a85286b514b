"""storage commitment requests and their per-instance results

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # C-FIND person-name matching: lower(patient_name) LIKE 'prefix%' (pattern ops: any collation)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE INDEX ix_patients_patient_name_lower ON patients (lower(patient_name) varchar_pattern_ops)")
    else:
        op.create_index("ix_patients_patient_name_lower", "patients", [sa.text("lower(patient_name)")], unique=False)
    op.create_table(
        "commitment_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transaction_uid", sa.String(length=64), nullable=False),
        sa.Column("requester_ae", sa.String(length=16), nullable=False),
        sa.Column("requester_address", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("transaction_uid"),
    )
    with op.batch_alter_table("commitment_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_commitment_requests_next_attempt_at"), ["next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_commitment_requests_state"), ["state"], unique=False)

    op.create_table(
        "commitment_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_fk", sa.Integer(), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("failure_reason", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["request_fk"], ["commitment_requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("commitment_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_commitment_items_request_fk"), ["request_fk"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_patients_patient_name_lower", table_name="patients")
    with op.batch_alter_table("commitment_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_commitment_items_request_fk"))
    op.drop_table("commitment_items")
    with op.batch_alter_table("commitment_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_commitment_requests_state"))
        batch_op.drop_index(batch_op.f("ix_commitment_requests_next_attempt_at"))
    op.drop_table("commitment_requests")
