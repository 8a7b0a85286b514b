"""Storage Service Class (C-STORE) as SCP: every storage SOP class, stored as received.

The dataset streams from the socket into a :class:`~perfnode.archive.storage.ReceiveFile` in the
data folder's ``tmp/`` (pynetdicom's chunked receive, a File Meta Information header in front of
the dataset bytes exactly as received). The handler then reads only the header, checks it,
renames the file into place (fsync), commits the index row and only then answers Success.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AllStoragePresentationContexts, _config, dimse_messages, evt
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from perfnode.archive.ingest import ParentCache, find_instance, header_uids, index_instance, read_header
from perfnode.archive.models import Instance
from perfnode.archive.storage import ReceiveFile, Storage, StoredFile
from perfnode.config import Settings
from perfnode.net.context import NodeContext
from perfnode.net.server import Context, association_stats
from perfnode.net.status import (
    SUCCESS,
    DatasetMismatch,
    DicomError,
    DuplicateConflict,
    status_dataset,
    status_for,
)

log = logging.getLogger("perfnode.store")

#: Transfer syntaxes accepted for every storage SOP class (stored as received, never transcoded).
TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
    JPEG2000Lossless, JPEG2000, RLELossless,
)


def storage_sop_classes() -> list[str]:
    """Every storage SOP class pynetdicom knows (PS3.4 Annex B), in its order."""
    return [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts]


def contexts(settings: Settings) -> list[Context]:
    return [Context(uid, TRANSFER_SYNTAXES) for uid in storage_sop_classes()]


def install_receive_files(storage: Storage) -> None:
    """Make pynetdicom stream C-STORE datasets into ``storage.tmp`` (same file system as objects)."""
    _config.STORE_RECV_CHUNKED_DATASET = True

    def factory(*_args: Any, **_kwargs: Any) -> ReceiveFile:
        return storage.receive_file()

    dimse_messages.NamedTemporaryFile = factory  # type: ignore[assignment]


def store_received(ctx: NodeContext, rf: ReceiveFile, context_sop_class: str, transfer_syntax: str,
                   request_sop_class: str, request_sop_instance: str,
                   calling_ae: str = "") -> tuple[int, Path, bool, Dataset]:
    """Make one received file durable and indexed; return (instance id, absolute path, duplicate, header).

    The header is what :func:`read_header` read (the index attributes), handed on to the hooks.

    Raises a :class:`DicomError` (nothing stored, nothing indexed) when the object is refused.
    """
    storage: Storage = ctx.storage
    try:
        fsynced = rf.finish_in_background()  # the header is read and checked while the file is fsync-ed
        try:
            ds = read_header(rf.name, transfer_syntax)
            uids = header_uids(ds)
            if uids.sop_class != context_sop_class or uids.sop_class != request_sop_class:
                raise DatasetMismatch(
                    f"(0008,0016) SOPClassUID {uids.sop_class} does not match the presentation context "
                    f"{context_sop_class} / request {request_sop_class} (PS3.4 B.2.3)")
            if uids.sop_instance != str(request_sop_instance).strip("\0 "):
                raise DatasetMismatch(
                    f"(0008,0018) SOPInstanceUID {uids.sop_instance} differs from the request's "
                    f"Affected SOP Instance UID {request_sop_instance} (PS3.7 9.3.1.1)")
        except BaseException:
            _settle(fsynced)
            raise
        sha256 = fsynced.result()  # a write error (disk full) is reported before anything else
        rf.close()
        relative = storage.relative_path(uids.study, uids.series, uids.sop_instance)
        with storage.lock(uids.sop_instance):
            placed = storage.place(rf.name, relative, sha256, rf.size)
            if placed is not None:
                stored, synced = placed
                try:
                    instance_id = _index(ctx, ds, stored, transfer_syntax, calling_ae)
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
                        _unindex(ctx, instance_id)
                        storage.remove(relative)
                        raise
                    return instance_id, storage.absolute(relative), False, ds
            found = _duplicate(ctx, rf, ds, uids.sop_instance, sha256, relative, transfer_syntax, calling_ae)
            return (*found, ds)
    finally:
        rf.discard()  # no-op once the file has been renamed into place


def _settle(future: Future) -> None:
    """Wait for a background fsync whose result no longer matters."""
    with contextlib.suppress(Exception):
        future.result()


def _unindex(ctx: NodeContext, instance_id: int) -> None:
    """Undo an index commit whose file could not be made durable."""
    with ctx.db.session() as s:
        s.execute(delete(Instance).where(Instance.id == instance_id))


def _index(ctx: NodeContext, ds: Any, stored: StoredFile, transfer_syntax: str, calling_ae: str,
           replace: bool = False) -> int:
    pending: dict[tuple, int] = {}
    with ctx.db.transaction() as conn:
        instance_id = index_instance(conn, ds, stored, transfer_syntax, calling_ae, replace=replace,
                                     cache=_parent_cache(ctx), pending=pending)
    _parent_cache(ctx).remember(pending)
    return instance_id


def _parent_cache(ctx: NodeContext) -> ParentCache:
    cache = getattr(ctx.storage, "_parent_cache", None)
    if cache is None:
        cache = ctx.storage._parent_cache = ParentCache()
    return cache


def _duplicate(ctx: NodeContext, rf: ReceiveFile, ds: Any, sop_instance: str, sha256: str, relative: str,
               transfer_syntax: str, calling_ae: str) -> tuple[int, Path, bool]:
    """The SOP Instance UID is already here: identical bytes → no-op; different → duplicate_policy."""
    storage: Storage = ctx.storage
    with ctx.db.read() as s:
        row = find_instance(s, sop_instance)
        old = (row.id, row.path, row.sha256) if row else None
    if old is None:  # a file without an index row (a crash between rename and commit): index it now
        if storage.same_content(relative, sha256):
            stored = StoredFile(relative, storage.absolute(relative).stat().st_size, sha256)
        else:
            stored = storage.commit(rf.name, relative, sha256, rf.size)
        return _index(ctx, ds, stored, transfer_syntax, calling_ae), storage.absolute(relative), False
    instance_id, old_path, old_sha = old
    if old_sha == sha256 and storage.same_content(old_path, sha256):
        return instance_id, storage.absolute(old_path), True
    if old_sha != sha256 and ctx.settings.duplicate_policy != "replace":
        raise DuplicateConflict(
            f"(0008,0018) SOPInstanceUID {sop_instance} already stored with different content "
            f"(duplicate_policy=reject)")
    stored = storage.commit(rf.name, old_path, sha256, rf.size)
    instance_id = _index(ctx, ds, stored, transfer_syntax, calling_ae, replace=True)
    return instance_id, storage.absolute(old_path), False


def handle_store(event: Any, ctx: NodeContext) -> Any:
    """EVT_C_STORE: durable store + index, then the status (failures name the problem)."""
    req = event.request
    r = event.assoc.requestor
    peer = f"{(r.ae_title or '').strip()}@{r.address}:{r.port}"
    sop_instance = str(req.AffectedSOPInstanceUID or "")
    rf = getattr(req, "_dataset_file", None)
    if not isinstance(rf, ReceiveFile):  # pragma: no cover - pynetdicom internals changed
        log.error("C-STORE from %s: dataset was not received to a file", peer)
        return status_dataset(0x0110, "dataset not received to a file (internal error)")
    t0 = time.perf_counter()
    try:
        instance_id, path, duplicate, header = store_received(
            ctx, rf, str(event.context.abstract_syntax), str(event.context.transfer_syntax),
            str(req.AffectedSOPClassUID or ""), sop_instance, str(r.ae_title or ""))
    except Exception as exc:  # noqa: BLE001 - every failure becomes a status, the association lives on
        status = status_for(exc)
        comment = str(exc) if isinstance(exc, DicomError) else f"{type(exc).__name__}: {exc}"
        association_stats(event.assoc)["refused"] += 1
        if isinstance(exc, DicomError):
            log.warning("C-STORE %s from %s refused: 0x%04X %s", sop_instance[:64], peer, status, comment)
        else:
            log.exception("C-STORE %s from %s failed: 0x%04X %s", sop_instance[:64], peer, status, comment)
        return status_dataset(status, comment)
    log.debug("C-STORE %s from %s %s in %.1f ms", sop_instance, peer,
              "duplicate (identical)" if duplicate else "stored", 1000 * (time.perf_counter() - t0))
    association_stats(event.assoc)["duplicates" if duplicate else "stored"] += 1
    if not duplicate and ctx.run_after_store is not None:
        ctx.run_after_store(instance_id, path, header)
    return SUCCESS


def handlers(ctx: NodeContext) -> list[tuple[Any, Callable]]:
    return [(evt.EVT_C_STORE, partial(handle_store, ctx=ctx))]
