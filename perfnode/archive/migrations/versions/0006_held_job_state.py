"""job state ``held``: maps the quality gate judged unreliable, archived but not sent

Revision ID: 0006
Revises: 0005

The CHECK constraint on ``jobs.state`` (0005) gets the new value of ``JobState``.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BEFORE = ("queued", "running", "done", "refused", "failed", "skipped")
AFTER = (*BEFORE, "held")


def _check(values: tuple[str, ...]) -> str:
    return "state IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _replace(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("job_state", type_="check")
        batch.create_check_constraint("job_state", _check(values))


def upgrade() -> None:
    _replace(AFTER)


def downgrade() -> None:
    op.execute("UPDATE jobs SET state = 'done' WHERE state = 'held'")
    _replace(BEFORE)
