"""QIDO-RS (PS3.18 10.6): query parameters → a C-FIND identifier → the one matcher → DICOM JSON.

The URL's level and the parameters become the identifier that a C-FIND SCU would send
(Study Root; ``/series`` and ``/instances`` without a study are relational queries), so QIDO-RS
matches exactly as C-FIND does (:mod:`perfnode.archive.query`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydicom import config
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from perfnode.archive.facade import SUPPORTED_KEYS, QueryError
from perfnode.web.errors import BadRequest

#: PS3.18 Table 10.6.3-3..5: attributes every match returns (those the index holds), by level.
DEFAULT_KEYS = {
    "STUDY": [
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "StudyDescription",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ],
    "SERIES": [
        "Modality",
        "SeriesDescription",
        "SeriesInstanceUID",
        "SeriesNumber",
        "SeriesDate",
        "SeriesTime",
        "NumberOfSeriesRelatedInstances",
        "StudyInstanceUID",
    ],
    "IMAGE": [
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceNumber",
        "NumberOfFrames",
        "StudyInstanceUID",
        "SeriesInstanceUID",
    ],
}
#: Study-level keys also returned by a relational ``/series`` or ``/instances`` search.
_STUDY_CONTEXT = ["StudyDate", "StudyTime", "AccessionNumber", "PatientName", "PatientID", "StudyID"]

_RESERVED = {"limit", "offset", "fuzzymatching", "includefield", "emptyvalue"}
_HEX_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")


@dataclass
class QidoRequest:
    """A parsed QIDO-RS request: the identifier and the paging / warning details."""

    identifier: Dataset
    relational: bool
    limit: int
    offset: int
    warnings: list[str] = field(default_factory=list)


def _keyword(name: str) -> str:
    """A query parameter's attribute (keyword or ``ggggeeee``) as a keyword, or 400."""
    if _HEX_TAG.match(name):
        kw = keyword_for_tag(Tag(int(name, 16)))
        if kw:
            return kw
    elif tag_for_keyword(name) is not None:
        return name
    if "." in name:
        raise BadRequest(f"{name}: sequence matching keys are not supported (PS3.18 8.3.4.1)")
    raise BadRequest(f"{name}: not a DICOM attribute keyword or tag (PS3.18 8.3.4.1)")


def _value(keyword: str, raw: str) -> object:
    """A query parameter value as a C-FIND matching value (UID lists: comma or backslash)."""
    vr = dictionary_VR(keyword)
    if vr == "UI":
        uids = [u for u in re.split(r"[,\\]", raw) if u]
        return uids if len(uids) > 1 else (uids[0] if uids else "")
    if vr == "SQ":
        raise BadRequest(f"{keyword}: sequence attributes cannot be matched (PS3.18 8.3.4.1)")
    return raw


def parse(
    level: str,
    params: list[tuple[str, str]],
    path_keys: dict[str, str],
    max_results: int,
) -> QidoRequest:
    """Build the identifier for ``level`` ("STUDY", "SERIES", "IMAGE") from the URL's query string.

    ``path_keys``: unique keys from the path (``/studies/{uid}/series`` → StudyInstanceUID).
    """
    ident = Dataset()
    ident.QueryRetrieveLevel = level
    warnings: list[str] = []
    limit, offset = max_results, 0
    include: list[str] = list(DEFAULT_KEYS[level])
    relational = level != "STUDY" and "StudyInstanceUID" not in path_keys
    if relational:
        include += _STUDY_CONTEXT
    if level == "IMAGE" and "SeriesInstanceUID" not in path_keys:
        relational = True
        include += ["Modality", "SeriesNumber"]
    matching: dict[str, object] = {}
    for name, raw in params:
        lname = name.lower()
        if lname == "limit":
            limit = min(_int(name, raw), max_results)
        elif lname == "offset":
            offset = _int(name, raw)
        elif lname == "fuzzymatching":
            if raw.strip().lower() == "true":
                warnings.append(
                    "The fuzzymatching parameter is not supported. Only literal matching has been performed."
                )
        elif lname == "includefield":
            for item in (v.strip() for v in raw.split(",")):
                if item.lower() == "all":
                    include += [
                        k
                        for lvl in ("STUDY", "SERIES", "IMAGE")[: _depth(level)]
                        for k in SUPPORTED_KEYS[lvl]
                    ]
                elif item:
                    include.append(_keyword(item))
        elif lname in _RESERVED:
            continue
        else:
            kw = _keyword(name)
            matching[kw] = _value(kw, raw)
    for kw, value in path_keys.items():
        if kw in matching and matching[kw] != value:
            raise BadRequest(
                f"({Tag(tag_for_keyword(kw)).group:04X},{Tag(tag_for_keyword(kw)).element:04X}) "
                f"{kw}: the query parameter contradicts the path"
            )
        matching[kw] = value
    for kw in dict.fromkeys([*include, *matching]):
        if kw == "QueryRetrieveLevel":
            continue
        tag, vr = tag_for_keyword(kw), dictionary_VR(kw)
        try:
            ident[tag] = DataElement(tag, vr, matching.get(kw), validation_mode=config.IGNORE)
        except (TypeError, ValueError, OverflowError):
            t = Tag(tag)
            raise BadRequest(
                f"({t.group:04X},{t.element:04X}) {kw}={matching.get(kw)!r}: not a valid {vr} value "
                "(an integer for IS; PS3.5 6.2)"
            ) from None
    return QidoRequest(ident, relational, limit, offset, warnings)


def _depth(level: str) -> int:
    return {"STUDY": 1, "SERIES": 2, "IMAGE": 3}[level]


def _int(name: str, raw: str) -> int:
    try:
        n = int(raw)
    except ValueError:
        raise BadRequest(f"{name}={raw!r}: not an integer (PS3.18 8.3.4.4)") from None
    if n < 0:
        raise BadRequest(f"{name}={raw!r}: must not be negative (PS3.18 8.3.4.4)")
    return n


def query_error(exc: QueryError) -> BadRequest:
    return BadRequest(f"{exc} — the same rule as C-FIND")


def to_json(ds: Dataset, retrieve_url: str) -> dict:
    """One match as a DICOM JSON object (PS3.18 F.2), with Retrieve URL and Instance Availability."""
    ds = Dataset(ds)
    if "QueryRetrieveLevel" in ds:
        del ds.QueryRetrieveLevel
    if "SpecificCharacterSet" in ds:  # JSON is UTF-8 (PS3.18 F.2)
        del ds.SpecificCharacterSet
    ds.RetrieveURL = retrieve_url
    ds.InstanceAvailability = "ONLINE"
    return ds.to_json_dict()


def json_array(items: Iterator[dict]) -> Iterator[bytes]:
    """A JSON array written item by item (the response streams while the query pages)."""
    yield b"["
    first = True
    for item in items:
        yield (b"" if first else b",") + json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()
        first = False
    yield b"]"
