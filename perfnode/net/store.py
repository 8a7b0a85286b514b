"""Storage Service Class (C-STORE) as SCP: every storage SOP class, stored as received.

The dataset streams from the socket into a file the archive gives (:meth:`Archive.receive_file`:
pynetdicom's chunked receive, a File Meta Information header in front of the dataset bytes exactly
as received). The handler hands it to the store use case (:meth:`Archive.store`: header checked,
whole object walked and validated (:mod:`perfnode.archive.validation`), fsync, rename, index commit)
and answers with the status of what came back: Success, or 0xB007 (stored, not conformant) with the
Offending Element(s) and the first finding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

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

from perfnode.archive.facade import Announced, Archive, ReceiveFile
from perfnode.config import Settings
from perfnode.net.context import Context, NodeContext, association_stats, peer_name
from perfnode.net.status import (
    STORED_DATASET_DOES_NOT_MATCH_SOP_CLASS,
    SUCCESS,
    DicomError,
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


#: pynetdicom's own settings, put back by :func:`uninstall_receive_files`.
_PYNETDICOM_DEFAULTS = (_config.STORE_RECV_CHUNKED_DATASET, dimse_messages.NamedTemporaryFile)


def install_receive_files(archive: Archive) -> None:
    """Make pynetdicom stream C-STORE datasets into the archive's ``tmp/`` (same file system as objects).

    This is process-wide (pynetdicom reads a module global): every C-STORE SCP of the process, also an
    SCU's C-GET, writes into the archive until :func:`uninstall_receive_files`.
    """
    _config.STORE_RECV_CHUNKED_DATASET = True

    def factory(*_args: Any, **_kwargs: Any) -> ReceiveFile:
        return archive.receive_file()

    dimse_messages.NamedTemporaryFile = factory  # type: ignore[assignment]


def uninstall_receive_files() -> None:
    """Give pynetdicom its own receive back (when the server stops)."""
    _config.STORE_RECV_CHUNKED_DATASET, dimse_messages.NamedTemporaryFile = _PYNETDICOM_DEFAULTS


def setup(ctx: NodeContext) -> None:
    """Before the port opens: received datasets go straight into files of the archive."""
    install_receive_files(ctx.archive)


def start(ctx: NodeContext) -> Callable[[], None]:
    """The stopper: the receive goes back to pynetdicom's when the server stops."""
    return uninstall_receive_files


def handle_store(event: Any, ctx: NodeContext) -> Any:
    """EVT_C_STORE: durable store + index (the archive's store use case), then the status."""
    req = event.request
    peer = peer_name(event)
    sop_instance = str(req.AffectedSOPInstanceUID or "")
    rf = getattr(req, "_dataset_file", None)
    if not isinstance(rf, ReceiveFile):  # pragma: no cover - pynetdicom internals changed
        log.error("C-STORE from %s: dataset was not received to a file", peer)
        return status_dataset(0x0110, "dataset not received to a file (internal error)")
    if ctx.guard is not None and (refused := ctx.guard.refuse(event, "store")) is not None:
        rf.discard()
        association_stats(event.assoc)["refused"] += 1
        return refused
    t0 = time.perf_counter()
    announced = Announced(str(req.AffectedSOPClassUID or ""), sop_instance,
                          str(event.context.transfer_syntax), str(event.context.abstract_syntax),
                          str(event.assoc.requestor.ae_title or ""))
    try:
        stored = ctx.archive.store(rf, announced)
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
              "duplicate (identical)" if stored.duplicate else "stored", 1000 * (time.perf_counter() - t0))
    association_stats(event.assoc)["duplicates" if stored.duplicate else "stored"] += 1
    if ctx.guard is not None:
        ctx.guard.stored(event, stored.header, announced.sop_class_uid)
    if stored.findings:
        association_stats(event.assoc)["with findings"] += 1
        log.info("C-STORE %s from %s stored with %d finding(s): %s", sop_instance[:64], peer,
                 len(stored.findings), "; ".join(f"{f.attribute} {f.found}" for f in stored.findings[:5]))
        first = stored.findings[0]
        more = f" +{len(stored.findings) - 1}" if len(stored.findings) > 1 else ""
        offending = [int(f.tag[1:5] + f.tag[6:10], 16) for f in stored.findings if f.tag][:16]
        comment = f"{first.attribute} {first.found}{more}"
        return status_dataset(STORED_DATASET_DOES_NOT_MATCH_SOP_CLASS, comment, offending)
    return SUCCESS


def handlers(ctx: NodeContext) -> list[tuple[Any, Callable[..., Any]]]:
    return [(evt.EVT_C_STORE, partial(handle_store, ctx=ctx))]
