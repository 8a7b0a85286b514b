"""Concatenations (PS3.3 C.7.6.16.2.2.4): group the parts, find missing or inconsistent ones, order them.

A concatenation splits one multi-frame object over several SOP Instances sharing a Concatenation UID.
Every part must carry the same Concatenation UID and SOP Instance UID of Concatenation Source, the
In-concatenation Numbers must be exactly 1..In-concatenation Total Number, the frame offsets continuous
(part n starts where part n−1 ended), and all other attributes identical except the ones that describe
the part itself (:data:`ALLOWED_TO_DIFFER`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from perfnode.dicom.findings import Finding, Severity
from perfnode.dicom.groups import all_values, raw_element

RULE = "PS3.3 C.7.6.16.2.2.4"
FLOATS = {b"FD": "<f8", b"FL": "<f4", b"OD": "<f8", b"OF": "<f4"}
IHE_RULE = "IHE RAD TF-2 4.16.4.2.2.7"
#: Attributes that may differ between the parts of a concatenation.
ALLOWED_TO_DIFFER = frozenset(
    {
        "SOPInstanceUID",
        "InstanceNumber",
        "InConcatenationNumber",
        "ConcatenationFrameOffsetNumber",
        "NumberOfFrames",
        "PerFrameFunctionalGroupsSequence",
        "PixelData",
        "FloatPixelData",
        "DoubleFloatPixelData",
        "InstanceCreationDate",
        "InstanceCreationTime",
        "ContentDate",
        "ContentTime",
        "RepresentativeFrameNumber",
        "SmallestImagePixelValue",
        "LargestImagePixelValue",
        "InConcatenationTotalNumber",  # checked on its own below
        "ConcatenationUID",
        "SOPInstanceUIDOfConcatenationSource",  # checked on their own below
    }
)


def groups(headers: Iterable[Dataset]) -> dict[str, list[Dataset]]:
    """Headers that belong to a concatenation, grouped: parts sharing a Concatenation UID *or* a source
    SOP Instance UID are one group (so that a part with a wrong UID is still checked with its siblings)."""
    parts = [h for h in headers if h.get("ConcatenationUID") or h.get("SOPInstanceUIDOfConcatenationSource")]
    parent = list(range(len(parts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, h in enumerate(parts):
        for key in (
            f"uid:{h.get('ConcatenationUID', '')}",
            f"src:{h.get('SOPInstanceUIDOfConcatenationSource', '')}",
        ):
            if key.endswith(":"):
                continue
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    out: dict[str, list[Dataset]] = {}
    for i, h in enumerate(parts):
        root = parts[find(i)]
        key = str(root.get("SOPInstanceUIDOfConcatenationSource") or root.get("ConcatenationUID"))
        out.setdefault(key, []).append(h)
    return out


def check_parts(parts: list[Dataset]) -> list[Finding]:
    """Findings for the parts of one concatenation (grouped by :func:`groups`)."""
    f: list[Finding] = []
    src = str(parts[0].get("SOPInstanceUIDOfConcatenationSource", ""))
    where = f"concatenation of {src}"
    uids = {str(p.get("ConcatenationUID", "")) for p in parts}
    if len(uids) > 1:
        f.append(
            Finding.make(
                Severity.ERROR,
                "ConcatenationUID",
                " / ".join(sorted(uids)),
                "one Concatenation UID for every part",
                RULE,
                where,
            )
        )
    sources = {str(p.get("SOPInstanceUIDOfConcatenationSource", "")) for p in parts}
    if len(sources) > 1:
        f.append(
            Finding.make(
                Severity.ERROR,
                "SOPInstanceUIDOfConcatenationSource",
                " / ".join(sorted(sources)),
                "one source SOP Instance UID for every part",
                RULE,
                where,
            )
        )
    totals = {p.get("InConcatenationTotalNumber") for p in parts}
    if len(totals) != 1 or None in totals:
        f.append(
            Finding.make(
                Severity.ERROR,
                "InConcatenationTotalNumber",
                sorted(map(str, totals)),
                "the same total in every part",
                RULE,
                where,
            )
        )
        return f
    total = int(next(iter(totals)))
    numbers = [p.get("InConcatenationNumber") for p in parts]
    if None in numbers:
        f.append(
            Finding.make(Severity.ERROR, "InConcatenationNumber", "absent in a part", "1..total", RULE, where)
        )
        return f
    numbers = [int(n) for n in numbers]
    missing = sorted(set(range(1, total + 1)) - set(numbers))
    dupes = sorted({n for n in numbers if numbers.count(n) > 1})
    extra = sorted(n for n in set(numbers) if not 1 <= n <= total)
    if missing:
        f.append(
            Finding.make(
                Severity.ERROR,
                "InConcatenationNumber",
                f"part(s) {missing} of {total} missing",
                f"every part 1..{total}",
                RULE,
                where,
            )
        )
    if dupes:
        f.append(
            Finding.make(
                Severity.ERROR,
                "InConcatenationNumber",
                f"part(s) {dupes} present twice",
                "each part once",
                RULE,
                where,
            )
        )
    if extra:
        f.append(
            Finding.make(
                Severity.ERROR,
                "InConcatenationNumber",
                f"part(s) {extra} outside 1..{total}",
                f"1..{total}",
                RULE,
                where,
            )
        )
    if not (missing or dupes or extra):
        expected = 0
        for p in sorted(parts, key=lambda p: int(p.InConcatenationNumber)):
            offset = p.get("ConcatenationFrameOffsetNumber")
            if offset is None or int(offset) != expected:
                f.append(
                    Finding.make(
                        Severity.ERROR,
                        "ConcatenationFrameOffsetNumber",
                        offset,
                        expected,
                        RULE,
                        f"part {p.InConcatenationNumber} ({p.SOPInstanceUID})",
                    )
                )
            expected += int(p.get("NumberOfFrames") or 1)
    f += _differences(parts, where)
    return f


def _differences(parts: list[Dataset], where: str) -> list[Finding]:
    ref = parts[0]
    out = []
    for p in parts[1:]:
        tags = set(ref._dict) | set(p._dict)  # by tag: no element is parsed unless compared
        same_charset = ref.get(0x00080005) == p.get(0x00080005)
        for tag in sorted(tags):
            kw = keyword_for_tag(tag)
            if not kw or kw in ALLOWED_TO_DIFFER or kw.endswith("GroupLength"):
                continue
            if same_charset and _same_bytes(raw_element(ref, tag), raw_element(p, tag)):
                continue
            a, b = ref.get(tag), p.get(tag)
            a, b = (a.value if a is not None else None), (b.value if b is not None else None)
            if a != b:
                out.append(
                    Finding.make(
                        Severity.ERROR,
                        kw,
                        f"{_short(b)} in part {p.get('InConcatenationNumber')}",
                        f"{_short(a)} as in part {ref.get('InConcatenationNumber')}",
                        RULE,
                        where,
                    )
                )
    return out


def _same_bytes(a: Any, b: Any) -> bool:
    """Are two elements as read from the file (explicit VR little endian; see :func:`raw_element`) byte
    for byte the same and free of NaN (which decodes unequal to itself)? Then their values are equal, and
    need not be decoded (or compared decoded) to say so."""
    if not (isinstance(a, RawDataElement) and isinstance(b, RawDataElement)):
        return False
    if a.is_implicit_VR or b.is_implicit_VR or not (a.is_little_endian and b.is_little_endian):
        return False
    if a.value is None or a.VR != b.VR or a.value != b.value:
        return False
    vr = a.VR.encode() if isinstance(a.VR, str) else a.VR
    try:
        values = all_values(a.value) if vr == b"SQ" else [(vr, 0, len(a.value))]
    except Exception:  # noqa: BLE001 - not parseable by bytes: let pydicom decide
        return False
    return all(_no_nan(v, a.value[s:e]) for v, s, e in values)


def _no_nan(vr: bytes | None, raw: bytes) -> bool:
    """Can the value ``raw`` of VR ``vr`` (None: not in the element) not decode to NaN (or to anything
    but by its bytes)?"""
    if vr in FLOATS:
        size = np.dtype(FLOATS[vr]).itemsize
        return len(raw) % size == 0 and not np.isnan(np.frombuffer(raw, FLOATS[vr])).any()
    if vr == b"DS":
        return b"n" not in raw.lower()  # "nan", "inf"
    return vr != b"UN"  # UN may be decoded as its dictionary VR


def _short(v: object) -> str:
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "..."


def concatenation_errors(headers: Iterable[Dataset]) -> list[Finding]:
    """Error findings of every concatenation among ``headers``."""
    return [
        x for parts in groups(headers).values() for x in check_parts(parts) if x.severity == Severity.ERROR
    ]


def ordered(parts: list[Dataset]) -> list[Dataset]:
    """The parts in In-concatenation Number order; ``ValueError`` naming the problem if inconsistent."""
    if errors := [x for x in check_parts(parts) if x.severity == Severity.ERROR]:
        raise ValueError("; ".join(map(str, errors)))
    return sorted(parts, key=lambda p: int(p.InConcatenationNumber))
