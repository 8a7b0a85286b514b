"""case-folded person names: C-FIND Person Name matching that ignores case beyond ASCII

Revision ID: 0007
Revises: 0006

``lower()`` folds only ASCII letters in SQLite, and in PostgreSQL under the C locale: a Cyrillic or
Greek name in capitals did not match its lower-case query. Person names are now also stored
case-folded by Python (``str.casefold``, :func:`perfnode.archive.ingest.fold`) and matched on that
column, the same in both databases. Existing rows are folded here.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BATCH = 1000
#: (table, source column, folded column)
FOLDED = (("patients", "patient_name", "patient_name_folded"),
          ("studies", "referring_physician_name", "referring_physician_name_folded"))


def _backfill(table: str, source: str, target: str) -> None:
    bind = op.get_bind()
    t = sa.table(table, sa.column("id", sa.Integer), sa.column(source, sa.String),
                 sa.column(target, sa.String))
    last = 0
    while True:
        rows = bind.execute(sa.select(t.c.id, t.c[source]).where(t.c.id > last).order_by(t.c.id)
                            .limit(BATCH)).all()
        if not rows:
            return
        bind.execute(t.update().where(t.c.id == sa.bindparam("rid")).values({target: sa.bindparam("folded")}),
                     [{"rid": r[0], "folded": (r[1] or "").casefold()} for r in rows])
        last = rows[-1][0]


def upgrade() -> None:
    # indexes on expressions do not survive SQLite's batch table copy: drop it before altering
    op.drop_index("ix_patients_patient_name_lower", table_name="patients")
    for table, source, target in FOLDED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(target, sa.String(length=1024), nullable=False, server_default=""))
        _backfill(table, source, target)
    if op.get_bind().dialect.name == "postgresql":  # LIKE 'prefix%' served whatever the collation
        op.execute("CREATE INDEX ix_patients_patient_name_folded ON patients "
                   "(patient_name_folded varchar_pattern_ops)")
    else:
        op.create_index("ix_patients_patient_name_folded", "patients", ["patient_name_folded"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_patients_patient_name_folded", table_name="patients")
    for table, _source, target in FOLDED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column(target)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE INDEX ix_patients_patient_name_lower ON patients (lower(patient_name) varchar_pattern_ops)")
    else:
        op.create_index("ix_patients_patient_name_lower", "patients", [sa.text("lower(patient_name)")], unique=False)
