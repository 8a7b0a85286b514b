"""STOW-RS (PS3.18 10.5): a ``multipart/related; type="application/dicom"`` body, stored part by part
through the C-STORE path.

Each part streams from the request into a :class:`~perfnode.archive.storage.ReceiveFile` (as a C-STORE
dataset does), then goes through the same checks, fsync and index commit before it counts as
stored (:meth:`perfnode.web.backend.Backend.store`); the after-store hooks (PERF findings, the
pipeline) run as for C-STORE. A refused part gets the Failure Reason that C-STORE would have
answered (:func:`perfnode.net.status.status_for`), and its reason text in a ``Warning`` header.
Only one part is held at a time: a 1 GB series is never in memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from python_multipart.multipart import MultipartParser

from perfnode.archive.facade import ReceiveFile, check_uid, read_header
from perfnode.errors import CannotUnderstand, DatasetMismatch, DicomError, SopClassNotSupported
from perfnode.web.backend import Backend
from perfnode.web.errors import BadRequest, UnsupportedMediaType
from perfnode.web.media import DICOM, parse_media_type

log = logging.getLogger("perfnode.web.stow")


def boundary_of(content_type: str | None) -> str:
    """The boundary of a STOW-RS request, or 415/400 naming what is wrong (PS3.18 10.5.1.1)."""
    mt = parse_media_type(content_type or "")
    if mt.type != "multipart/related":
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r}: STOW-RS takes "
            f'multipart/related; type="{DICOM}" (PS3.18 10.5.1.1)'
        )
    part_type = mt.params.get("type", DICOM).lower()
    if part_type != DICOM:
        raise UnsupportedMediaType(
            f"Content-Type type={part_type!r}: this node stores {DICOM} parts only (PS3.18 10.5.1.1; "
            "the JSON/XML metadata + bulk data form is not supported)"
        )
    boundary = mt.params.get("boundary")
    if not boundary:
        raise BadRequest("Content-Type has no boundary parameter (RFC 2046 5.1.1)")
    return boundary


@dataclass
class PartResult:
    sop_class: str = ""
    sop_instance: str = ""
    study: str = ""
    series: str = ""
    failure: int | None = None
    reason: str = ""


@dataclass
class StowParser:
    """Feeds request chunks to python-multipart; complete parts wait in :attr:`ready`."""

    backend: Backend
    boundary: str
    ready: list[tuple[ReceiveFile | None, str]] = field(default_factory=list)
    _rf: ReceiveFile | None = None
    _headers: dict[str, str] = field(default_factory=dict)
    _field: bytearray = field(default_factory=bytearray)
    _value: bytearray = field(default_factory=bytearray)
    ended: bool = False

    def __post_init__(self) -> None:
        self.parser = MultipartParser(
            self.boundary.encode("latin-1"),
            {
                "on_part_begin": self._begin,
                "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done,
                "on_part_data": self._data,
                "on_part_end": self._end,
                "on_end": self._done,
            },
        )

    def feed(self, chunk: bytes) -> None:
        try:
            self.parser.write(chunk)
        except Exception as exc:  # noqa: BLE001 - python-multipart raises its own parse errors
            self.discard()
            raise BadRequest(f"malformed multipart body: {exc} (RFC 2046)") from exc

    def _begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def _headers_done(self) -> None:
        self._rf = self.backend.receive_file()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._rf is not None:
            self._rf.write(data[start:end])

    def _end(self) -> None:
        self.ready.append((self._rf, self._headers.get("content-type", DICOM)))
        self._rf = None

    def _done(self) -> None:
        self.ended = True

    def discard(self) -> None:
        for rf, _ in self.ready:
            if rf is not None:
                rf.discard()
        self.ready.clear()
        if self._rf is not None:
            self._rf.discard()
            self._rf = None


def store_part(
    backend: Backend, rf: ReceiveFile, content_type: str, study: str | None, source: str = ""
) -> PartResult:
    """Store one received part (blocking: run it in a thread); never raises for a refused object."""
    from perfnode.net.status import status_for
    from perfnode.net.store import TRANSFER_SYNTAXES, storage_sop_classes

    result = PartResult()
    try:
        if parse_media_type(content_type).type != DICOM:
            raise CannotUnderstand(f"part Content-Type {content_type!r}: expected {DICOM} (PS3.18 10.5.1.1)")
        rf.flush_buffer()
        meta = _file_meta(rf.name)
        result.sop_class = str(meta.get("MediaStorageSOPClassUID", "") or "").strip("\0 ")
        result.sop_instance = str(meta.get("MediaStorageSOPInstanceUID", "") or "").strip("\0 ")
        ts = str(meta.get("TransferSyntaxUID", "") or "").strip("\0 ")
        check_uid(result.sop_class, "SOPClassUID")
        check_uid(result.sop_instance, "SOPInstanceUID")
        if ts not in TRANSFER_SYNTAXES:
            raise CannotUnderstand(
                f"(0002,0010) TransferSyntaxUID {ts!r}: not one this node stores "
                "(see the conformance statement)"
            )
        if result.sop_class not in storage_sop_classes():
            raise SopClassNotSupported(
                f"(0002,0002) MediaStorageSOPClassUID {result.sop_class}: not a storage "
                "SOP Class this node accepts"
            )
        if study is not None:
            found = str(read_header(rf.name).get("StudyInstanceUID", "") or "")
            if found != study:
                raise DatasetMismatch(
                    f"(0020,000D) StudyInstanceUID {found!r} is not the study of the request "
                    f"URL {study} (PS3.18 10.5.1)"
                )
        stored = backend.store(rf, result.sop_class, result.sop_instance, ts, source)
        result.study = str(stored.header.get("StudyInstanceUID", ""))
        result.series = str(stored.header.get("SeriesInstanceUID", ""))
    except Exception as exc:  # noqa: BLE001 - every refusal becomes a Failure Reason
        result.failure = status_for(exc)
        result.reason = str(exc) if isinstance(exc, DicomError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, DicomError):
            log.warning(
                "STOW-RS %s refused: 0x%04X %s", result.sop_instance[:64], result.failure, result.reason
            )
        else:
            log.exception("STOW-RS %s failed: 0x%04X", result.sop_instance[:64], result.failure)
    finally:
        rf.discard()  # no-op once stored (renamed into place)
    return result


def _file_meta(path: str) -> Dataset:
    try:
        with open(path, "rb") as fp:
            read_preamble(fp, False)
            return _read_file_meta_info(fp)
    except Exception as exc:  # noqa: BLE001 - pydicom's parse errors
        raise CannotUnderstand(
            f"not a DICOM Part 10 file (preamble, 'DICM' and File Meta Information "
            f"expected, PS3.10 7.1): {exc}"[:200]
        ) from exc


def response(
    results: list[PartResult], base_url: str, study: str | None
) -> tuple[int, dict[str, Any], list[str]]:
    """HTTP status, the Store Instances Response Module (PS3.18 10.5.3) as DICOM JSON, and warnings."""
    ds = Dataset()
    stored = [r for r in results if r.failure is None]
    failed = [r for r in results if r.failure is not None]
    studies = {study} if study else {r.study for r in stored}
    ok_items = []
    for r in stored:
        item = Dataset()
        item.ReferencedSOPClassUID = r.sop_class
        item.ReferencedSOPInstanceUID = r.sop_instance
        item.RetrieveURL = f"{base_url}/studies/{r.study}/series/{r.series}/instances/{r.sop_instance}"
        ok_items.append(item)
    bad_items = []
    for r in failed:
        item = Dataset()
        item.ReferencedSOPClassUID = r.sop_class or None
        item.ReferencedSOPInstanceUID = r.sop_instance or None
        item.FailureReason = r.failure
        bad_items.append(item)
    if len(studies) == 1:
        ds.RetrieveURL = f"{base_url}/studies/{next(iter(studies))}"
    if ok_items:
        ds.ReferencedSOPSequence = ok_items
    if bad_items:
        ds.FailedSOPSequence = bad_items
    status = 200 if not failed else 202 if stored else 409
    if not results:
        status = 400
    warnings = [f"{r.sop_instance or '?'}: 0x{r.failure:04X} {r.reason}" for r in failed]
    return status, ds.to_json_dict(), warnings
