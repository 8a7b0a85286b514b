"""aware UTC times (timestamptz on PostgreSQL) and CHECK-constrained job / commitment states

Revision ID: 0005
Revises: 0004

Every time column was a naive ``timestamp`` holding UTC (written by ``datetime.now(UTC)`` without its
zone), except ``findings.created_at``, which held local time. On PostgreSQL the columns become
``timestamp with time zone``, the stored values read as UTC; on SQLite the stored text stays naive UTC
(``perfnode.archive.models.UTCDateTime`` attaches the zone when reading). The job and commitment
states get a CHECK constraint listing their Enum values (``JobState``, ``CommitmentState``).
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TIME_COLUMNS = {
    "series": [("last_received_at", True)],
    "instances": [("received_at", False)],
    "jobs": [("created_at", False), ("started_at", True), ("finished_at", True)],
    "sent_objects": [("sent_at", False)],
    "commitment_requests": [("received_at", False), ("evaluated_at", True), ("next_attempt_at", False),
                            ("delivered_at", True)],
    "findings": [("created_at", False)],
}
STATES = {
    "jobs": ("job_state", ("queued", "running", "done", "refused", "failed", "skipped")),
    "commitment_requests": ("commitment_state", ("pending", "delivered")),
}


def _check(values: tuple[str, ...]) -> str:
    return "state IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, columns in TIME_COLUMNS.items():
            for column, _nullable in columns:
                op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE TIMESTAMP WITH TIME ZONE "
                           f"USING {column} AT TIME ZONE 'UTC'")
    for table, (name, values) in STATES.items():
        with op.batch_alter_table(table) as batch:
            batch.create_check_constraint(name, _check(values))


def downgrade() -> None:
    for table, (name, _values) in STATES.items():
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(name, type_="check")
    if op.get_bind().dialect.name == "postgresql":
        for table, columns in TIME_COLUMNS.items():
            for column, _nullable in columns:
                op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE TIMESTAMP WITHOUT TIME ZONE "
                           f"USING {column} AT TIME ZONE 'UTC'")
