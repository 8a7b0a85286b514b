"""Query/Retrieve C-MOVE and C-GET SCP (Patient Root and Study Root; PS3.4 C.4.2, C.4.3).

The handlers list the matching files in the archive (:meth:`Archive.retrieve`), then read and
yield one dataset at a time; pynetdicom runs the C-STORE sub-operations, counts them, sends
the pending responses and builds the final one (0xB000 with the Failed SOP Instance UID List
on partial failure, 0xFE00 on C-CANCEL).

Transfer syntax (:mod:`perfnode.dicom.transcode`): a file goes out as stored when the destination
accepted that transfer syntax for its SOP class; otherwise it is re-encoded to one the destination
accepted (decompressed, byte-swapped from big endian, or losslessly compressed); when none fits, that
sub-operation fails and the log names the syntaxes stored, accepted and possible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from perfnode.archive.facade import PATIENT_ROOT, STUDY_ROOT, RetrieveItem
from perfnode.audit.messages import Participant
from perfnode.config import Settings
from perfnode.dicom import transcode
from perfnode.net import store
from perfnode.net.ae import sub_association_args
from perfnode.net.client import accepted_syntaxes, storage_proposal
from perfnode.net.context import Context, NodeContext, association_stats
from perfnode.net.find import TRANSFER_SYNTAXES, query_status
from perfnode.net.guard import Transfers, requestor
from perfnode.net.server import tune_socket
from perfnode.net.status import CANCEL

log = logging.getLogger("perfnode.retrieve")

MOVE_ROOTS = {
    str(PatientRootQueryRetrieveInformationModelMove): PATIENT_ROOT,
    str(StudyRootQueryRetrieveInformationModelMove): STUDY_ROOT,
}
GET_ROOTS = {
    str(PatientRootQueryRetrieveInformationModelGet): PATIENT_ROOT,
    str(StudyRootQueryRetrieveInformationModelGet): STUDY_ROOT,
}
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
MAX_CONTEXTS = 128


def contexts(settings: Settings) -> list[Context]:
    """Q/R Move and Get; storage SOP classes also with SCP/SCU role selection (C-GET sub-operations)."""
    qr = [Context(uid, TRANSFER_SYNTAXES) for uid in (*MOVE_ROOTS, *GET_ROOTS)]
    roles = [
        Context(uid, store.TRANSFER_SYNTAXES, scp_role=True, scu_role=True, role="SCU (C-GET)")
        for uid in store.storage_sop_classes()
    ]
    return qr + roles


# -- transfer syntax choice ---------------------------------------------------------------


def proposal(
    items: Iterable[RetrieveItem], transfer_syntaxes: tuple[str, ...] = ()
) -> list[PresentationContext]:
    """Contexts for a C-MOVE sub-association (:func:`perfnode.net.client.storage_proposal`)."""
    return storage_proposal(((it.sop_class_uid, it.transfer_syntax_uid) for it in items), transfer_syntaxes)


def prepare(path: Path, accepted: dict[str, set[str]]) -> tuple[Dataset, str]:
    """Read one stored file and make it sendable: ``(dataset, "")`` or ``(dataset, reason it cannot be)``."""
    ds = dcmread(path)
    cls = str(ds.SOPClassUID)
    stored = str(ds.file_meta.TransferSyntaxUID)
    try:
        ds = transcode.for_peer(ds, accepted.get(cls, set()))
    except transcode.NoAcceptableSyntax as exc:
        return ds, str(exc)
    if str(ds.file_meta.TransferSyntaxUID) != stored:
        log.info("re-encoded %s from %s to %s for the destination", ds.SOPInstanceUID,
                 UID(stored).name, UID(str(ds.file_meta.TransferSyntaxUID)).name)
    return ds, ""


def _datasets(
    ctx: NodeContext, items: list[RetrieveItem], event: Any, accepted: Callable[[], dict[str, set[str]]],
    sent: Transfers | None = None,
) -> Iterator[tuple[int, Dataset | None]]:
    """(status, dataset) pairs for the sub-operations, read lazily; stops on C-CANCEL. Each dataset
    handed out is noted in ``sent`` (for the audit trail)."""
    for it in items:
        if event.is_cancelled:
            log.info("retrieve cancelled by the requester")
            yield CANCEL, None
            return
        path = ctx.archive.path(it.path)
        try:
            ds, reason = prepare(path, accepted())
        except Exception as exc:  # noqa: BLE001 - unreadable/missing file: fail this sub-operation
            log.error("retrieve %s: cannot read %s: %s", it.sop_instance_uid, path, exc)
            failed = Dataset()  # pynetdicom counts it failed and lists its SOP Instance UID
            failed.SOPClassUID = it.sop_class_uid
            failed.SOPInstanceUID = it.sop_instance_uid
            yield 0xFF00, failed
            continue
        if reason:
            log.warning("retrieve %s: sub-operation will fail: %s", it.sop_instance_uid, reason)
            failed = Dataset()  # no context carries it: pynetdicom counts it failed and lists it
            failed.SOPClassUID = it.sop_class_uid
            failed.SOPInstanceUID = it.sop_instance_uid
            yield 0xFF00, failed
            continue
        if sent is not None:
            sent.add(ds, it.sop_class_uid)
        yield 0xFF00, ds


def _tune(event: Any) -> None:
    """TCP_NODELAY and TCP_QUICKACK on the C-MOVE sub-association (as for accepted connections):
    without QUICKACK a destination that writes its C-STORE-RSP in pieces under Nagle (DCMTK
    storescp) waits for our delayed ACK, ~40 ms per object."""
    tune_socket(event.assoc.dul.socket)


def _items(event: Any, ctx: NodeContext,
           roots: dict[str, str]) -> tuple[list[RetrieveItem], Exception | None]:
    """The instances the identifier selects, or the reason it was refused."""
    try:
        root = roots.get(str(event.request.AffectedSOPClassUID), STUDY_ROOT)
        return ctx.archive.retrieve(event.identifier, root), None
    except Exception as exc:  # noqa: BLE001
        log.warning("retrieve refused: %s", exc)
        return [], exc


def handle_move(event: Any, ctx: NodeContext) -> Iterator[Any]:
    """EVT_C_MOVE: destination from the AE table, then the sub-operations."""
    dest = str(event.move_destination or "").strip()
    peer = ctx.settings.peers.get(dest)
    if peer is None:
        log.warning("C-MOVE to %r refused: not in the AE table (0xA801)", dest)
        yield None, None
        return
    items, error = _items(event, ctx, MOVE_ROOTS)
    store_assoc: list[Any] = []
    kwargs = {
        **sub_association_args(ctx.settings, peer),
        "contexts": proposal(items, peer.transfer_syntaxes) or [build_context(Verification)],
        "evt_handlers": [
            (evt.EVT_CONN_OPEN, _tune),
            (evt.EVT_ESTABLISHED, lambda e: store_assoc.append(e.assoc)),
        ],
    }
    yield peer.host, peer.port, kwargs
    refused = ctx.guard.refuse(event, "retrieve") if ctx.guard is not None else None
    if refused is not None:
        yield 1
        yield refused, None
        return
    if error is not None:  # one pseudo sub-operation to carry the failure status back
        yield 1
        yield query_status(error), None
        return
    log.info("C-MOVE of %d instances to %s@%s:%s", len(items), dest, peer.host, peer.port)
    association_stats(event.assoc)["sub-operations"] += len(items)
    yield len(items)
    sent = Transfers()
    try:
        yield from _datasets(ctx, items, event,
                             lambda: accepted_syntaxes(store_assoc[0]) if store_assoc else {}, sent)
    finally:
        if ctx.guard is not None:
            ctx.guard.retrieved(event, Participant(dest, peer.host), sent.take(), "C-MOVE", False)


def handle_get(event: Any, ctx: NodeContext) -> Iterator[Any]:
    """EVT_C_GET: storage sub-operations on the requester's own association (it is the Storage SCP)."""
    if ctx.guard is not None and (refused := ctx.guard.refuse(event, "retrieve")) is not None:
        yield 1
        yield refused, None
        return
    items, error = _items(event, ctx, GET_ROOTS)
    if error is not None:
        yield 1
        yield query_status(error), None
        return
    log.info("C-GET of %d instances by %s", len(items), event.assoc.requestor.ae_title)
    association_stats(event.assoc)["sub-operations"] += len(items)
    yield len(items)
    accepted = accepted_syntaxes(event.assoc)
    sent = Transfers()
    try:
        yield from _datasets(ctx, items, event, lambda: accepted, sent)
    finally:
        if ctx.guard is not None:
            ctx.guard.retrieved(event, requestor(event.assoc), sent.take(), "C-GET", True)


def handlers(ctx: NodeContext) -> list[tuple[Any, Callable]]:
    return [(evt.EVT_C_MOVE, partial(handle_move, ctx=ctx)), (evt.EVT_C_GET, partial(handle_get, ctx=ctx))]
