"""Migration 0005 (aware UTC times, Enum states with CHECK constraints) on SQLite and on a real
PostgreSQL: rows written by the previous schema read back as the same instants, in UTC; a state that
is not one of the Enum's values is refused by the database itself; and the whole schema matches the
models (autogenerate finds no difference)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError, StatementError

from perfnode.archive import jobs
from perfnode.archive.db import Database, alembic_config, make_engine
from perfnode.archive.models import Base, CommitmentRequest, CommitmentState, Job, JobState

URLS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=URLS)
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite'}"
    return request.getfixturevalue("pg_url")


def test_rows_of_the_old_schema_read_back_as_aware_utc(url):
    engine = make_engine(url)
    try:
        command.upgrade(alembic_config(engine), "0004")
        naive = datetime(2026, 3, 29, 1, 30, 15, 250000)  # written as UTC without its zone
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO jobs (series_instance_uid, analysis, state, error, calling_ae, destinations, "
                "attempts, created_at, output_series_uid, output_dir) "
                "VALUES ('1.2', 'dsc', 'done', '', '', '', 1, :t, '', '')"), {"t": naive})
        command.upgrade(alembic_config(engine), "head")
    finally:
        engine.dispose()
    db = Database(url)
    try:
        (job,) = jobs.list_jobs(db)
        assert job.created_at == naive.replace(tzinfo=UTC)
        assert job.created_at.tzinfo is not None and job.created_at.utcoffset().total_seconds() == 0
        assert job.state is JobState.DONE
        # a new row round-trips an aware time given in another zone as the same instant
        from datetime import timedelta, timezone
        t = datetime(2026, 7, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
        with db.session() as s:
            s.add(Job(series_instance_uid="1.3", analysis="dsc", state=JobState.QUEUED, created_at=t))
        with db.read() as s:
            got = s.scalar(sa.select(Job.created_at).where(Job.series_instance_uid == "1.3"))
        assert got == t and got.tzinfo == UTC and got.hour == 12
        # a naive time is refused before it reaches the database
        with pytest.raises(StatementError, match="naive datetime"), db.session() as s:
            s.add(Job(series_instance_uid="1.4", analysis="dsc", created_at=datetime(2026, 1, 1)))
    finally:
        db.dispose()


def test_states_are_enums_checked_by_the_database(url):
    db = Database(url)
    try:
        assert jobs.create_job(db, "1.2", "dsc") is not None
        with pytest.raises(IntegrityError), db.transaction() as conn:  # the CHECK constraint, not Python
            conn.execute(sa.text("UPDATE jobs SET state = 'lost'"))
        with pytest.raises(IntegrityError), db.transaction() as conn:
            conn.execute(sa.text(
                "INSERT INTO commitment_requests (transaction_uid, requester_ae, requester_address, state, "
                "received_at, attempts, next_attempt_at, last_error) "
                "VALUES ('1.9', 'A', '', 'maybe', :t, 0, :t, '')"), {"t": datetime(2026, 1, 1)})
        with pytest.raises(ValueError, match="job state"):
            jobs.finish(db, 1, "lost")
        with db.read() as s:
            assert s.scalar(sa.select(Job.state)) is JobState.QUEUED
        assert [m.value for m in CommitmentState] == ["pending", "delivered"]
        assert CommitmentRequest.state.type.enum_class is CommitmentState
    finally:
        db.dispose()


def test_migrated_schema_matches_the_models(url):
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = [d for d in compare_metadata(ctx, Base.metadata)
                     if not (isinstance(d, tuple) and d[0] in ("add_index", "remove_index")
                             and "patient_name_lower" in str(d[1]))]  # expression index: not reflected
    finally:
        db.dispose()
    assert diffs == []


def test_downgrade_and_upgrade_again(url):
    engine = make_engine(url)
    try:
        command.upgrade(alembic_config(engine), "head")
        command.downgrade(alembic_config(engine), "0004")
        command.upgrade(alembic_config(engine), "head")
    finally:
        engine.dispose()
