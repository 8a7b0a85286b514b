"""Migration 0003 creates exactly the ``findings`` table the models describe (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from perfnode.archive.db import Database
from perfnode.archive.models import Base


def findings_diffs(url: str, metadata=Base.metadata) -> list:
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), metadata)
            names = set(db.engine.dialect.get_table_names(conn))
    finally:
        db.dispose()
    assert "findings" in names

    def about_findings(d) -> bool:
        flat = d if isinstance(d, tuple) else d[0]
        return any(
            getattr(x, "name", None) == "findings"
            or getattr(getattr(x, "table", None), "name", None) == "findings"
            or x == "findings"
            for x in flat
        )

    return [d for d in diffs if about_findings(d)]


def test_migrated_sqlite_schema_matches_the_model(tmp_path):
    assert findings_diffs(f"sqlite:///{tmp_path / 'index.sqlite'}") == []


@pytest.mark.postgres
def test_migrated_postgres_schema_matches_the_model(pg_url):
    assert findings_diffs(pg_url) == []


def test_the_comparison_would_see_a_difference(tmp_path):
    from sqlalchemy import Column, MetaData, String

    other = MetaData()
    for t in Base.metadata.sorted_tables:
        t.to_metadata(other)
    other.tables["findings"].append_column(Column("extra", String(8)))
    diffs = findings_diffs(f"sqlite:///{tmp_path / 'index.sqlite'}", other)
    assert [d[0] for d in diffs] == ["add_column"]
