"""PERF profile findings recorded per stored instance

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the work that adds these tables


def downgrade() -> None:
    pass
