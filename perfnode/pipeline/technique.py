"""Which analysis a series gets: recognised from its header, overridable by config rules.

Rules come from the ``[[pipeline.rules]]`` tables of the config file and are tried in
order; the first whose ``calling_ae`` and ``protocol`` globs both match (case-insensitive;
``protocol`` is matched against Protocol Name and Series Description) decides. A rule's
``technique`` is one of :data:`TECHNIQUES` or ``"none"`` (never analyse)::

    [[pipeline.rules]]
    calling_ae = "MR3T*"
    protocol = "*perf*dsc*"
    technique = "dsc"
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from fnmatch import fnmatch
from typing import Any

from pydicom.dataset import Dataset

TECHNIQUES = ("dsc", "dce", "ctp", "asl", "ivim")
#: Echo time (ms) at or above which a dynamic MR perfusion series is taken for DSC (T2*-weighted
#: GRE-EPI, TE 25–50 ms) rather than DCE (T1-weighted SPGR, TE of a few ms).
DSC_MIN_TE_MS = 15.0

_DERIVED_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
}


def find_attribute(ds: Dataset, keyword: str, sequences: Iterable[str] = ()) -> Any:
    """An attribute from the top level, or from the shared / first per-frame functional group."""
    if keyword in ds:
        return ds.get(keyword)
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = ds.get(groups)
        if not seq:
            continue
        item = seq[0]
        for name in sequences:
            sub = item.get(name)
            if sub and keyword in sub[0]:
                return sub[0].get(keyword)
    return None


def group_items(ds: Dataset, sequence: str) -> Iterator[Dataset]:
    """Every item of a functional group ``sequence``, shared and per-frame."""
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in ds.get(groups) or []:
            yield from item.get(sequence) or []


def asl_contexts(ds: Dataset) -> set[str]:
    """ASL Context (0018,9257) values of the frames: LABEL, CONTROL, M_ZERO_SCAN."""
    return {str(a.ASLContext).upper() for a in group_items(ds, "MRArterialSpinLabelingSequence")
            if a.get("ASLContext")}


def flip_angles(ds: Dataset) -> set[float]:
    """Distinct flip angles of the frames (a variable-flip-angle T1 series has several)."""
    out = {float(t.FlipAngle) for t in group_items(ds, "MRTimingAndRelatedParametersSequence")
           if t.get("FlipAngle") is not None}
    if ds.get("FlipAngle") is not None:
        out.add(float(ds.FlipAngle))
    return out


def _distinct_b_values(ds: Dataset) -> set[float]:
    values: set[float] = set()
    if "DiffusionBValue" in ds:
        values.add(float(ds.DiffusionBValue))
    values |= {float(d.DiffusionBValue) for d in group_items(ds, "MRDiffusionSequence")
               if "DiffusionBValue" in d}
    return values


def detect(ds: Dataset) -> str | None:
    """The technique a header suggests, or ``None`` when the series is not for analysis."""
    if str(ds.get("SOPClassUID", "")) in _DERIVED_CLASSES:
        return None
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if image_type[:1] == ["DERIVED"]:
        return None
    modality = str(ds.get("Modality", "")).upper()
    temporal = int(ds.get("NumberOfTemporalPositions", 0) or 0) > 1 or "PERFUSION" in image_type
    if modality == "CT":
        return "ctp" if temporal else None
    if modality != "MR":
        return None
    if asl_contexts(ds) & {"LABEL", "CONTROL"}:
        return "asl"  # an M0 series alone (M_ZERO_SCAN) is a companion, not an analysis
    if len(_distinct_b_values(ds)) > 2:
        return "ivim"
    if not temporal:
        return None
    te = find_attribute(ds, "EchoTime") or find_attribute(ds, "EffectiveEchoTime", ["MREchoSequence"])
    if te is None:
        return None
    return "dsc" if float(te) >= DSC_MIN_TE_MS else "dce"


def choose(ds: Dataset, calling_ae: str = "", rules: Iterable[Mapping[str, Any]] = ()) -> str | None:
    """Apply the config rules, then :func:`detect`."""
    names = [str(ds.get("ProtocolName", "")), str(ds.get("SeriesDescription", ""))]
    for rule in rules:
        ae_glob = str(rule.get("calling_ae", "*")).upper()
        proto_glob = str(rule.get("protocol", "*")).lower()
        if not fnmatch(calling_ae.upper(), ae_glob):
            continue
        if not any(fnmatch(n.lower(), proto_glob) for n in names):
            continue
        technique = str(rule.get("technique", "")).lower()
        if technique == "none":
            return None
        if technique not in TECHNIQUES:
            raise ValueError(f"pipeline rule {dict(rule)}: technique must be one of {TECHNIQUES} or 'none'")
        return technique
    return detect(ds)
