"""Crash recovery at start: every file in ``objects/`` has an index row, or is set aside in ``quarantine/``.

A C-STORE makes its file durable, renames it into ``objects/`` and then commits the index row; a
crash (kill -9, power) between the two leaves a file without a row (never acknowledged: Success
is sent only after the commit). :func:`reconcile` finds such files and

* re-indexes each one that is whole: it parses completely in its transfer syntax
  (:mod:`perfnode.dicom.wellformed`) and its UIDs are the ones its path was built from;
* moves every other one to ``quarantine/`` (same relative path, plus ``.why`` saying why), e.g. a
  file whose SOP Instance UID is indexed under another path, or one that does not parse.

Which files are looked at: the node writes ``state/running`` (its start time) when it starts and
removes it on a clean stop. Left behind, it means the last run did not stop cleanly, and files
modified since that run started (less :data:`CLOCK_MARGIN_S`) are checked. With no ``state/``
folder at all (a data folder from before recovery existed), every file is checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from perfnode.archive.db import Database
from perfnode.archive.ingest import header_uids, index_instance, read_header
from perfnode.archive.models import Instance
from perfnode.archive.storage import Storage, StoredFile, fsync_dir
from perfnode.archive.validation import record_findings, validate_received
from perfnode.errors import DicomError

log = logging.getLogger("perfnode.recovery")

#: Files modified this long before the crashed run started are checked too (clock steps, NTP).
CLOCK_MARGIN_S = 3600.0
#: SOP Instance UIDs looked up per query.
BATCH = 500


@dataclass
class Recovered:
    """An orphan re-indexed at start (for the after-store hooks)."""

    instance_id: int
    path: Path
    header: Dataset


@dataclass
class RecoveryReport:
    checked: int = 0
    reindexed: list[Recovered] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)
    scope: str = ""

    @property
    def line(self) -> str:
        return (f"crash recovery ({self.scope}): {self.checked} file(s) in objects/ checked, "
                f"{len(self.reindexed)} without an index row re-indexed, "
                f"{len(self.quarantined)} moved to quarantine/")


class RunMarker:
    """``state/running``: present while a node runs on this data folder."""

    def __init__(self, storage: Storage) -> None:
        self.folder = storage.root / "state"
        self.path = self.folder / "running"

    def previous_run_started(self) -> float | None | bool:
        """Start time of a run that did not stop cleanly; ``False`` after a clean stop; ``None`` when
        this data folder has no state yet (check everything)."""
        if not self.folder.is_dir():
            return None
        try:
            return float(json.loads(self.path.read_text())["started"])
        except FileNotFoundError:
            return False
        except (ValueError, KeyError, TypeError, OSError):
            return None  # unreadable marker: check everything

    def mark_started(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"started": time.time(), "pid": os.getpid()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.folder)

    def mark_stopped(self) -> None:
        try:
            self.path.unlink()
            fsync_dir(self.folder)
        except FileNotFoundError:
            pass


def _objects(storage: Storage, since: float | None) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(relative path, entry) of the files under ``objects/`` (modified at or after ``since``)."""
    stack = [storage.objects]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))
            elif since is None or e.stat(follow_symlinks=False).st_mtime >= since:
                yield os.path.relpath(e.path, storage.root), e


def reconcile(storage: Storage, db: Database) -> RecoveryReport:
    """Re-index or quarantine the files in ``objects/`` that have no index row; log the counts."""
    marker = RunMarker(storage)
    previous = marker.previous_run_started()
    report = RecoveryReport()
    if previous is False:
        report.scope = "last stop was clean"
    else:
        since = None if previous is None else float(previous) - CLOCK_MARGIN_S
        report.scope = "every file" if since is None else "files since the unclean run started"
        batch: list[str] = []
        for relative, _entry in _objects(storage, since):
            batch.append(relative)
            if len(batch) >= BATCH:
                _reconcile_batch(storage, db, batch, report)
                batch = []
        if batch:
            _reconcile_batch(storage, db, batch, report)
    marker.mark_started()
    (log.warning if report.reindexed or report.quarantined else log.info)("%s", report.line)
    return report


def _reconcile_batch(storage: Storage, db: Database, relatives: list[str], report: RecoveryReport) -> None:
    report.checked += len(relatives)
    files = [(Path(r).stem, r) for r in relatives]  # two files may carry the same UID: a list
    with db.read() as s:
        indexed = dict(s.execute(select(Instance.sop_instance_uid, Instance.path)
                                 .where(Instance.sop_instance_uid.in_({uid for uid, _ in files}))).all())
    for uid, relative in files:
        if indexed.get(uid) == relative:
            continue
        if uid in indexed:
            _quarantine(storage, relative, report, f"SOP Instance UID {uid} is indexed at {indexed[uid]}")
            continue
        try:
            report.reindexed.append(_reindex(storage, db, relative))
            indexed[uid] = relative
            log.warning("crash recovery: %s had no index row: re-indexed", relative)
        except (DicomError, OSError, ValueError, IntegrityError) as exc:
            _quarantine(storage, relative, report, str(exc).splitlines()[0])


def _reindex(storage: Storage, db: Database, relative: str) -> Recovered:
    path = storage.absolute(relative)
    ds = read_header(path)
    transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
    uids = header_uids(ds)
    if storage.relative_path(uids.study, uids.series, uids.sop_instance) != relative:
        raise ValueError(f"its UIDs ({uids.study}/{uids.series}/{uids.sop_instance}) do not match its path")
    findings = validate_received(path, transfer_syntax, uids.sop_class)
    with open(path, "rb") as f:
        sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    stored = StoredFile(relative, path.stat().st_size, sha256)
    with db.transaction() as conn:
        instance_id = index_instance(conn, ds, stored, transfer_syntax, "")
        record_findings(conn, instance_id, findings)
    return Recovered(instance_id, path, ds)


def _quarantine(storage: Storage, relative: str, report: RecoveryReport, why: str) -> None:
    source = storage.absolute(relative)
    dest = storage.root / "quarantine" / Path(relative).relative_to("objects")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, dest)
    dest.with_name(dest.name + ".why").write_text(why + "\n")
    fsync_dir(dest.parent)
    fsync_dir(source.parent)
    report.quarantined.append((relative, why))
    log.warning("crash recovery: %s moved to quarantine/: %s", relative, why)
