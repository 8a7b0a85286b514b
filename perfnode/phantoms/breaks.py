"""Deliberately broken variants: one defect per IHE PERF / PS3.3 rule (and ``shuffled``, which is valid).

Each rule names the attribute a checker must report (:attr:`Rule.keyword`, :attr:`Rule.severity`).
Header defects are applied to every part of a concatenation, so that they stay one defect.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from perfnode.phantoms.enhanced import UID_PREFIX


@dataclass(frozen=True)
class Rule:
    description: str
    keyword: str  # attribute the finding names
    severity: str  # "error" | "warning" | "" (valid)
    shape: str | None = None  # shape the defect needs (None: any Enhanced shape)
    apply: Callable[[list[Dataset], np.random.Generator], list[Dataset]] | None = None


def _frame_type_item(ds: Dataset) -> tuple[str, Dataset]:
    shared = ds.SharedFunctionalGroupsSequence[0]
    for kw in ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence"):
        if kw in shared:
            return kw, shared[kw].value[0]
    raise ValueError("no frame type macro")


def _frame_type(value: int, to: str) -> Callable[[list[Dataset], np.random.Generator], list[Dataset]]:
    def apply(dss: list[Dataset], rng: np.random.Generator) -> list[Dataset]:
        ds = dss[0]
        kw, item = _frame_type_item(ds)
        bad = deepcopy(item)
        ft = list(bad.FrameType)
        ft[value - 1] = to
        bad.FrameType = ft
        i = int(rng.integers(len(ds.PerFrameFunctionalGroupsSequence)))
        setattr(ds.PerFrameFunctionalGroupsSequence[i], kw, Sequence([bad]))
        return dss

    return apply


def _image_type(value: int, to: str) -> Callable[[list[Dataset], np.random.Generator], list[Dataset]]:
    def apply(dss: list[Dataset], rng: np.random.Generator) -> list[Dataset]:
        for ds in dss:
            it = list(ds.ImageType)
            it[value - 1] = to
            ds.ImageType = it
        return dss

    return apply


def _frame_contents(ds: Dataset) -> list[Dataset]:
    return [pf.FrameContentSequence[0] for pf in ds.PerFrameFunctionalGroupsSequence]


def _pointer_order(dss: list[Dataset], rng: np.random.Generator) -> list[Dataset]:
    for ds in dss:
        items = list(ds.DimensionIndexSequence)
        items[0], items[2] = items[2], items[0]
        ds.DimensionIndexSequence = Sequence(items)
        for fc in _frame_contents(ds):
            v = list(fc.DimensionIndexValues)
            v[0], v[2] = v[2], v[0]
            fc.DimensionIndexValues = v
    return dss


def _pointer_missing(dss: list[Dataset], rng: np.random.Generator) -> list[Dataset]:
    for ds in dss:
        items = [
            d
            for d in ds.DimensionIndexSequence
            if Tag(d.DimensionIndexPointer) != Tag("TemporalPositionIndex")
        ]
        ds.DimensionIndexSequence = Sequence(items)
        for fc in _frame_contents(ds):
            v = list(fc.DimensionIndexValues)
            del v[2]
            fc.DimensionIndexValues = v
    return dss


def _group_pointer(dss: list[Dataset], rng: np.random.Generator) -> list[Dataset]:
    for ds in dss:
        ds.DimensionIndexSequence[1].FunctionalGroupPointer = Tag("PlanePositionSequence")
    return dss


def _tpi_missing(dss: list[Dataset], rng: np.random.Generator) -> list[Dataset]:
    fcs = _frame_contents(dss[0])
    del fcs[int(rng.integers(len(fcs)))].TemporalPositionIndex
    return dss


def _values_mismatch(dss: list[Dataset], rng: np.random.Generator) -> list[Dataset]:
    fcs = _frame_contents(dss[0])
    fc = fcs[int(rng.integers(len(fcs)))]
    v = list(fc.DimensionIndexValues)
    v[1] = int(v[1]) + 100
    fc.DimensionIndexValues = v
    return dss


def _frame_bytes(ds: Dataset) -> int:
    return int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) // 8


def _duplicate(dss: list[Dataset], rng: np.random.Generator) -> list[Dataset]:
    ds = dss[-1]
    i = int(rng.integers(len(ds.PerFrameFunctionalGroupsSequence)))
    n = _frame_bytes(ds)
    ds.PerFrameFunctionalGroupsSequence.append(deepcopy(ds.PerFrameFunctionalGroupsSequence[i]))
    ds.PixelData = ds.PixelData + ds.PixelData[i * n : (i + 1) * n]
    ds.NumberOfFrames = int(ds.NumberOfFrames) + 1
    return dss


def _missing(dss: list[Dataset], rng: np.random.Generator) -> list[Dataset]:
    ds = dss[-1]
    nf = int(ds.NumberOfFrames)
    i = nf - 1 if len(dss) > 1 else int(rng.integers(nf))
    n = _frame_bytes(ds)
    del ds.PerFrameFunctionalGroupsSequence[i]
    ds.PixelData = ds.PixelData[: i * n] + ds.PixelData[(i + 1) * n :]
    ds.NumberOfFrames = nf - 1
    return dss


def _contrast_missing(dss: list[Dataset], rng: np.random.Generator) -> list[Dataset]:
    for ds in dss:
        if "ContrastBolusAgentSequence" in ds:
            del ds.ContrastBolusAgentSequence
        shared = ds.SharedFunctionalGroupsSequence[0]
        if "ContrastBolusUsageSequence" in shared:
            del shared.ContrastBolusUsageSequence
    return dss


def _route_missing(dss: list[Dataset], rng: np.random.Generator) -> list[Dataset]:
    for ds in dss:
        for a in ds.get("ContrastBolusAgentSequence") or []:
            del a.ContrastBolusAdministrationRouteSequence
    return dss


def _concat(attr: str) -> Callable[[list[Dataset], np.random.Generator], list[Dataset]]:
    def apply(dss: list[Dataset], rng: np.random.Generator) -> list[Dataset]:
        ds = dss[1]
        if attr == "ConcatenationUID" or attr == "SOPInstanceUIDOfConcatenationSource":
            setattr(ds, attr, generate_uid(UID_PREFIX, [str(ds[attr].value), "broken"]))
        elif attr == "ConcatenationFrameOffsetNumber":
            ds.ConcatenationFrameOffsetNumber = int(ds.ConcatenationFrameOffsetNumber) + 1
        elif attr == "InConcatenationNumber":
            return [d for d in dss if d is not ds]
        else:
            setattr(ds, attr, str(ds.get(attr, "")) + " (changed)")
        return dss

    return apply


RULES: dict[str, Rule] = {
    "image-type-value1": Rule(
        "Image Type value 1 DERIVED", "ImageType", "error", apply=_image_type(1, "DERIVED")
    ),
    "image-type-value3": Rule(
        "Image Type value 3 OTHER", "ImageType", "error", apply=_image_type(3, "OTHER")
    ),
    "frame-type-value1": Rule(
        "one frame's Frame Type value 1 DERIVED", "FrameType", "error", apply=_frame_type(1, "DERIVED")
    ),
    "frame-type-value3": Rule(
        "one frame's Frame Type value 3 OTHER", "FrameType", "error", apply=_frame_type(3, "OTHER")
    ),
    "dimension-order": Rule(
        "Temporal Position Index pointer first, Stack ID third",
        "DimensionIndexPointer",
        "error",
        apply=_pointer_order,
    ),
    "dimension-missing": Rule(
        "no Temporal Position Index pointer", "DimensionIndexPointer", "error", apply=_pointer_missing
    ),
    "dimension-group": Rule(
        "In-Stack Position pointer into the Plane Position Sequence",
        "FunctionalGroupPointer",
        "error",
        apply=_group_pointer,
    ),
    "temporal-index-missing": Rule(
        "one frame without Temporal Position Index", "TemporalPositionIndex", "error", apply=_tpi_missing
    ),
    "index-values-mismatch": Rule(
        "one frame's Dimension Index Values disagree with its Frame Content",
        "DimensionIndexValues",
        "error",
        apply=_values_mismatch,
    ),
    "duplicate-frame": Rule("one frame stored twice", "DimensionIndexValues", "error", apply=_duplicate),
    "missing-frame": Rule(
        "one frame left out (grid incomplete)", "DimensionIndexValues", "error", apply=_missing
    ),
    "contrast-missing": Rule(
        "no Contrast/Bolus Agent Sequence", "ContrastBolusAgentSequence", "warning", apply=_contrast_missing
    ),
    "route-missing": Rule(
        "no Contrast/Bolus Administration Route Sequence",
        "ContrastBolusAdministrationRouteSequence",
        "warning",
        apply=_route_missing,
    ),
    "not-single-instance": Rule(
        "one Enhanced instance per time point", "SOPInstanceUID", "error", shape="per-time"
    ),
    "classic-sop-class": Rule("classic single-frame images", "SOPClassUID", "error", shape="classic"),
    "concat-uid": Rule(
        "one part with another Concatenation UID",
        "ConcatenationUID",
        "error",
        shape="concat",
        apply=_concat("ConcatenationUID"),
    ),
    "concat-source": Rule(
        "one part with another source SOP Instance UID",
        "SOPInstanceUIDOfConcatenationSource",
        "error",
        shape="concat",
        apply=_concat("SOPInstanceUIDOfConcatenationSource"),
    ),
    "concat-part-missing": Rule(
        "part 2 of the concatenation left out",
        "InConcatenationNumber",
        "error",
        shape="concat",
        apply=_concat("InConcatenationNumber"),
    ),
    "concat-offset": Rule(
        "part 2's frame offset one too high",
        "ConcatenationFrameOffsetNumber",
        "error",
        shape="concat",
        apply=_concat("ConcatenationFrameOffsetNumber"),
    ),
    "concat-attribute": Rule(
        "part 2 with another Series Description",
        "SeriesDescription",
        "error",
        shape="concat",
        apply=_concat("SeriesDescription"),
    ),
    "shuffled": Rule("valid; frames stored in random order", "", ""),
}
