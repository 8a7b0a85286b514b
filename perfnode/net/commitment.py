"""Storage Commitment Push Model SCP (PS3.4 Annex J; IHE RAD-10).

* N-ACTION (Action Type 1): the request is validated, stored durably in the index and only
  then answered with Success; the worker is woken.
* A background worker checks the instances (:func:`perfnode.archive.commitment.evaluate`) and
  sends the N-EVENT-REPORT on a new association to the requester's AE from the AE table, with
  SCP/SCU role selection (perfnode is the association requestor but the SCP of the SOP class).
  Undelivered reports are retried with exponential backoff, also after a restart.

With ``same_association = true`` the report is first tried on the N-ACTION's association if it is
still open (falling back to a new one).

As the **SCU** (``perfnode commit``, the pipeline's ``commit = true``), the node receives the reports
to its own requests here too: an N-EVENT-REPORT on a new association to the node's AE (the context
accepts SCP/SCU role selection with the caller as SCP, as Orthanc and most archives propose) is
matched by Transaction UID to a request in ``sent_commitments`` and recorded before it is answered
(:func:`handle_report`); unknown Transaction UIDs are answered 0x0115 naming the attribute.

Settings (``[commitment]`` table): ``retry_base_s`` (2), ``retry_max_s`` (300), ``poll_s`` (1),
``same_association`` (false).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_role, evt
from pynetdicom.sop_class import StorageCommitmentPushModel

from perfnode.archive.facade import DuplicateTransaction, Report
from perfnode.config import Peer, Settings
from perfnode.net.ae import AssociationFailed, associate, make_ae
from perfnode.net.context import Context, NodeContext, association_stats, peer_name
from perfnode.net.status import (
    INVALID_ARGUMENT_VALUE,
    MISSING_ATTRIBUTE,
    NO_SUCH_ACTION_TYPE,
    NO_SUCH_EVENT_TYPE,
    PROCESSING_FAILURE,
    SUCCESS,
    status_dataset,
)

log = logging.getLogger("perfnode.commitment")

#: The well-known SOP Instance of the Storage Commitment Push Model SOP Class (PS3.4 J.3.5).
WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"

TRANSFER_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


class DeliveryFailed(RuntimeError):
    """The N-EVENT-REPORT could not be delivered (no association, or a non-success status)."""


def contexts(settings: Settings) -> list[Context]:
    """N-ACTION from requesters (default roles) and N-EVENT-REPORT from the peers we asked (the
    caller proposes itself as SCP by role selection, or sends on default roles): both accepted."""
    return [Context(str(StorageCommitmentPushModel), TRANSFER_SYNTAXES, scp_role=True, scu_role=True,
                    role="SCP, SCU")]


def parse_request(ds: Dataset) -> tuple[str, list[tuple[str, str]]]:
    """Transaction UID and (class, instance) references; ValueError names a missing attribute."""
    uid = str(ds.get("TransactionUID", "") or "").strip()
    if not uid:
        raise ValueError("(0008,1195) TransactionUID: missing or empty (PS3.4 J.3.2.1.1, Type 1)")
    seq = ds.get("ReferencedSOPSequence")
    if not seq:
        raise ValueError("(0008,1199) ReferencedSOPSequence: missing or empty (PS3.4 J.3.2.1.1, Type 1)")
    refs = []
    for n, item in enumerate(seq, 1):
        cls = str(item.get("ReferencedSOPClassUID", "") or "").strip()
        inst = str(item.get("ReferencedSOPInstanceUID", "") or "").strip()
        if not cls or not inst:
            which = "(0008,1150) ReferencedSOPClassUID" if not cls else "(0008,1155) ReferencedSOPInstanceUID"
            raise ValueError(f"{which}: missing in item {n} of (0008,1199) ReferencedSOPSequence (Type 1)")
        refs.append((cls, inst))
    return uid, refs


#: request id → the N-ACTION's association, when reports may go back on it (``same_association``).
_OPEN: dict[int, Any] = {}


def send_on(assoc: Any, rep: Report, retrieve_ae: str) -> None:
    """N-EVENT-REPORT on the requester's own, still open association (pynetdicom pauses its reactor)."""
    if not assoc.is_established:
        raise DeliveryFailed("the N-ACTION association is closed")
    status, _ = assoc.send_n_event_report(
        report_dataset(rep, retrieve_ae),
        rep.event_type,
        StorageCommitmentPushModel,
        WELL_KNOWN_INSTANCE,
    )
    code = int(status.get("Status", -1)) if status is not None and "Status" in status else -1
    if code != SUCCESS:
        raise DeliveryFailed(f"N-EVENT-REPORT on the same association: status 0x{code & 0xFFFF:04X}")


def handle_action(event: Any, ctx: NodeContext, wake: threading.Event) -> tuple[Any, Dataset | None]:
    """EVT_N_ACTION: store the request, answer at once; the report follows from the worker."""
    req = event.request
    requester = str(event.assoc.requestor.ae_title or "").strip()
    if ctx.guard is not None and (refused := ctx.guard.refuse(event, "commit")) is not None:
        return refused, None
    if int(req.ActionTypeID or 0) != 1:
        return status_dataset(
            NO_SUCH_ACTION_TYPE,
            f"Action Type ID {req.ActionTypeID}: only 1 (Request Storage Commitment) exists (PS3.4 J.3.2)",
        ), None
    try:
        uid, refs = parse_request(event.action_information)
    except ValueError as exc:
        log.warning("N-ACTION from %s refused: %s", requester, exc)
        return status_dataset(MISSING_ATTRIBUTE, str(exc)), None
    if requester not in ctx.settings.peers:
        msg = f"cannot report to AE {requester!r}: not in the AE table"  # fits the 64 of LO
        log.warning("storage commitment %s refused: %s", uid, msg)
        return status_dataset(PROCESSING_FAILURE, msg), None
    try:
        request_id = ctx.archive.commitments.record(uid, requester, str(event.assoc.requestor.address), refs)
    except DuplicateTransaction as exc:
        log.warning("storage commitment refused: %s", exc)
        return status_dataset(PROCESSING_FAILURE, str(exc)), None
    association_stats(event.assoc)["commitment requests"] += 1
    log.info(
        "storage commitment %s from %s: %d instances (request %d)", uid, requester, len(refs), request_id
    )
    if ctx.settings.commitment.same_association:
        _OPEN[request_id] = event.assoc  # the worker tries this association first
    wake.set()
    return SUCCESS, None


def parse_report(ds: Dataset) -> tuple[str, list[tuple[str, str]], list[tuple[str, str, int]]]:
    """Transaction UID, committed ``(class, instance)`` and failed ``(class, instance, reason)`` of an
    N-EVENT-REPORT's Event Information (PS3.4 J.3.3.1); ValueError names a missing attribute."""
    uid = str(ds.get("TransactionUID", "") or "").strip()
    if not uid:
        raise ValueError("(0008,1195) TransactionUID: missing or empty (PS3.4 J.3.3.1.1, Type 1)")
    committed = [(str(it.get("ReferencedSOPClassUID", "")), str(it.get("ReferencedSOPInstanceUID", "")))
                 for it in ds.get("ReferencedSOPSequence", None) or []]
    failed = [(str(it.get("ReferencedSOPClassUID", "")), str(it.get("ReferencedSOPInstanceUID", "")),
               int(it.get("FailureReason", PROCESSING_FAILURE) or PROCESSING_FAILURE))
              for it in ds.get("FailedSOPSequence", None) or []]
    return uid, committed, failed


def record_report(event: Any, archive: Any, via: str) -> tuple[int, str]:
    """Match an N-EVENT-REPORT to one of our requests and record it (durable before the answer).

    Returns the status and a comment; used by the server (reports on a new association) and by the
    SCU (:func:`perfnode.net.qr_client.commit`, reports on the N-ACTION's association)."""
    caller = str(event.assoc.requestor.ae_title if via == "new" else event.assoc.acceptor.ae_title).strip()
    event_type = int(event.event_type or 0)
    if event_type not in (1, 2):
        return NO_SUCH_EVENT_TYPE, f"Event Type ID {event_type}: only 1 and 2 exist (PS3.4 J.3.3)"
    try:
        uid, committed, failed = parse_report(event.event_information)
    except ValueError as exc:
        return INVALID_ARGUMENT_VALUE, str(exc)
    match = archive.sent_commitments.record_report(uid, event_type, committed, failed, caller, via)
    if match is None:
        return INVALID_ARGUMENT_VALUE, f"(0008,1195) TransactionUID {uid}: not a request of this AE"
    if match.destination_ae != caller:
        log.info("storage commitment report %s from %s (the request went to %s)", uid, caller,
                 match.destination_ae)
    if match.unknown_instances:
        log.warning("storage commitment report %s names %d instance(s) not in the request, e.g. %s", uid,
                    len(match.unknown_instances), match.unknown_instances[0])
    log.info("storage commitment report %s from %s (%s association): %d committed, %d failed -> %s", uid,
             caller, via, len(committed), len(failed), match.state)
    return SUCCESS, ""


def handle_report(event: Any, ctx: NodeContext) -> tuple[Any, Dataset | None]:
    """EVT_N_EVENT_REPORT on a new association: the report to a request this node sent."""
    if ctx.guard is not None and (refused := ctx.guard.refuse(event, "commit")) is not None:
        return refused, None
    association_stats(event.assoc)["commitment reports"] += 1
    status, comment = record_report(event, ctx.archive, "new")
    if status != SUCCESS:
        log.warning("storage commitment report from %s refused: %s", peer_name(event), comment)
        return status_dataset(status, comment), None
    return SUCCESS, None


def report_dataset(rep: Report, retrieve_ae: str) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = rep.transaction_uid
    if rep.successes:
        ds.RetrieveAETitle = retrieve_ae
        items = []
        for cls, inst in rep.successes:
            it = Dataset()
            it.ReferencedSOPClassUID, it.ReferencedSOPInstanceUID = cls, inst
            items.append(it)
        ds.ReferencedSOPSequence = items
    if rep.failures:
        items = []
        for cls, inst, reason in rep.failures:
            it = Dataset()
            it.ReferencedSOPClassUID, it.ReferencedSOPInstanceUID, it.FailureReason = cls, inst, reason
            items.append(it)
        ds.FailedSOPSequence = items
    return ds


def send_report(settings: Settings, peer: Peer, rep: Report) -> None:
    """N-EVENT-REPORT on a new association; perfnode proposes the SCP role (PS3.4 J.3.3)."""
    ae = make_ae(settings)
    ae.add_requested_context(StorageCommitmentPushModel, list(TRANSFER_SYNTAXES))
    role = build_role(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    try:
        assoc = associate(ae, peer, settings, ext_neg=[role])
    except AssociationFailed as exc:
        raise DeliveryFailed(str(exc)) from None
    try:
        if not any(cx.as_scp for cx in assoc.accepted_contexts):
            raise DeliveryFailed(
                f"{peer.ae_title} did not accept perfnode as Storage Commitment SCP "
                "(SCP/SCU role selection refused)"
            )
        status, _ = assoc.send_n_event_report(
            report_dataset(rep, settings.ae_title),
            rep.event_type,
            StorageCommitmentPushModel,
            WELL_KNOWN_INSTANCE,
        )
        code = int(status.get("Status", -1)) if status is not None else -1
        if code != SUCCESS:
            raise DeliveryFailed(
                f"{peer.ae_title} answered the N-EVENT-REPORT with status 0x{code & 0xFFFF:04X}"
            )
    finally:
        if assoc.is_established:
            assoc.release()


class Worker:
    """Evaluates pending requests and delivers their reports, retrying with exponential backoff."""

    def __init__(self, ctx: NodeContext) -> None:
        cfg = ctx.settings.commitment
        self.ctx = ctx
        self.base_s = cfg.retry_base_s
        self.max_s = cfg.retry_max_s
        self.poll_s = cfg.poll_s
        self.wake = threading.Event()
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="stgcmt-reports", daemon=True)

    def start(self) -> Callable[[], None]:
        self.thread.start()
        return self.stop

    def stop(self) -> None:
        self._stop = True
        self.wake.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop:
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the worker must outlive a database hiccup
                log.exception("storage commitment worker iteration failed")
            self.wake.wait(self.poll_s)
            self.wake.clear()

    def run_once(self) -> None:
        commitments = self.ctx.archive.commitments
        for request_id, evaluated in commitments.due():
            if self._stop:
                return
            if not evaluated:
                commitments.evaluate(request_id)
            rep = commitments.report(request_id)
            same = _OPEN.pop(request_id, None)
            if same is not None:
                try:
                    send_on(same, rep, self.ctx.settings.ae_title)
                    commitments.delivered(request_id)
                    log.info(
                        "storage commitment report %s delivered on the same association", rep.transaction_uid
                    )
                    continue
                except Exception as exc:  # noqa: BLE001 - fall back to a new association
                    log.info(
                        "report %s not sent on the same association (%s); opening a new one",
                        rep.transaction_uid,
                        exc,
                    )
            try:
                peer = self.ctx.settings.peer(rep.requester_ae)
                send_report(self.ctx.settings, peer, rep)
            except Exception as exc:  # noqa: BLE001 - any delivery problem: retry later
                delay = commitments.failed(request_id, str(exc), self.base_s, self.max_s)
                log.warning(
                    "storage commitment report %s to %s not delivered (%s); retry in %.1f s",
                    rep.transaction_uid,
                    rep.requester_ae,
                    exc,
                    delay,
                )
                continue
            commitments.delivered(request_id)
            log.info(
                "storage commitment report %s delivered to %s: %d committed, %d failed",
                rep.transaction_uid,
                rep.requester_ae,
                len(rep.successes),
                len(rep.failures),
            )


_workers: dict[int, Worker] = {}


def _worker(ctx: NodeContext) -> Worker:
    if id(ctx) not in _workers:
        _workers[id(ctx)] = Worker(ctx)
    return _workers[id(ctx)]


def handlers(ctx: NodeContext) -> list[tuple[Any, Callable]]:
    return [(evt.EVT_N_ACTION, partial(handle_action, ctx=ctx, wake=_worker(ctx).wake)),
            (evt.EVT_N_EVENT_REPORT, partial(handle_report, ctx=ctx))]


def start(ctx: NodeContext) -> Callable[[], None]:
    worker = _worker(ctx)
    stop = worker.start()

    def stop_and_forget() -> None:
        stop()
        _workers.pop(id(ctx), None)

    return stop_and_forget
