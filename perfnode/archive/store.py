"""The store use case: one received object made durable and indexed, or refused naming the problem.

:meth:`StoreObjects.store` is the one path every object takes into the archive (C-STORE over the
network, a job's output maps, and any other front end): the file was written into ``tmp/`` by a
:class:`~perfnode.archive.storage.ReceiveFile`; the header is read and checked against what the sender
announced while the file is ``fsync``-ed; the file is renamed into place (directory ``fsync``), the
index row committed, and only then does the call return — the caller may acknowledge. Any refusal
raises a :mod:`perfnode.errors` exception (nothing stored, nothing indexed); which status it becomes
is the network layer's business.

The ids of Patient/Study/Series rows already committed are cached (:class:`~perfnode.archive.ingest.
ParentCache`), so a series costs one parent lookup, not one per image.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from perfnode.archive.db import Database
from perfnode.archive.ingest import ParentCache, find_instance, header_uids, index_instance, read_header
from perfnode.archive.models import Instance
from perfnode.archive.storage import ReceiveFile, Storage, StoredFile
from perfnode.archive.validation import ValidationMode, judge, record_findings, walk_received
from perfnode.dicom.findings import Finding
from perfnode.errors import DatasetMismatch, DuplicateConflict

#: What to do when a SOP Instance UID arrives again with different bytes.
DUPLICATE_POLICIES = ("reject", "replace")


@dataclass(frozen=True)
class Announced:
    """What the sender said about the object before its bytes were read (C-STORE request, STOW part)."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    #: The SOP class of the presentation context it came on (defaults to ``sop_class_uid``).
    context_sop_class_uid: str = ""
    calling_ae: str = ""


@dataclass(frozen=True)
class Stored:
    """An object that is durable and indexed (the result of every store)."""

    instance_id: int
    sop_instance_uid: str
    #: Absolute path of the stored file.
    path: Path
    #: ``True`` when an identical object was already stored (nothing changed).
    duplicate: bool
    #: The index attributes read at store time (no pixel data).
    header: Dataset
    #: Readable but not conformant (validation "warn"): what was found, recorded in the index.
    findings: tuple[Finding, ...] = ()


class StoreObjects:
    """Store received files into one archive (files + index)."""

    def __init__(self, db: Database, storage: Storage, duplicate_policy: str = "reject",
                 validation: str = "warn") -> None:
        if duplicate_policy not in DUPLICATE_POLICIES:
            raise ValueError(f"duplicate_policy {duplicate_policy!r}: expected one of {DUPLICATE_POLICIES}")
        self.db = db
        self.storage = storage
        self.duplicate_policy = duplicate_policy
        self.validation = ValidationMode(validation)
        self.parents = ParentCache()

    def store(self, rf: ReceiveFile, announced: Announced) -> Stored:
        """Make one received file durable and indexed (raises a :class:`~perfnode.errors.DicomError`)."""
        storage = self.storage
        try:
            fsynced = rf.finish_in_background()  # the header is read and checked while the file is fsync-ed
            try:
                # the whole object is walked first: unreadable → refused, naming the element
                walked = walk_received(rf.name, announced.transfer_syntax_uid)
                ds = read_header(rf.name, announced.transfer_syntax_uid)
                uids = header_uids(ds)
                context_class = announced.context_sop_class_uid or announced.sop_class_uid
                if uids.sop_class != context_class or uids.sop_class != announced.sop_class_uid:
                    raise DatasetMismatch(
                        f"(0008,0016) SOPClassUID {uids.sop_class} does not match the presentation context "
                        f"{context_class} / request {announced.sop_class_uid} (PS3.4 B.2.3)")
                if uids.sop_instance != str(announced.sop_instance_uid).strip("\0 "):
                    raise DatasetMismatch(
                        f"(0008,0018) SOPInstanceUID {uids.sop_instance} differs from the request's "
                        f"Affected SOP Instance UID {announced.sop_instance_uid} (PS3.7 9.3.1.1)")
                findings = tuple(judge(walked, uids.sop_class, self.validation))
            except BaseException:
                _settle(fsynced)
                raise
            sha256 = fsynced.result()  # a write error (disk full) is reported before anything else
            rf.close()
            relative = storage.relative_path(uids.study, uids.series, uids.sop_instance)
            ts, ae = announced.transfer_syntax_uid, announced.calling_ae
            with storage.lock(uids.sop_instance):
                placed = storage.place(rf.name, relative, sha256, rf.size)
                if placed is not None:
                    stored, synced = placed
                    try:
                        instance_id = self._index(ds, stored, ts, ae, findings=findings)
                    except IntegrityError:  # the SOP Instance UID is indexed under another study/series
                        _settle(synced)
                        storage.remove(relative)
                    except BaseException:
                        _settle(synced)
                        storage.remove(relative)
                        raise
                    else:
                        try:
                            synced.result()  # the rename is durable: only now may we acknowledge
                        except BaseException:
                            self._unindex(instance_id)
                            storage.remove(relative)
                            raise
                        return Stored(instance_id, uids.sop_instance, storage.absolute(relative), False, ds,
                                      findings)
                instance_id, path, duplicate = self._duplicate(rf, ds, uids.sop_instance, sha256, relative,
                                                               ts, ae, findings)
                return Stored(instance_id, uids.sop_instance, path, duplicate, ds, findings)
        finally:
            rf.discard()  # no-op once the file has been renamed into place

    def store_file(self, path: str | Path, calling_ae: str = "") -> Stored:
        """Store a copy of a local Part 10 file (a job's output); the file itself is left alone.

        A re-run job makes the same SOP Instance UIDs: where one is stored already with other bytes,
        the stored copy is kept and returned (what was sent before is what is sent again).
        """
        ds = read_header(path)
        uids = header_uids(ds)
        rf = self.storage.receive_file()
        with open(path, "rb") as src:
            while chunk := src.read(1 << 20):
                rf.write(chunk)
        announced = Announced(uids.sop_class, uids.sop_instance, str(ds.file_meta.TransferSyntaxUID),
                              calling_ae=calling_ae)
        try:
            return self.store(rf, announced)
        except DuplicateConflict:
            with self.db.read() as s:
                row = find_instance(s, uids.sop_instance)
                if row is None:  # pragma: no cover - a conflict implies a row
                    raise
                return Stored(row.id, uids.sop_instance, self.storage.absolute(row.path), True, ds)

    def _index(self, ds: Any, stored: StoredFile, transfer_syntax: str, calling_ae: str,
               replace: bool = False, findings: tuple[Finding, ...] = ()) -> int:
        pending: dict[tuple[Any, ...], int] = {}
        with self.db.transaction() as conn:
            instance_id = index_instance(conn, ds, stored, transfer_syntax, calling_ae, replace=replace,
                                         cache=self.parents, pending=pending)
            record_findings(conn, instance_id, list(findings))
        self.parents.remember(pending)
        return instance_id

    def _unindex(self, instance_id: int) -> None:
        """Undo an index commit whose file could not be made durable."""
        with self.db.session() as s:
            s.execute(delete(Instance).where(Instance.id == instance_id))

    def _duplicate(self, rf: ReceiveFile, ds: Any, sop_instance: str, sha256: str, relative: str,
                   transfer_syntax: str, calling_ae: str,
                   findings: tuple[Finding, ...] = ()) -> tuple[int, Path, bool]:
        """The SOP Instance UID is already here: identical bytes → no-op; different → duplicate_policy."""
        storage = self.storage
        with self.db.read() as s:
            row = find_instance(s, sop_instance)
            old = (row.id, row.path, row.sha256) if row else None
        if old is None:  # a file without an index row (a crash between rename and commit): index it now
            if storage.same_content(relative, sha256):
                stored = StoredFile(relative, storage.absolute(relative).stat().st_size, sha256)
            else:
                stored = storage.commit(rf.name, relative, sha256, rf.size)
            return (self._index(ds, stored, transfer_syntax, calling_ae, findings=findings),
                    storage.absolute(relative), False)
        instance_id, old_path, old_sha = old
        if old_sha == sha256 and storage.same_content(old_path, sha256):
            return instance_id, storage.absolute(old_path), True
        if old_sha != sha256 and self.duplicate_policy != "replace":
            raise DuplicateConflict(
                # the reason first: a DIMSE Error Comment is cut to 64 characters (the UID is logged)
                f"(0008,0018) SOPInstanceUID already stored with different content "
                f"(duplicate_policy=reject): {sop_instance}")
        stored = storage.commit(rf.name, old_path, sha256, rf.size)
        instance_id = self._index(ds, stored, transfer_syntax, calling_ae, replace=True, findings=findings)
        return instance_id, storage.absolute(old_path), False


def _settle(future: Future[Any]) -> None:
    """Wait for a background fsync whose result no longer matters."""
    with contextlib.suppress(Exception):
        future.result()
