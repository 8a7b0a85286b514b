"""Durable jobs in the index: queued → running → done | refused | failed (or skipped: not analysed).

``refused``: the series cannot be analysed, for a reason the job's note names (an attribute, a rule);
``failed``: something broke (the note says what). A ``done`` job's note says what its reader must know
(technique inferred, a default used, a map that could not be made).

Every state change is a committed row, so a node killed at any point resumes from the index:
jobs left ``running`` by a dead node go back to ``queued`` at start-up, and outputs already
delivered are in the sent-log (:class:`~perfnode.archive.models.SentObject`).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError

from perfnode.archive.db import Database
from perfnode.archive.models import Job, JobState, SentObject
from perfnode.clock import utcnow as now

STATES = tuple(s.value for s in JobState)


def create_job(db: Database, series_uid: str, analysis: str, calling_ae: str = "",
               destinations: list[str] | None = None) -> Job | None:
    """Queue an analysis of a series; ``None`` when that job already exists (idempotent)."""
    try:
        with db.session() as s:
            job = Job(series_instance_uid=series_uid, analysis=analysis, state=JobState.QUEUED, error="",
                      calling_ae=calling_ae, destinations=",".join(destinations or []), attempts=0,
                      created_at=now(), output_series_uid="", output_dir="")
            s.add(job)
        return job
    except IntegrityError:
        return None


def claim_next(db: Database) -> Job | None:
    """Atomically move the oldest queued job to ``running`` and return it."""
    with db.session() as s:
        job_id = s.scalar(select(Job.id).where(Job.state == JobState.QUEUED).order_by(Job.id).limit(1))
        if job_id is None:
            return None
        claimed = cast(CursorResult[tuple[()]], s.execute(
            update(Job).where(Job.id == job_id, Job.state == JobState.QUEUED)
            .values(state=JobState.RUNNING, started_at=now(), attempts=Job.attempts + 1)
        )).rowcount
        if not claimed:
            return None
        return s.get(Job, job_id)


def finish(db: Database, job_id: int, state: JobState | str, error: str = "", **fields: str) -> None:
    if state not in STATES:
        raise ValueError(f"job state {state!r}: expected one of {STATES}")
    state = JobState(state)
    with db.session() as s:
        s.execute(update(Job).where(Job.id == job_id)
                  .values(state=state, error=error, finished_at=now(), **fields))


def set_fields(db: Database, job_id: int, **fields: str) -> None:
    with db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(**fields))


def requeue_interrupted(db: Database) -> int:
    """Put jobs a previous (killed) node left ``running`` back in the queue; returns how many."""
    with db.session() as s:
        result = s.execute(update(Job).where(Job.state == JobState.RUNNING)
                           .values(state=JobState.QUEUED, started_at=None))
        return int(cast(CursorResult[tuple[()]], result).rowcount)


def already_sent(db: Database, job_id: int, destination: str) -> set[str]:
    with db.read() as s:
        return set(s.scalars(select(SentObject.sop_instance_uid)
                             .where(SentObject.job_fk == job_id, SentObject.destination == destination)))


def record_sent(db: Database, job_id: int, sop_instance_uid: str, destination: str) -> None:
    try:
        with db.session() as s:
            s.add(SentObject(job_fk=job_id, sop_instance_uid=sop_instance_uid, destination=destination,
                             sent_at=now()))
    except IntegrityError:
        pass  # already recorded


def list_jobs(db: Database, state: JobState | str | None = None, limit: int = 100) -> list[Job]:
    with db.read() as s:
        q = select(Job).order_by(Job.id.desc()).limit(limit)
        if state:
            q = q.where(Job.state == JobState(state))
        return list(s.scalars(q))
