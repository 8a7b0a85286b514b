"""SCU side of Query/Retrieve and Storage Commitment: perfnode asks another PACS.

* :func:`find` — C-FIND, yields the response identifiers;
* :func:`move` — C-MOVE to a destination AE (e.g. this node, to pull data in);
* :func:`get` — C-GET, the objects arrive on the same association and are written to a folder;
* :func:`commit` — Storage Commitment Push Model SCU: N-ACTION, then wait for the N-EVENT-REPORT,
  on the same association (if the PACS sends it there) or on a listening port.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from pynetdicom import DEFAULT_TRANSFER_SYNTAXES, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StorageCommitmentPushModel,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from perfnode.config import ConfigError, Peer, Settings
from perfnode.net.ae import AssociationFailed, associate, listen, make_ae
from perfnode.net.client import iter_files
from perfnode.net.context import Context
from perfnode.net.find import encodable

if TYPE_CHECKING:
    from perfnode.archive.facade import Archive

log = logging.getLogger("perfnode.qr_client")

MODELS = {
    "STUDY": (
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelGet,
    ),
    "PATIENT": (
        PatientRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelMove,
        PatientRootQueryRetrieveInformationModelGet,
    ),
}
#: Transfer syntaxes offered for C-GET storage sub-operations (uncompressed first, then lossless).
GET_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
]
WELL_KNOWN_STGCMT = "1.2.840.10008.1.20.1.1"


class QueryFailed(RuntimeError):
    """The peer answered with a failure status; the message has the status and its comment."""


def identifier(level: str, keys: dict[str, str], charset: str | None = None) -> Dataset:
    """A request identifier: ``QueryRetrieveLevel`` plus keys (``""`` = return key, ``a\\b`` = list).

    ``charset``: the Specific Character Set (0008,0005) the identifier declares and its text is
    encoded in (e.g. ``"ISO_IR 192"``, ``"ISO_IR 144"``, ``"ISO 2022 IR 87"``; several values
    separated by backslashes)."""
    ds = Dataset()
    terms = [t.strip() for t in (charset or "").split("\\")]
    if charset:
        ds.SpecificCharacterSet = terms if len(terms) > 1 else terms[0]
    ds.QueryRetrieveLevel = level.upper()
    for kw, value in keys.items():
        if value and not encodable(value, [t or "ISO 2022 IR 6" for t in terms]):
            raise ConfigError(f"--key {kw}={value}: cannot be written in Specific Character Set "
                              f"{charset or '(none: ASCII)'!r}; use --charset ISO_IR 192 (UTF-8) or one "
                              "that has these characters")
        if value and "\\" in value:
            setattr(ds, kw, value.split("\\"))
        else:
            setattr(ds, kw, value if value != "" else None)
    return ds


def _failure(what: str, status: Dataset) -> QueryFailed:
    comment = status.get("ErrorComment", "")
    return QueryFailed(f"{what}: status 0x{int(status.Status):04X}" + (f" ({comment})" if comment else ""))


def _find_on(assoc: Any, peer: Peer, request: Dataset, model: str) -> Iterator[Dataset]:
    """C-FIND on an established association; yields each matching identifier."""
    for status, ds in assoc.send_c_find(request, model):
        if status is None or "Status" not in status:
            raise QueryFailed(f"C-FIND to {peer.ae_title}: no response (association lost or timed out)")
        code = int(status.Status)
        if code in (0xFF00, 0xFF01):
            yield ds
        elif code != 0x0000:
            raise _failure(f"C-FIND to {peer.ae_title}", status)


def find(
    peer: Peer, settings: Settings, level: str, keys: dict[str, str], root: str = "STUDY",
    charset: str | None = None,
) -> Iterator[Dataset]:
    """C-FIND; yields each matching identifier (raises :class:`QueryFailed` on a failure status).

    ``charset``: the request's Specific Character Set (default ``[query] character_set``, UTF-8)."""
    model = MODELS[root][0]
    ae = make_ae(settings)
    ae.add_requested_context(model)
    assoc = associate(ae, peer, settings)
    charset = settings.query.character_set if charset is None else charset
    try:
        yield from _find_on(assoc, peer, identifier(level, keys, charset), model)
    finally:
        if assoc.is_established:
            assoc.release()


def _values(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value if v]


def held_sop_classes(
    peer: Peer, settings: Settings, level: str, keys: dict[str, str], root: str = "STUDY"
) -> list[str]:
    """The SOP Class UIDs of what a C-GET with these keys will bring, asked of the peer by C-FIND on
    one association: SOP Classes in Study (0008,0062) at STUDY level when the peer returns it, else
    series by series down to IMAGE level (SOP Class UID). Raises :class:`QueryFailed` or
    :class:`~perfnode.net.ae.AssociationFailed` when the peer cannot be asked."""
    model = MODELS[root][0]
    ae = make_ae(settings)
    ae.add_requested_context(model)
    assoc = associate(ae, peer, settings)
    charset = settings.query.character_set
    patient = {"PatientID": keys["PatientID"]} if root == "PATIENT" and keys.get("PatientID") else {}
    found: dict[str, None] = {}

    def ask(lvl: str, k: dict[str, str]) -> Iterator[Dataset]:
        return _find_on(assoc, peer, identifier(lvl, k, charset), model)

    def images(k: dict[str, str]) -> None:
        for ds in ask("IMAGE", {**k, "SOPClassUID": ""}):
            found.update(dict.fromkeys(_values(ds.get("SOPClassUID"))))

    def series(k: dict[str, str]) -> None:
        for uid in [str(ds.SeriesInstanceUID) for ds in ask("SERIES", {**k, "SeriesInstanceUID": ""})
                    if ds.get("SeriesInstanceUID")]:
            images({**patient, "StudyInstanceUID": k["StudyInstanceUID"], "SeriesInstanceUID": uid})

    def studies(k: dict[str, str]) -> None:
        walk = []
        for ds in ask("STUDY", {**k, "StudyInstanceUID": k.get("StudyInstanceUID", ""),
                                "SOPClassesInStudy": ""}):
            classes = _values(ds.get("SOPClassesInStudy"))
            if classes:
                found.update(dict.fromkeys(classes))
            elif ds.get("StudyInstanceUID"):
                walk.append(str(ds.StudyInstanceUID))
        for uid in walk:
            series({**patient, "StudyInstanceUID": uid})

    try:
        lvl = level.upper()
        if lvl == "PATIENT":
            pids = ask("PATIENT", {**keys, "PatientID": keys.get("PatientID", "")})
            for pid in [str(ds.PatientID) for ds in pids if ds.get("PatientID")]:
                patient = {"PatientID": pid}
                studies(patient)
        elif lvl == "STUDY":
            studies(keys)
        elif lvl == "SERIES":
            for uid in [str(ds.SeriesInstanceUID) for ds in ask("SERIES", {**keys, "SeriesInstanceUID":
                                                                          keys.get("SeriesInstanceUID", "")})
                        if ds.get("SeriesInstanceUID")]:
                images({**patient, "StudyInstanceUID": keys.get("StudyInstanceUID", ""),
                        "SeriesInstanceUID": uid})
        else:
            images(keys)
    finally:
        if assoc.is_established:
            assoc.release()
    return list(found)


@dataclass
class RetrieveResult:
    status: int = -1
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    comment: str = ""
    #: C-GET: the storage classes proposed (SCP role).
    sop_classes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == 0x0000


def _collect(responses: Iterable[tuple[Dataset, Dataset | None]], result: RetrieveResult) -> RetrieveResult:
    for status, ds in responses:
        if status is None or "Status" not in status:
            result.comment = "no response (association lost or timed out)"
            break
        result.status = int(status.Status)
        result.completed = int(status.get("NumberOfCompletedSuboperations", result.completed) or 0)
        result.failed = int(status.get("NumberOfFailedSuboperations", result.failed) or 0)
        result.warning = int(status.get("NumberOfWarningSuboperations", result.warning) or 0)
        result.comment = str(status.get("ErrorComment", "") or "")
        if ds is not None and "FailedSOPInstanceUIDList" in ds:
            v = ds.FailedSOPInstanceUIDList
            result.failed_uids = [
                str(u) for u in (v if isinstance(v, list | tuple) or hasattr(v, "append") else [v]) if u
            ]
    return result


def move(
    peer: Peer, settings: Settings, destination: str, level: str, keys: dict[str, str], root: str = "STUDY"
) -> RetrieveResult:
    """C-MOVE the matches to ``destination`` (an AE the peer knows)."""
    model = MODELS[root][1]
    ae = make_ae(settings)
    ae.add_requested_context(model)
    assoc = associate(ae, peer, settings)
    try:
        request = identifier(level, keys, settings.query.character_set)
        return _collect(assoc.send_c_move(request, destination, model), RetrieveResult())
    finally:
        if assoc.is_established:
            assoc.release()


#: Storage classes proposed first when the peer cannot say what it holds (perfusion work first).
FALLBACK_FIRST = (
    "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map
    "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.4",  # MR
    "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2",  # CT
    "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.4",  # Secondary Capture, true colour SC
    "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.67",  # Segmentation, RWVM
)
#: Presentation contexts of one association: the Get model plus at most this many storage classes.
MAX_STORAGE_CLASSES = 127


def get_storage_classes(
    peer: Peer, settings: Settings, level: str, keys: dict[str, str], root: str = "STUDY",
    sop_classes: Iterable[str] = (),
) -> list[str]:
    """The storage classes a C-GET proposes (SCP role): ``sop_classes`` when given; else those the peer
    says the matches hold (:func:`held_sop_classes`); when it cannot say, perfusion classes first and
    then pynetdicom's storage list, up to 127."""
    classes = list(dict.fromkeys(sop_classes))
    if not classes:
        try:
            classes = held_sop_classes(peer, settings, level, keys, root)
        except AssociationFailed:
            raise  # unreachable or refused: the C-GET would fail the same way
        except (QueryFailed, ValueError, RuntimeError) as exc:  # C-FIND refused, or not negotiated
            log.warning("C-GET: cannot ask %s which SOP classes it holds (%s): proposing the usual ones",
                        peer.ae_title, exc)
        if not classes:
            classes = list(dict.fromkeys([*FALLBACK_FIRST,
                                          *(str(cx.abstract_syntax) for cx in StoragePresentationContexts)]))
    if len(classes) > MAX_STORAGE_CLASSES:
        log.warning("C-GET: %d SOP classes, only %d fit one association; instances of %s will fail",
                    len(classes), MAX_STORAGE_CLASSES, ", ".join(classes[MAX_STORAGE_CLASSES:]))
    return classes[:MAX_STORAGE_CLASSES]


def get(
    peer: Peer,
    settings: Settings,
    level: str,
    keys: dict[str, str],
    out: Path,
    root: str = "STUDY",
    sop_classes: Iterable[str] = (),
) -> RetrieveResult:
    """C-GET the matches; each object is written to ``out/<SOPInstanceUID>.dcm`` as it arrives.

    The storage classes proposed with SCP/SCU Role Selection are ``sop_classes``, or those the peer
    holds for these keys (asked by C-FIND first, :func:`get_storage_classes`)."""
    model = MODELS[root][2]
    out.mkdir(parents=True, exist_ok=True)
    result = RetrieveResult()
    classes = get_storage_classes(peer, settings, level, keys, root, sop_classes)
    result.sop_classes = classes
    ae = make_ae(settings)
    ae.add_requested_context(model)
    for uid in classes:
        ae.add_requested_context(uid, GET_SYNTAXES)

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        path = out / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        result.files.append(str(path))
        return 0x0000

    roles = [build_role(uid, scp_role=True) for uid in classes]
    assoc = associate(ae, peer, settings, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        request = identifier(level, keys, settings.query.character_set)
        return _collect(assoc.send_c_get(request, model), result)
    finally:
        if assoc.is_established:
            assoc.release()


@dataclass
class CommitResult:
    transaction_uid: str
    action_status: int = -1
    event_type: int | None = None
    committed: list[str] = field(default_factory=list)
    failed: list[tuple[str, int]] = field(default_factory=list)
    comment: str = ""

    @property
    def ok(self) -> bool:
        return self.event_type == 1


def references(paths: Iterable[str | Path]) -> list[tuple[str, str]]:
    """(SOP Class UID, SOP Instance UID) of every DICOM file under ``paths``."""
    refs = []
    for f in iter_files(paths):
        try:
            ds = dcmread(f, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
        except Exception:  # noqa: BLE001 - not DICOM: skipped
            continue
        if "SOPClassUID" in ds and "SOPInstanceUID" in ds:
            refs.append((str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
    return refs


def commit(
    peer: Peer,
    settings: Settings,
    refs: list[tuple[str, str]],
    listen_port: int | None = None,
    timeout: float = 60.0,
    archive: Archive | None = None,
    job_id: int | None = None,
) -> CommitResult:
    """Ask ``peer`` to commit ``refs``; wait up to ``timeout`` s for its N-EVENT-REPORT.

    The report is accepted on the request's own association (kept open, with both roles proposed),
    or on a new association: to this AE on ``listen_port`` (a listener for this call), or — with
    ``archive`` — to the running node's server, which matches it by Transaction UID. With ``archive``
    the request is recorded there before the N-ACTION is sent and the report is recorded on arrival
    (``sent_commitments``), whichever association it comes on.
    """
    from perfnode.net.commitment import parse_report, record_report
    from perfnode.net.status import SUCCESS, status_dataset

    result = CommitResult(generate_uid())
    done = threading.Event()
    if archive is not None:
        archive.sent_commitments.record(result.transaction_uid, peer.ae_title, refs, job_id)

    def take(event_type: int, committed: list[str], failed: list[tuple[str, int]]) -> None:
        result.event_type, result.committed, result.failed = event_type, committed, failed
        done.set()

    def on_report(event: Any) -> tuple[Any, None]:
        via = "same" if event.assoc.is_requestor else "new"
        if archive is not None:
            status, comment = record_report(event, archive, via)
            if status != SUCCESS:
                return status_dataset(status, comment), None
        try:
            uid, committed, failed = parse_report(event.event_information)
        except ValueError:
            return 0x0000, None
        if uid == result.transaction_uid and int(event.event_type or 0) in (1, 2):
            take(int(event.event_type), [inst for _c, inst in committed],
                 [(inst, reason) for _c, inst, reason in failed])
        return 0x0000, None

    handlers = [(evt.EVT_N_EVENT_REPORT, on_report)]
    server = None
    if listen_port is not None:
        contexts = [Context(StorageCommitmentPushModel, tuple(DEFAULT_TRANSFER_SYNTAXES),
                            scu_role=False, scp_role=True)]
        server = listen(settings, listen_port, contexts, handlers)
    # Only this association can carry the report: keep it open until the report or the timeout.
    keep_open_s = timeout if listen_port is None and archive is None else min(timeout, KEEP_OPEN_S)
    try:
        ae = make_ae(settings)
        ae.add_requested_context(StorageCommitmentPushModel)
        role = build_role(StorageCommitmentPushModel, scu_role=True, scp_role=True)
        assoc = associate(ae, peer, settings, ext_neg=[role], evt_handlers=handlers)
        try:
            if not any(cx.abstract_syntax == StorageCommitmentPushModel for cx in assoc.accepted_contexts):
                raise AssociationFailed(f"{peer.ae_title}@{peer.host}:{peer.port} does not support Storage "
                                        "Commitment Push Model (its presentation context was rejected)")
            ds = Dataset()
            ds.TransactionUID = result.transaction_uid
            items = []
            for cls, inst in refs:
                it = Dataset()
                it.ReferencedSOPClassUID, it.ReferencedSOPInstanceUID = cls, inst
                items.append(it)
            ds.ReferencedSOPSequence = items
            status, _ = assoc.send_n_action(ds, 1, StorageCommitmentPushModel, WELL_KNOWN_STGCMT)
            result.action_status = int(status.Status) if status is not None and "Status" in status else -1
            result.comment = str(status.get("ErrorComment", "")) if status is not None else "no response"
            if result.action_status != 0x0000:
                return result
            start = time.monotonic()
            deadline = start + timeout
            while not done.is_set() and assoc.is_established and time.monotonic() < start + keep_open_s:
                if _recorded(archive, result.transaction_uid, take):
                    break
                done.wait(0.1)
        finally:
            if assoc.is_established:
                assoc.release()
        while not done.is_set() and time.monotonic() < deadline:
            if _recorded(archive, result.transaction_uid, take):
                break
            done.wait(0.2)
        if not done.is_set():
            where = "" if archive is None and listen_port is None else " (on this association or a new one)"
            result.comment = f"no N-EVENT-REPORT within {timeout:g} s{where}"
        return result
    finally:
        if server is not None:
            server.shutdown()


#: How long the N-ACTION's association stays open for a report on it when a new one can carry it too.
KEEP_OPEN_S = 5.0


def _recorded(archive: Archive | None, transaction_uid: str,
              take: Callable[[int, list[str], list[tuple[str, int]]], None]) -> bool:
    """Whether the node's server recorded the report (on a new association); hands it to ``take``."""
    if archive is None:
        return False
    out = archive.sent_commitments.outcome(transaction_uid)
    if out is None or out.event_type is None:
        return False
    take(out.event_type, out.committed, out.failed)
    return True
