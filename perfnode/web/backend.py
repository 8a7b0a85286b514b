"""What the web services need from the archive, in one place.

Everything goes through the same code as the DIMSE services: searches and retrieves through the one
matcher (:class:`perfnode.archive.query.Query`, as C-FIND / C-MOVE / C-GET), stores through the
C-STORE path (:func:`perfnode.net.store.store_received`: the same checks, fsync and index commit
before Success, the same after-store hooks that trigger the pipeline). When the archive grows a
facade, this module is the only one of ``perfnode.web`` that changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import select

from perfnode.archive.models import Instance, Job, Series
from perfnode.archive.query import STUDY_ROOT, Query, RetrieveItem
from perfnode.archive.storage import ReceiveFile
from perfnode.net.context import NodeContext


@dataclass(frozen=True)
class Stored:
    instance_id: int
    path: Path
    duplicate: bool
    header: Dataset


class Backend:
    """The archive as the web services see it (thread-safe; blocking calls: run them in a thread)."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.storage = ctx.storage
        self.settings = ctx.settings

    # -- search and retrieve (the one matcher) -----------------------------------------------

    def search(
        self, identifier: Dataset, *, relational: bool, offset: int = 0, page_size: int = 200
    ) -> tuple[Query, Iterator[list[Dataset]]]:
        """A validated query (raises ``QueryError``) and its pages of response identifiers."""
        query = Query(identifier, STUDY_ROOT, relational=relational)
        return query, query.pages(self.db, page_size=page_size, offset=offset)

    def instances(self, study: str, series: str | None = None, sop: str | None = None) -> list[RetrieveItem]:
        """Stored instances under a study / series / one instance (the retrieve path of C-GET)."""
        ident = Dataset()
        ident.QueryRetrieveLevel = "IMAGE" if sop else "SERIES" if series else "STUDY"
        ident.StudyInstanceUID = study
        if series:
            ident.SeriesInstanceUID = series
        if sop:
            ident.SOPInstanceUID = sop
        return Query(ident, STUDY_ROOT, retrieve=True).instances(self.db)

    def path(self, item: RetrieveItem) -> Path:
        return self.storage.absolute(item.path)

    # -- store (the C-STORE path) ------------------------------------------------------------

    def receive_file(self) -> ReceiveFile:
        return self.storage.receive_file()

    def store(
        self, rf: ReceiveFile, sop_class: str, sop_instance: str, transfer_syntax: str, source: str = ""
    ) -> Stored:
        """Make one received Part 10 file durable and indexed (raises ``DicomError`` when refused),
        then schedule the after-store hooks (PERF findings, pipeline) as C-STORE does."""
        from perfnode.net.store import store_received

        instance_id, path, duplicate, header = store_received(
            self.ctx, rf, sop_class, transfer_syntax, sop_class, sop_instance, source
        )
        if not duplicate and self.ctx.run_after_store is not None:
            self.ctx.run_after_store(instance_id, path, header)
        return Stored(instance_id, path, duplicate, header)

    # -- pipeline outputs (for the viewer) ---------------------------------------------------

    def jobs(self, series_uids: list[str]) -> list[dict[str, Any]]:
        """Jobs whose input or output series is one of ``series_uids``."""
        with self.db.read() as s:
            rows = s.execute(
                select(Job).where(
                    Job.series_instance_uid.in_(series_uids) | Job.output_series_uid.in_(series_uids)
                )
            ).scalars()
            return [
                {
                    "id": j.id,
                    "series": j.series_instance_uid,
                    "analysis": j.analysis,
                    "state": j.state,
                    "error": j.error,
                    "output_series": j.output_series_uid,
                    "output_dir": j.output_dir,
                    "finished_at": j.finished_at.isoformat() if j.finished_at else None,
                }
                for j in rows
            ]

    def job(self, job_id: int) -> dict[str, Any] | None:
        with self.db.read() as s:
            j = s.get(Job, job_id)
            if j is None:
                return None
            return {
                "id": j.id,
                "series": j.series_instance_uid,
                "analysis": j.analysis,
                "state": j.state,
                "output_series": j.output_series_uid,
                "output_dir": j.output_dir,
            }

    def series_of(self, sop_instance_uid: str) -> str | None:
        with self.db.read() as s:
            return s.execute(
                select(Series.series_instance_uid)
                .join(Instance, Instance.series_fk == Series.id)
                .where(Instance.sop_instance_uid == sop_instance_uid)
            ).scalar()
