"""What the web services need from the archive, in one place: calls on the archive facade
(:class:`perfnode.archive.facade.Archive`), the same use cases as the DIMSE services — searches and
retrieves through the one matcher (as C-FIND / C-MOVE / C-GET), stores through the store use case (the
same checks, fsync and index commit before Success, the same after-store listeners as C-STORE).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from perfnode.archive.facade import STUDY_ROOT, Announced, FindRun, Job, ReceiveFile, RetrieveItem, Stored
from perfnode.net.context import NodeContext

__all__ = ["Backend", "Stored"]


class Backend:
    """The archive as the web services see it (thread-safe; blocking calls: run them in a thread)."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.archive = ctx.archive
        self.settings = ctx.settings

    # -- search and retrieve (the one matcher) -----------------------------------------------

    def search(
        self, identifier: Dataset, *, relational: bool, offset: int = 0, page_size: int = 200
    ) -> tuple[FindRun, Iterator[list[Dataset]]]:
        """A validated query (raises ``QueryError``) and its pages of response identifiers."""
        query = self.archive.find(identifier, STUDY_ROOT, relational=relational)
        return query, query.pages(page_size=page_size, offset=offset)

    def instances(self, study: str, series: str | None = None, sop: str | None = None) -> list[RetrieveItem]:
        """Stored instances under a study / series / one instance (the retrieve path of C-GET)."""
        ident = Dataset()
        ident.QueryRetrieveLevel = "IMAGE" if sop else "SERIES" if series else "STUDY"
        ident.StudyInstanceUID = study
        if series:
            ident.SeriesInstanceUID = series
        if sop:
            ident.SOPInstanceUID = sop
        return self.archive.retrieve(ident, STUDY_ROOT)

    def path(self, item: RetrieveItem) -> Path:
        return self.archive.path(item.path)

    # -- store (the C-STORE path) ------------------------------------------------------------

    def receive_file(self) -> ReceiveFile:
        return self.archive.receive_file()

    def store(
        self, rf: ReceiveFile, sop_class: str, sop_instance: str, transfer_syntax: str, source: str = ""
    ) -> Stored:
        """Make one received Part 10 file durable and indexed (raises ``DicomError`` when refused);
        the archive's after-store listeners (PERF findings) run as for C-STORE."""
        return self.archive.store(rf, Announced(sop_class, sop_instance, transfer_syntax, sop_class, source))

    # -- pipeline outputs (for the viewer) ---------------------------------------------------

    def jobs(self, series_uids: list[str]) -> list[dict[str, Any]]:
        """Jobs whose input or output series is one of ``series_uids``."""
        return [{**_job(j), "error": j.error,
                 "finished_at": j.finished_at.isoformat() if j.finished_at else None}
                for j in self.archive.jobs.about_series(series_uids)]

    def job(self, job_id: int) -> dict[str, Any] | None:
        j = self.archive.jobs.get(job_id)
        return None if j is None else _job(j)

    def series_of(self, sop_instance_uid: str) -> str | None:
        return self.archive.series_of_instance(sop_instance_uid)


def _job(j: Job) -> dict[str, Any]:
    return {"id": j.id, "series": j.series_instance_uid, "analysis": j.analysis, "state": j.state,
            "output_series": j.output_series_uid, "output_dir": j.output_dir}
