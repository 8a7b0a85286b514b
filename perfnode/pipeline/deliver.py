"""Send a job's archived outputs to one destination: once each, retrying with backoff while it is down."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from perfnode import audit
from perfnode.archive.facade import Archive, Stored
from perfnode.audit import messages
from perfnode.config import PipelineSettings, Settings
from perfnode.net.ae import AssociationFailed
from perfnode.net.client import send
from perfnode.net.qr_client import QueryFailed, commit, references

log = logging.getLogger("perfnode.pipeline")


class DeliveryRefused(RuntimeError):
    """The destination answered C-STORE with a failure status: retrying will not help."""


def deliver(archive: Archive, settings: Settings, job_id: int, destination: str, archived: list[Stored],
            cfg: PipelineSettings, stopping: threading.Event) -> None:
    """C-STORE each (SOP Instance UID, file) not yet in the sent-log for ``destination``.

    An unreachable destination is retried with exponential backoff (``retry_initial_s`` doubling up
    to ``retry_max_s``) until it answers, ``stopping`` is set, or ``retry_give_up_s`` passes.
    """
    peer = settings.peer(destination)
    by_path = {str(s.path): s.sop_instance_uid for s in archived}
    delay, started = cfg.retry_initial_s, time.monotonic()

    by_path_stored = {str(s.path): s for s in archived}
    delivered: list[Stored] = []

    def sent(path: Path) -> None:
        archive.jobs.record_sent(job_id, by_path[str(path)], destination)
        delivered.append(by_path_stored[str(path)])

    while not stopping.is_set():
        done = archive.jobs.already_sent(job_id, destination)
        todo = [s.path for s in archived if s.sop_instance_uid not in done]
        if not todo:
            return
        try:
            try:
                result = send(todo, peer, settings, progress=False, on_sent=sent)
            finally:
                _audit_export(settings, peer.ae_title, peer.host, delivered, job_id)
                delivered.clear()
        except (AssociationFailed, OSError) as exc:
            if cfg.retry_give_up_s and time.monotonic() - started > cfg.retry_give_up_s:
                raise RuntimeError(f"{destination} unreachable for {cfg.retry_give_up_s:g} s: {exc}") from exc
            log.warning("job %d: %s not reachable (%s); retrying in %.0f s", job_id, destination, exc, delay)
            stopping.wait(delay)
            delay = min(delay * 2, cfg.retry_max_s)
            continue
        if result.failed:
            path, status, comment = result.failed[0]
            raise DeliveryRefused(f"{destination} refused {Path(path).name}: status 0x{status & 0xFFFF:04X} "
                                  f"{comment}".strip())


def integer_variants(archive: Archive, ae_title: str, job_id: int, archived: list[Stored]) -> list[Stored]:
    """``archived`` with every float Parametric Map replaced by its 16-bit integer copy
    (:func:`perfnode.dicom.parametric_map.to_integer`), written to the job's folder and archived
    (deterministic UIDs: converting again after a restart stores nothing new)."""
    from pydicom import dcmread

    from perfnode.dicom.parametric_map import PARAMETRIC_MAP_STORAGE, to_integer

    folder = archive.path(f"jobs/{job_id:06d}/int16")
    out: list[Stored] = []
    for s in archived:
        if str(s.header.get("SOPClassUID", "")) != PARAMETRIC_MAP_STORAGE:
            out.append(s)
            continue
        ds = dcmread(s.path)
        if "FloatPixelData" not in ds:
            out.append(s)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / Path(s.path).name
        to_integer(ds).save_as(path, enforce_file_format=True)
        out.append(archive.store_file(path, ae_title))
    return out


def _audit_export(settings: Settings, ae_title: str, host: str, delivered: list[Stored], job_id: int) -> None:
    """DICOM Instances Transferred ("R", the node the requestor) for the maps a destination accepted."""
    studies: dict[str, messages.StudyRef] = {}
    for s in delivered:
        h = s.header
        uid = str(h.get("StudyInstanceUID", "") or "?")
        ref = studies.setdefault(uid, messages.StudyRef(uid, patient_id=str(h.get("PatientID", "") or ""),
                                                        patient_name=str(h.get("PatientName", "") or "")))
        ref.add(str(h.get("SOPClassUID", "")))
    node = messages.Participant(settings.ae_title, "")
    for ref in studies.values():
        audit.current().emit(messages.instances_transferred(
            "R", node, messages.Participant(ae_title, host), ref, requestor="source",
            description=f"{ref.instances} objects of pipeline job {job_id} delivered"))


def request_commitment(archive: Archive, settings: Settings, job_id: int, destination: str,
                       archived: list[Stored], cfg: PipelineSettings, stopping: threading.Event) -> None:
    """Ask ``destination`` to commit what was sent (Storage Commitment Push Model); retry while it
    cannot be reached; raise naming the instances it did not commit.

    The request is recorded in the index before the N-ACTION; the report is accepted on the same
    association or on a new one to the node's server (matched by Transaction UID, recorded there)."""
    peer = settings.peer(destination)
    refs = references([s.path for s in archived])
    delay, started = cfg.retry_initial_s, time.monotonic()
    while not stopping.is_set():
        try:
            result = commit(peer, settings, refs, timeout=cfg.commit_timeout_s, archive=archive,
                            job_id=job_id)
        except (AssociationFailed, QueryFailed, OSError) as exc:
            if cfg.retry_give_up_s and time.monotonic() - started > cfg.retry_give_up_s:
                raise RuntimeError(f"storage commitment: {destination} unreachable: {exc}") from exc
            log.warning("job %d: storage commitment to %s failed (%s); retrying in %.0f s",
                        job_id, destination, exc, delay)
            stopping.wait(delay)
            delay = min(delay * 2, cfg.retry_max_s)
            continue
        if result.ok:
            log.info("job %d: %s committed %d object(s) (transaction %s)", job_id, destination,
                     len(result.committed), result.transaction_uid)
            return
        if result.event_type is None:
            status = result.action_status & 0xFFFF
            raise DeliveryRefused(f"storage commitment: no report from {destination} within "
                                  f"{cfg.commit_timeout_s:g} s (N-ACTION 0x{status:04X} {result.comment})")
        failed = ", ".join(f"{uid} (0x{reason:04X})" for uid, reason in result.failed)
        raise DeliveryRefused(f"storage commitment: {destination} did not commit {failed}")

