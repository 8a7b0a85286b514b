"""The archive as the rest of perfnode sees it: one object, use cases with typed results.

``net/`` (DIMSE handlers), ``pipeline/`` (jobs) and any other front end (DICOMweb) use the archive
only through :class:`Archive` and the types re-exported here; the modules behind it (files, index
models, SQL) are the archive's own business (an import-contract test keeps it so)::

    archive = Archive.open(data_folder, database_url)
    archive.on_stored(listener)                 # runs after each newly stored object, off the caller
    rf = archive.receive_file(); rf.write(...)  # or pynetdicom writes into it
    stored = archive.store(rf, Announced(...))  # -> Stored, durable and indexed (or raises DicomError)
    for page in archive.find(identifier, root).pages(): ...                         # C-FIND / QIDO
    items = archive.retrieve(identifier, root)  # -> list[RetrieveItem]; archive.path(item.path)
    archive.commitments.record(...) / .due() / .evaluate(id) / .report(id)        # storage commitment
    archive.sent_commitments.record(...) / .record_report(...) / .outcome(uid)    # ... as SCU
    archive.jobs.create(...) / .claim_next() / .finish(...)                       # pipeline jobs
    archive.ready_series(stable_s) / .series_files(uid) / .study_companion_files(uid)
    archive.close()
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydicom.dataset import Dataset
from sqlalchemy import select

from perfnode.archive import commitment as _commitment
from perfnode.archive import completion as _completion
from perfnode.archive import findings as _findings
from perfnode.archive import jobs as _jobs
from perfnode.archive import sent_commitments as _sent
from perfnode.archive.commitment import DuplicateTransaction, Report
from perfnode.archive.db import Database
from perfnode.archive.ingest import read_header
from perfnode.archive.jobs import STATES as JOB_STATES
from perfnode.archive.models import CommitmentState, Instance, Job, JobState, Series
from perfnode.archive.query import (
    PATIENT_ROOT,
    STUDY_ROOT,
    SUPPORTED_KEYS,
    Query,
    QueryError,
    RetrieveItem,
    needs_unicode,
)
from perfnode.archive.recovery import RecoveryReport, RunMarker, reconcile
from perfnode.archive.sent_commitments import ReportMatch, SentOutcome
from perfnode.archive.storage import ReceiveFile, Storage, check_uid
from perfnode.archive.store import DUPLICATE_POLICIES, Announced, Stored, StoreObjects
from perfnode.dicom.findings import Finding

__all__ = ["JOB_STATES", "PATIENT_ROOT", "STUDY_ROOT", "DUPLICATE_POLICIES", "Announced", "Archive",
           "CommitmentState", "Commitments", "DuplicateTransaction", "Job", "JobState", "Jobs", "Query",
           "QueryError", "ReceiveFile", "SUPPORTED_KEYS", "check_uid", "read_header", "FindRun",
           "Report", "ReportMatch", "RetrieveItem", "SentCommitments", "SentOutcome", "Stored",
           "needs_unicode"]

log = logging.getLogger("perfnode.archive")

#: ``listener(stored)``: called once per newly stored object (not for identical duplicates).
StoredListener = Callable[[Stored], None]


class Commitments:
    """Storage commitment requests (PS3.4 Annex J) kept durably until their report is delivered."""

    def __init__(self, db: Database, storage: Storage) -> None:
        self._db, self._storage = db, storage

    def record(self, transaction_uid: str, requester_ae: str, address: str,
               refs: list[tuple[str, str]]) -> int:
        """Store an N-ACTION durably (raises :class:`DuplicateTransaction`); return the request id."""
        return _commitment.record_request(self._db, transaction_uid, requester_ae, address, refs)

    def due(self) -> list[tuple[int, bool]]:
        """``(request id, evaluated)`` of pending requests whose next attempt is due."""
        return _commitment.due(self._db)

    def evaluate(self, request_id: int) -> None:
        """Check every referenced instance (index row, SOP class, file re-hashed)."""
        _commitment.evaluate(self._db, self._storage, request_id)

    def report(self, request_id: int) -> Report:
        return _commitment.report(self._db, request_id)

    def delivered(self, request_id: int) -> None:
        _commitment.mark_delivered(self._db, request_id)

    def failed(self, request_id: int, error: str, base_s: float, max_s: float) -> float:
        """Record a failed delivery; returns the delay (s) before the next attempt."""
        return _commitment.mark_failed(self._db, request_id, error, base_s, max_s)

    def pending_count(self) -> int:
        return _commitment.pending_count(self._db)


class SentCommitments:
    """Storage commitment requests this node sent (SCU), matched to their reports by Transaction UID."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, transaction_uid: str, destination_ae: str, refs: list[tuple[str, str]],
               job_id: int | None = None) -> None:
        """Store a request durably, before its N-ACTION is sent."""
        _sent.record(self._db, transaction_uid, destination_ae, refs, job_id)

    def record_report(self, transaction_uid: str, event_type: int, committed: list[tuple[str, str]],
                      failed: list[tuple[str, str, int]], reporter_ae: str, via: str) -> ReportMatch | None:
        """Store an N-EVENT-REPORT for one of our requests (``None``: not ours)."""
        return _sent.record_report(self._db, transaction_uid, event_type, committed, failed, reporter_ae, via)

    def outcome(self, transaction_uid: str) -> SentOutcome | None:
        return _sent.outcome(self._db, transaction_uid)


class Jobs:
    """Durable pipeline jobs and their sent-log (:mod:`perfnode.archive.jobs`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, series_uid: str, analysis: str, calling_ae: str = "",
               destinations: list[str] | None = None) -> Job | None:
        """Queue an analysis; ``None`` when that job already exists."""
        return _jobs.create_job(self._db, series_uid, analysis, calling_ae, destinations)

    def claim_next(self) -> Job | None:
        return _jobs.claim_next(self._db)

    def finish(self, job_id: int, state: JobState, error: str = "", **fields: str) -> None:
        _jobs.finish(self._db, job_id, state, error, **fields)

    def set_fields(self, job_id: int, **fields: str) -> None:
        _jobs.set_fields(self._db, job_id, **fields)

    def requeue_interrupted(self) -> int:
        return _jobs.requeue_interrupted(self._db)

    def already_sent(self, job_id: int, destination: str) -> set[str]:
        return _jobs.already_sent(self._db, job_id, destination)

    def record_sent(self, job_id: int, sop_instance_uid: str, destination: str) -> None:
        _jobs.record_sent(self._db, job_id, sop_instance_uid, destination)

    def list(self, state: JobState | str | None = None, limit: int = 100) -> builtins.list[Job]:
        return _jobs.list_jobs(self._db, state, limit)

    def get(self, job_id: int) -> Job | None:
        with self._db.read() as s:
            return s.get(Job, job_id)

    def about_series(self, series_uids: builtins.list[str]) -> builtins.list[Job]:
        """Jobs whose input or output series is one of ``series_uids``."""
        with self._db.read() as s:
            return list(s.scalars(select(Job).where(
                Job.series_instance_uid.in_(series_uids) | Job.output_series_uid.in_(series_uids))))


class Archive:
    """Files under a data folder plus their index: every use case of the archive."""

    def __init__(self, db: Database, storage: Storage, duplicate_policy: str = "reject",
                 validation: str = "warn") -> None:
        self.db = db
        self.storage = storage
        self._store = StoreObjects(db, storage, duplicate_policy, validation)
        self._running_marked = False
        self.commitments = Commitments(db, storage)
        self.sent_commitments = SentCommitments(db)
        self.jobs = Jobs(db)
        self._listeners: list[StoredListener] = []
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def open(cls, data: str | Path, database_url: str, duplicate_policy: str = "reject",
             migrate: bool = True, validation: str = "warn", must_exist: bool = False) -> Archive:
        """Open (and create or upgrade) the archive in ``data`` with its index at ``database_url``;
        with ``must_exist`` (commands that only read one) refuse a place that holds no archive."""
        db = Database(database_url, migrate=migrate, must_exist=must_exist)  # before any folder is made
        return cls(db, Storage(data), duplicate_policy, validation)

    def recover(self) -> RecoveryReport:
        """At node start (before anything is received): clean up after a crash.

        Partial files a crash or an aborted transfer left in ``tmp/`` are removed (never acknowledged);
        files in ``objects/`` without an index row are re-indexed or quarantined
        (:func:`perfnode.archive.recovery.reconcile`), and ``state/running`` marks the node as
        running until :meth:`close`.
        """
        removed = self.storage.clean_tmp()
        if removed:
            log.info("removed %d partial files from %s (never acknowledged)", removed, self.storage.tmp)
        report = reconcile(self.storage, self.db)
        self._running_marked = True
        return report

    @property
    def root(self) -> Path:
        return self.storage.root

    def describe(self) -> str:
        """``data folder, index URL`` (password hidden) for log lines."""
        return f"data {self.storage.root}, index {self.db.engine.url.render_as_string(hide_password=True)}"

    def close(self) -> None:
        """Wait for running listeners, then release the index."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.db.dispose()
        if self._running_marked:
            RunMarker(self.storage).mark_stopped()
            self._running_marked = False

    # -- store ------------------------------------------------------------------------------

    def receive_file(self) -> ReceiveFile:
        """A file in ``tmp/`` to write an incoming object into (hashes as it is written)."""
        return self.storage.receive_file()

    def on_stored(self, listener: StoredListener) -> None:
        """Call ``listener(stored)`` after each newly stored object, in a small thread pool (errors
        are logged)."""
        self._listeners.append(listener)

    def store(self, rf: ReceiveFile, announced: Announced, notify: bool = True) -> Stored:
        """Make a received file durable and indexed; when this returns it may be acknowledged.

        Raises a :class:`perfnode.errors.DicomError` naming the problem (nothing stored then).
        """
        stored = self._store.store(rf, announced)
        if notify and not stored.duplicate:
            self._notify(stored)
        return stored

    def store_file(self, path: str | Path, calling_ae: str = "") -> Stored:
        """Store a copy of a local file (a job's outputs; listeners are not called for those)."""
        return self._store.store_file(path, calling_ae)

    def _notify(self, stored: Stored) -> None:
        if not self._listeners:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(2, thread_name_prefix="after-store")
        for listener in list(self._listeners):
            self._pool.submit(self._run_listener, listener, stored)

    @staticmethod
    def _run_listener(listener: StoredListener, stored: Stored) -> None:
        try:
            listener(stored)
        except Exception:  # noqa: BLE001 - a listener never breaks the archive
            log.exception("after-store listener %s failed for instance %s",
                          getattr(listener, "__name__", listener), stored.instance_id)

    # -- query and retrieve -----------------------------------------------------------------

    def find(self, identifier: Dataset, root: str = STUDY_ROOT, relational: bool = False) -> FindRun:
        """A C-FIND (or QIDO) query, checked now (raises :class:`QueryError`), run page by page."""
        return FindRun(Query(identifier, root, relational=relational), self.db)

    def retrieve(self, identifier: Dataset, root: str = STUDY_ROOT) -> list[RetrieveItem]:
        """The stored instances a C-MOVE/C-GET identifier selects (raises :class:`QueryError`)."""
        return Query(identifier, root, retrieve=True).instances(self.db)

    def path(self, relative: str) -> Path:
        """Absolute path of a stored file (``RetrieveItem.path`` and the like)."""
        return self.storage.absolute(relative)

    def series_of_instance(self, sop_instance_uid: str) -> str | None:
        """The Series Instance UID of a stored instance (``None`` when it is not stored)."""
        with self.db.read() as s:
            return s.execute(select(Series.series_instance_uid)
                             .join(Instance, Instance.series_fk == Series.id)
                             .where(Instance.sop_instance_uid == sop_instance_uid)).scalar()

    # -- series for the pipeline ---------------------------------------------------------------

    def ready_series(self, stable_s: float) -> list[tuple[str, str]]:
        """``(series UID, reason)`` of series without a job that are complete or stable."""
        return _completion.ready_series(self.db, stable_s)

    def series_files(self, series_uid: str) -> tuple[list[Path], str]:
        """Absolute paths of a series' instances (by Instance Number) and the latest calling AE."""
        files, calling_ae = _completion.series_files(self.db, series_uid)
        return [self.path(f) for f in files], calling_ae

    def study_companion_files(self, series_uid: str) -> list[Path]:
        """Absolute paths of the other series of the same study (M0, T1 …), our own maps excluded."""
        return [self.path(f) for f in _completion.study_companion_files(self.db, series_uid)]

    def study_quiet(self, series_uid: str, stable_s: float) -> bool:
        return _completion.study_quiet(self.db, series_uid, stable_s)

    # -- PERF findings --------------------------------------------------------------------------

    def record_findings(self, stored: Stored) -> None:
        """Check a stored object against the IHE PERF profile and record the findings (a listener)."""
        _findings.record_findings(self.db, stored.instance_id, stored.path, stored.header)

    def findings(self, series_uid: str | None = None,
                 instance_id: int | None = None) -> list[tuple[str, Finding]]:
        return _findings.load_findings(self.db, series_uid, instance_id)

    def series_paths(self, series_uid: str) -> list[Path]:
        """Absolute paths of a stored series' instances (by index order; empty when unknown)."""
        return _findings.series_paths(self.db, self.storage.root, series_uid)


class FindRun:
    """A checked query, run against the index a page at a time (each page its own read transaction)."""

    def __init__(self, query: Query, db: Database) -> None:
        self.query = query
        self._db = db

    @property
    def level(self) -> str:
        return self.query.level

    @property
    def unsupported(self) -> list[int]:
        """Keys the identifier asked for that the index does not hold (FF01 pending)."""
        return list(self.query.unsupported)

    @property
    def optional_keys_not_supported(self) -> bool:
        """Whether the pending status is FF01 (PS3.4 C.4.1.1.4): a requested key not returned, a
        matching value not matched, or a private attribute left out."""
        return bool(self.query.unsupported or self.query.not_matched)

    def pages(self, page_size: int = 200, offset: int = 0) -> Iterator[list[Dataset]]:
        return self.query.pages(self._db, page_size, offset)
