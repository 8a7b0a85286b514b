"""Dataset header → Patient / Study / Series / Instance rows.

Only the header is read (:func:`read_header`: the index attributes, never the pixel data).
:func:`index_instance` upserts the parent rows with ``INSERT … ON CONFLICT DO NOTHING`` on the
unique keys and then selects them, which is safe under concurrent associations on PostgreSQL
(READ COMMITTED) and on SQLite (writers serialised by ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from perfnode.archive.models import Instance, InstanceFinding, Patient, Series, Study
from perfnode.archive.storage import StoredFile, check_uid
from perfnode.clock import utcnow
from perfnode.errors import CannotUnderstand

#: Top-level attributes the index needs (everything else, including pixel data, is skipped).
HEADER_KEYWORDS = [
    "SpecificCharacterSet", "ImageType", "SOPClassUID", "SOPInstanceUID", "StudyDate", "SeriesDate",
    "ContentDate", "StudyTime", "SeriesTime", "ContentTime", "AccessionNumber", "Modality",
    "ReferringPhysicianName", "StudyDescription", "SeriesDescription", "PatientName", "PatientID",
    "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "BodyPartExamined", "ProtocolName",
    "StudyInstanceUID", "SeriesInstanceUID", "StudyID", "SeriesNumber", "InstanceNumber",
    "FrameOfReferenceUID", "NumberOfFrames", "ConcatenationUID", "InConcatenationNumber",
    "InConcatenationTotalNumber", "ConcatenationFrameOffsetNumber",
    # not indexed, but enough for after-store hooks to tell a perfusion object without a second read
    "DimensionIndexSequence", "TemporalPositionIdentifier", "SharedFunctionalGroupsSequence",
]


_HEADER_TAGS = [Tag(k) for k in HEADER_KEYWORDS]
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
#: The start of the File Meta Information pynetdicom writes in front of a received dataset:
#: preamble, "DICM", then (0002,0000) UL with 4 bytes of group length.
_META_START = b"DICM\x02\x00\x00\x00UL\x04\x00"


def _before_pixels(tag: Any, _vr: Any, _length: int) -> bool:
    return tag in _PIXEL_TAGS


def read_header(path: str | Path, transfer_syntax: str | None = None) -> Dataset:
    """Read the index attributes of a DICOM file (Part 10) without its pixel data.

    With the ``transfer_syntax`` of a file perfnode just received (non-deflated), the dataset is
    read straight after the File Meta Information's group length, without parsing the meta
    elements; otherwise (and whenever the file does not start as expected) with ``dcmread``.
    """
    try:
        ds = _read_received(path, transfer_syntax) if transfer_syntax else None
        if ds is None:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS, force=False)
        # Touch the values so that a malformed element fails here, not later.
        for kw in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            ds.get(kw)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OverflowError, OSError,
            NotImplementedError, struct.error) as exc:  # pydicom's parse errors (OSError: "No tag to read")
        raise CannotUnderstand(f"dataset unreadable: {exc}"[:200]) from exc
    return ds


def _read_received(path: str | Path, transfer_syntax: str) -> Dataset | None:
    ts = UID(transfer_syntax)
    if ts == DeflatedExplicitVRLittleEndian or not ts.is_transfer_syntax:
        return None
    with open(path, "rb") as fp:
        head = fp.read(144)
        if len(head) < 144 or head[128:140] != _META_START:
            return None
        fp.seek(144 + struct.unpack("<I", head[140:144])[0])
        return read_dataset(fp, ts.is_implicit_VR, ts.is_little_endian, stop_when=_before_pixels,
                            specific_tags=list[BaseTag | int](_HEADER_TAGS))


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed optional attribute is indexed as empty
        return ""
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).strip("\0 ")[:limit]


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class HeaderUids:
    sop_class: str
    sop_instance: str
    study: str
    series: str


def header_uids(ds: Dataset) -> HeaderUids:
    """The four UIDs every stored object must have, checked (errors name the attribute)."""
    return HeaderUids(
        check_uid(ds.get("SOPClassUID"), "SOPClassUID"),
        check_uid(ds.get("SOPInstanceUID"), "SOPInstanceUID"),
        check_uid(ds.get("StudyInstanceUID"), "StudyInstanceUID"),
        check_uid(ds.get("SeriesInstanceUID"), "SeriesInstanceUID"),
    )


def _insert(session: Session | Connection, model: type, values: dict[str, Any], keys: list[str]) -> None:
    bind = session if isinstance(session, Connection) else session.get_bind()
    dialect = bind.dialect.name
    mod = postgresql if dialect == "postgresql" else sqlite
    stmt = mod.insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)
    session.execute(stmt)


class ParentCache:
    """Ids of Patient/Study/Series rows already committed, so a series costs one lookup, not one per image.

    Filled only by :meth:`remember` after a successful commit; rows are never deleted while the
    node runs (a future delete must call :meth:`clear`).
    """

    def __init__(self, size: int = 4096) -> None:
        self._ids: dict[tuple[Any, ...], int] = {}
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> int | None:
        return self._ids.get(key)

    def remember(self, pending: dict[tuple[Any, ...], int]) -> None:
        with self._lock:
            if len(self._ids) + len(pending) > self._size:
                self._ids.clear()
            self._ids.update(pending)

    def clear(self) -> None:
        with self._lock:
            self._ids.clear()


def _upsert_id(session: Session | Connection, model: Any, values: dict[str, Any], keys: list[str],
               cache: ParentCache | None, pending: dict[tuple[Any, ...], int]) -> int:
    key = (model.__tablename__, *(values[k] for k in keys))
    row_id = cache.get(key) if cache is not None else None
    if row_id is not None:
        return row_id
    where = [getattr(model, k) == values[k] for k in keys]
    row_id = session.execute(select(model.id).where(*where)).scalar()
    if row_id is None:
        _insert(session, model, values, keys)
        row_id = session.execute(select(model.id).where(*where)).scalar_one()
    pending[key] = int(row_id)
    return int(row_id)


def fold(text: str) -> str:
    """A person name as C-FIND matching compares it: case-folded by Unicode rules (Cyrillic, Greek,
    final sigma, ß …), the same on SQLite and PostgreSQL whatever their locale."""
    return text.casefold()


def index_instance(session: Session | Connection, ds: Dataset, stored: StoredFile, transfer_syntax: str,
                   calling_ae: str = "", replace: bool = False, cache: ParentCache | None = None,
                   pending: dict[tuple[Any, ...], int] | None = None) -> int:
    """Insert (or with ``replace`` update) the rows for one stored object; return the Instance id.

    ``session`` may be a Core :class:`Connection` in a transaction (the store path: no ORM overhead).

    With a ``cache``, parent ids found or created are added to ``pending``; the caller passes
    ``pending`` to :meth:`ParentCache.remember` once the transaction has committed.
    """
    pending = {} if pending is None else pending
    uids = header_uids(ds)
    now = utcnow()
    patient_name = _text(ds, "PatientName", 324)
    referring = _text(ds, "ReferringPhysicianName", 324)
    patient_fk = _upsert_id(session, Patient, {
        "patient_id": _text(ds, "PatientID", 64),
        "issuer_of_patient_id": _text(ds, "IssuerOfPatientID", 64),
        "patient_name": patient_name,
        "patient_name_folded": fold(patient_name),
        "patient_birth_date": _text(ds, "PatientBirthDate", 8),
        "patient_sex": _text(ds, "PatientSex", 16),
    }, ["patient_id", "issuer_of_patient_id"], cache, pending)
    study_fk = _upsert_id(session, Study, {
        "patient_fk": patient_fk,
        "study_instance_uid": uids.study,
        "study_date": _text(ds, "StudyDate", 8),
        "study_time": _text(ds, "StudyTime", 16),
        "accession_number": _text(ds, "AccessionNumber", 16),
        "study_id": _text(ds, "StudyID", 16),
        "study_description": _text(ds, "StudyDescription", 64),
        "referring_physician_name": referring,
        "referring_physician_name_folded": fold(referring),
    }, ["study_instance_uid"], cache, pending)
    series_fk = _upsert_id(session, Series, {
        "study_fk": study_fk,
        "series_instance_uid": uids.series,
        "modality": _text(ds, "Modality", 16),
        "series_number": _int(ds, "SeriesNumber"),
        "series_description": _text(ds, "SeriesDescription", 64),
        "body_part_examined": _text(ds, "BodyPartExamined", 16),
        "protocol_name": _text(ds, "ProtocolName", 64),
        "series_date": _text(ds, "SeriesDate", 8),
        "series_time": _text(ds, "SeriesTime", 16),
        "frame_of_reference_uid": _text(ds, "FrameOfReferenceUID", 64),
        "last_received_at": now,
    }, ["series_instance_uid"], cache, pending)
    session.execute(_TOUCH_SERIES, {"sid": series_fk, "now": now})
    values = {
        "series_fk": series_fk,
        "sop_instance_uid": uids.sop_instance,
        "sop_class_uid": uids.sop_class,
        "transfer_syntax_uid": transfer_syntax[:64],
        "instance_number": _int(ds, "InstanceNumber"),
        "image_type": _text(ds, "ImageType", 256),
        "number_of_frames": _int(ds, "NumberOfFrames"),
        "concatenation_uid": _text(ds, "ConcatenationUID", 64),
        "in_concatenation_number": _int(ds, "InConcatenationNumber"),
        "in_concatenation_total_number": _int(ds, "InConcatenationTotalNumber"),
        "concatenation_frame_offset_number": _int(ds, "ConcatenationFrameOffsetNumber"),
        "content_date": _text(ds, "ContentDate", 8),
        "content_time": _text(ds, "ContentTime", 16),
        "specific_character_set": _text(ds, "SpecificCharacterSet", 128),
        "path": stored.path,
        "size_bytes": stored.size,
        "sha256": stored.sha256,
        "received_at": now,
        "calling_ae": calling_ae.strip()[:16],
    }
    if replace:
        existing = session.execute(
            select(Instance.id).where(Instance.sop_instance_uid == uids.sop_instance)).scalar()
        if existing is not None:
            session.execute(update(Instance).where(Instance.id == existing).values(**values))
            # what was derived from the replaced object (its PERF findings) no longer holds
            session.execute(delete(InstanceFinding).where(InstanceFinding.instance_fk == existing))
            return existing
    return session.execute(_INSERT_INSTANCE, values).scalar_one()


# Statements built once (bound parameters), so SQLAlchemy's compiled cache is hit on every object.
_TOUCH_SERIES = update(Series).where(Series.id == bindparam("sid")).values(last_received_at=bindparam("now"))
_INSERT_INSTANCE = insert(Instance).returning(Instance.id)


def find_instance(session: Session, sop_instance_uid: str) -> Instance | None:
    return session.execute(select(Instance).where(Instance.sop_instance_uid == sop_instance_uid)).scalar()
