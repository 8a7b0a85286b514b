"""The frame table: one row per frame of a series, every attribute read through the one reader.

Enhanced instances give one row per frame (functional groups, :mod:`perfnode.dicom.groups`), classic
images one row, Siemens MOSAIC images one row per slice (:mod:`perfnode.dicom.mosaic`). A row holds what
placing a frame needs: position and orientation, Temporal Position Index/Identifier, the candidate times
(:mod:`perfnode.dicom.timing` chooses), rescale, and the values that may make extra axes
(:data:`EXTRA_KEYS`): echo time, flip angle, inversion time, diffusion (b, direction), ASL context
(standard ASL Context, else the vendor's private marker), trigger delay, and any other attribute the
Dimension Index Sequence names (``dim:<keyword>``, placed by its Dimension Index Values).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from perfnode.dicom import mosaic, vendors
from perfnode.dicom.groups import Column, FunctionalGroups, Private, functional_groups
from perfnode.dicom.timing import instance_times, parse_dt

ENHANCED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
}
#: Extra per-frame dimensions, in the order they become leading axes.
EXTRA_KEYS = ("echo_time_ms", "flip_angle_deg", "inversion_time_ms", "diffusion", "asl_context",
              "trigger_delay_ms")
STACK_ID, IN_STACK, TPI = 0x00209056, 0x00209057, 0x00209128
#: dimension pointers placed by attribute value elsewhere (position, time, the extra keys)
KNOWN_POINTERS = {
    STACK_ID: None, IN_STACK: None, TPI: None,
    0x00189082: "echo_time_ms", 0x00181314: "flip_angle_deg", 0x00189079: "inversion_time_ms",
    0x00189087: "diffusion", 0x00189089: "diffusion", 0x00189257: "asl_context",
    0x00209153: "trigger_delay_ms",
}


class AssemblyError(ValueError):
    """The frames do not make one complete, consistent volume; the message names what is wrong."""


@dataclass
class _Frame:
    source: int  # index into the list of sources
    index: int  # 0-based frame index in its source (slice index of a mosaic)
    temporal: int | None
    position: tuple[float, ...]  # (x, y, z) mm; NaN when absent
    orientation: tuple[float, ...]
    times: dict[str, Any]  # timing source keyword → datetime (DT sources) or seconds (relative ones)
    slope: float
    intercept: float
    extra: dict[str, Any]
    offset_s: float = 0.0  # slice time after the image's time (mosaic)


@dataclass
class _Table:
    """The frames of one or more sources as columns, one entry per frame (see :class:`_Frame`)."""

    source: np.ndarray  # (n,) int
    index: np.ndarray  # (n,) int
    temporal: list[int | None]
    position: np.ndarray  # (n, 3)
    orientation: list[tuple[float, ...]]
    times: dict[str, list[Any]]
    slope: np.ndarray  # (n,)
    intercept: np.ndarray  # (n,)
    extra: dict[str, list[Any]]  # EXTRA_KEYS (and dim:… keys) → value per frame, None where absent
    offset_s: np.ndarray  # (n,)
    pixel_measures: dict[str, Any] | None  # of the first frame (Enhanced sources)
    notes: list[str] = field(default_factory=list)
    mosaics: dict[int, mosaic.Mosaic] = field(default_factory=dict)  # source → its mosaic geometry

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def from_rows(cls, rows: list[_Frame]) -> _Table:
        keys = list(EXTRA_KEYS) + sorted({k for f in rows for k in f.extra if k not in EXTRA_KEYS})
        tkeys = sorted({k for f in rows for k in f.times})
        return cls(
            np.array([f.source for f in rows], np.int64),
            np.array([f.index for f in rows], np.int64),
            [f.temporal for f in rows],
            np.array([f.position for f in rows], float).reshape(-1, 3),
            [f.orientation for f in rows],
            {k: [f.times.get(k) for f in rows] for k in tkeys},
            np.array([f.slope for f in rows], float),
            np.array([f.intercept for f in rows], float),
            {k: [f.extra.get(k) for f in rows] for k in keys},
            np.array([f.offset_s for f in rows], float),
            None,
        )

    @classmethod
    def concat(cls, tables: list[_Table]) -> _Table:
        def cat(name: str) -> list[Any]:
            return [v for t in tables for v in getattr(t, name)]

        keys = list(dict.fromkeys(k for t in tables for k in t.extra))
        tkeys = list(dict.fromkeys(k for t in tables for k in t.times))
        return cls(
            np.concatenate([t.source for t in tables]),
            np.concatenate([t.index for t in tables]),
            cat("temporal"),
            np.concatenate([t.position for t in tables]),
            cat("orientation"),
            {k: [v for t in tables for v in t.times.get(k, [None] * len(t))] for k in tkeys},
            np.concatenate([t.slope for t in tables]),
            np.concatenate([t.intercept for t in tables]),
            {k: [v for t in tables for v in t.extra.get(k, [None] * len(t))] for k in keys},
            np.concatenate([t.offset_s for t in tables]),
            tables[0].pixel_measures,
            list(dict.fromkeys(n for t in tables for n in t.notes)),
            {k: v for t in tables for k, v in t.mosaics.items()},
        )

    def rows(self) -> list[_Frame]:
        out = []
        for i in range(len(self)):
            out.append(
                _Frame(
                    int(self.source[i]),
                    int(self.index[i]),
                    self.temporal[i],
                    tuple(self.position[i].tolist()),
                    self.orientation[i],
                    {k: v[i] for k, v in self.times.items() if v[i] is not None},
                    float(self.slope[i]),
                    float(self.intercept[i]),
                    {k: v[i] for k, v in self.extra.items() if v[i] is not None},
                    float(self.offset_s[i]),
                )
            )
        return out


def frame_table(ds: Dataset, source: int = 0) -> list[_Frame]:
    """One row per frame of ``ds`` (Enhanced: from the functional groups; classic: the one frame)."""
    return table(ds, source).rows()


def table(ds: Dataset, source: int = 0) -> _Table:
    """:func:`frame_table` as columns."""
    n = int(ds.get("NumberOfFrames") or 1)
    if 0x52009230 not in ds:  # tested by tag: looking it up by keyword would parse the whole sequence
        if ds.SOPClassUID in ENHANCED_SOP_CLASSES or n > 1:
            raise AssemblyError(
                f"{ds.SOPClassUID.name} {ds.SOPInstanceUID}: "
                "(5200,9230) PerFrameFunctionalGroupsSequence missing "
                "(PS3.3 C.7.6.16): frame positions and times unknown"
            )
        if mosaic.is_mosaic(ds):
            return _mosaic_table(ds, source)
        t = _Table.from_rows([_classic_frame(ds, source)])
        _philips_scale(ds, functional_groups(ds), t)
        return t
    fg = functional_groups(ds)
    if len(fg) != n:
        raise AssemblyError(
            f"{ds.SOPInstanceUID}: (5200,9230) PerFrameFunctionalGroupsSequence has "
            f"{len(fg)} items, (0028,0008) NumberOfFrames is {n} (PS3.3 C.7.6.16)"
        )
    try:
        t = _columns(ds, fg, source)
    except Exception:  # noqa: BLE001 - malformed values: the frame-by-frame reading names the first one
        t = _Table.from_rows(_rows(ds, fg, source))
        t.pixel_measures = _pixel_measures(fg)
    _philips_scale(ds, fg, t)
    return t


def _each(col: Column, fn: Callable[[Any], Any]) -> list[Any]:
    """``fn`` of every frame's value, computed once per distinct value."""
    done = [fn(v) for v in col.values]
    return [done[c] for c in col.codes.tolist()]


def _floats(v: Any) -> tuple[float, ...] | None:
    return None if v is None else tuple(float(x) for x in v)


def _pixel_measures(fg: FunctionalGroups) -> dict[str, Any]:
    return {
        "PixelSpacing": fg.value(0, "PixelMeasuresSequence", "PixelSpacing"),
        "SliceThickness": fg.value(0, "PixelMeasuresSequence", "SliceThickness"),
    }


def _instance_candidates(ds: Dataset, n: int) -> dict[str, list[Any]]:
    """The instance-level time candidates the instance has, one per frame."""
    return {kw: [t] * n for kw, t in instance_times(ds).items() if t is not None}


def _trigger_seconds(values: list[Any]) -> list[Any]:
    return [float(v) / 1000.0 if v is not None else None for v in values]


def _columns(ds: Dataset, fg: FunctionalGroups, source: int) -> _Table:
    """The columns of an Enhanced instance, each distinct value converted once (see :func:`_rows`)."""
    n = len(fg)
    pos = _each(fg.column("PlanePositionSequence", "ImagePositionPatient"), _floats)
    ori = _each(fg.column("PlaneOrientationSequence", "ImageOrientationPatient"), _floats)
    if None in pos or None in ori:
        raise ValueError("missing position or orientation")  # named by _rows
    times: dict[str, list[Any]] = {}
    for kw in ("FrameAcquisitionDateTime", "FrameReferenceDateTime"):
        times[kw] = _each(fg.column("FrameContentSequence", kw), parse_dt)
    times.update(_instance_candidates(ds, n))
    tpi = _each(fg.column("FrameContentSequence", "TemporalPositionIndex"), _int_or_none)
    times.update(_relative_candidates(ds, fg, tpi))
    top_slope, top_icpt = float(ds.get("RescaleSlope", 1.0)), float(ds.get("RescaleIntercept", 0.0))
    slope, icpt = _rescale_columns(fg, top_slope, top_icpt)
    return _Table(
        np.full(n, source, np.int64),
        np.arange(n),
        tpi,
        np.array(pos, float).reshape(n, -1),
        ori,
        times,
        np.array(slope, float),
        np.array(icpt, float),
        _extra_columns(ds, fg),
        np.zeros(n),
        _pixel_measures(fg),
    )


def _rescale_columns(
    fg: FunctionalGroups, top_slope: float, top_icpt: float
) -> tuple[list[float], list[float]]:
    """Per frame: Rescale Slope/Intercept (Pixel Value Transformation, per-frame or shared); where a frame
    has none, its Real World Value Mapping slope/intercept; else the top-level values."""
    slope = fg.column("PixelValueTransformationSequence", "RescaleSlope")
    icpt = fg.column("PixelValueTransformationSequence", "RescaleIntercept")
    missing = np.array([v is None for v in slope.values], bool)[slope.codes] & \
        np.array([v is None for v in icpt.values], bool)[icpt.codes]
    if missing.any():
        rwv_s = fg.column("RealWorldValueMappingSequence", "RealWorldValueSlope").tolist()
        rwv_i = fg.column("RealWorldValueMappingSequence", "RealWorldValueIntercept").tolist()
        s_out, i_out = slope.tolist(), icpt.tolist()
        for k in np.flatnonzero(missing).tolist():
            s_out[k], i_out[k] = rwv_s[k], rwv_i[k]
        return ([float(v) if v is not None else top_slope for v in s_out],
                [float(v) if v is not None else top_icpt for v in i_out])
    return _each(slope, _or(top_slope)), _each(icpt, _or(top_icpt))


def _relative_candidates(ds: Dataset, fg: FunctionalGroups, tpi: list[int | None]) -> dict[str, list[Any]]:
    """Trigger delay (per frame, else the top-level Trigger Time) and TPI × Temporal Resolution, s."""
    col = fg.column("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime")
    top = ds.get("TriggerTime")
    out: dict[str, list[Any]] = {}
    if top is not None or any(v is not None for v in col.values):  # else no candidate at all
        out["TriggerTime"] = _trigger_seconds([v if v is not None else top for v in col.tolist()])
    res = ds.get("TemporalResolution")
    if res is not None and float(res) > 0:
        out["TemporalResolution"] = [(t - 1) * float(res) / 1000.0 if t is not None else None for t in tpi]
    return out


def _objects(n: int) -> np.ndarray:
    """An array of ``n`` Python objects (None)."""
    return np.full(n, None, object)


def _or(default: float) -> Callable[[Any], float]:
    return lambda v: float(v) if v is not None else default


def _int_or_none(v: Any) -> int | None:
    return int(v) if v is not None else None


def _or_none(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: fn(v) if v is not None else None


def _first_float(v: Any) -> float:
    return float(v[0] if isinstance(v, (list, MultiValue)) else v)


def _extra_columns(ds: Dataset, fg: FunctionalGroups) -> dict[str, list[Any]]:
    """Echo time, flip angle, inversion time, diffusion, ASL context, trigger delay and other dimensions."""
    n = len(fg)
    out: dict[str, list[Any]] = {k: [None] * n for k in EXTRA_KEYS}
    out["echo_time_ms"] = _each(fg.column("MREchoSequence", "EffectiveEchoTime"), _or_none(float))
    fa = fg.column("MRTimingAndRelatedParametersSequence", "FlipAngle")
    out["flip_angle_deg"] = _each(fa, _or_none(float))
    ti = fg.column("MRModifierSequence", "InversionTimes")
    out["inversion_time_ms"] = _each(ti, _or_none(_first_float))
    has = fg.has_column("MRDiffusionSequence")
    if has.any():
        b = fg.column("MRDiffusionSequence", "DiffusionBValue").tolist()
        g = fg.column(
            "MRDiffusionSequence", "DiffusionGradientDirectionSequence", "DiffusionGradientOrientation"
        ).tolist()
        for i in np.flatnonzero(has).tolist():
            out["diffusion"][i] = (float(b[i] or 0.0), *(float(v) for v in g[i] or (0.0, 0.0, 0.0)))
    out["asl_context"] = _each(
        fg.column("MRArterialSpinLabelingSequence", "ASLContext"), lambda c: str(c).upper() if c else None
    )
    if vendors.vendor(ds) == "philips" and all(c is None for c in out["asl_context"]):
        out["asl_context"] = vendors.philips_label_types(fg)
    out.update(_dimensions(ds, fg, out))
    return out


def _dimensions(ds: Dataset, fg: FunctionalGroups, extra: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Axes the Dimension Index Sequence names beyond position, time and the known keys: per frame, its
    Dimension Index Value for that pointer (``dim:<keyword>``); the trigger delay as a value."""
    out: dict[str, list[Any]] = {}
    seq = ds.get("DimensionIndexSequence") or []
    pointers = [d.get("DimensionIndexPointer") for d in seq]
    if not pointers:
        return out
    div_list: list[Any] = []

    def div() -> list[Any]:  # every frame's Dimension Index Values, read only when a pointer needs them
        if not div_list:
            div_list.extend(fg.column("FrameContentSequence", "DimensionIndexValues").tolist())
        return div_list

    for j, d in enumerate(seq):
        ptr = pointers[j]
        if ptr is None:
            continue
        ptr = int(ptr)
        creator = d.get("DimensionIndexPrivateCreator")
        if ptr == 0x00209153:  # trigger delay: an axis of its own, placed by its index, valued per frame
            out["trigger_delay_ms"] = _each(
                fg.column("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"), _or_none(float)
            )
            out["dim:trigger_delay_ms"] = [_div(v, j) for v in div()]
            continue
        if ptr in KNOWN_POINTERS or (creator and any(p.creator == str(creator).strip()
                                                      and p.group == ptr >> 16 and p.element == ptr & 0xFF
                                                      for p in vendors.AXES)):
            continue
        name = keyword_for_tag(ptr) or f"({ptr >> 16:04X},{ptr & 0xFFFF:04X})"
        if creator:
            name = str(Private(str(creator).strip(), ptr >> 16, ptr & 0xFF))
        out[f"dim:{name}"] = [_div(v, j) for v in div()]
    return out


def _div(v: Any, j: int) -> int | None:
    if v is None:
        return None
    values = [v] if isinstance(v, int) else list(v)
    return int(values[j]) if j < len(values) else None


def _philips_scale(ds: Dataset, fg: FunctionalGroups, t: _Table) -> None:
    """Philips: floating-point values (stored × RS + RI) / (RS × SS) when every frame has SS (2005,xx0E).

    Philips' display values (Rescale Slope) may be scaled differently frame by frame (the multiphase ASL
    object has 8 slopes); the floating-point value is the one Philips defines as comparable between
    frames and series, so label − control differences and M0 ratios are consistent."""
    if vendors.vendor(ds) != "philips":
        return
    ss = vendors.philips_scale_slopes(fg)
    if ss is None or len(ss) != len(t):
        return
    rs = t.slope.copy()
    rs[rs == 0] = 1.0
    t.slope = t.slope / (rs * ss)
    t.intercept = t.intercept / (rs * ss)
    t.notes.append(
        "Philips floating-point values: (stored × RescaleSlope + RescaleIntercept) / (RescaleSlope × "
        "scale slope (2005,xx0E) of 'Philips MR Imaging DD 001'), frame by frame"
    )


def _rows(ds: Dataset, fg: FunctionalGroups, source: int) -> list[_Frame]:
    """The frame table frame by frame: the reference, and the reader that names a malformed frame."""
    n = len(fg)
    rows = []
    inst = instance_times(ds)
    top_slope, top_icpt = float(ds.get("RescaleSlope", 1.0)), float(ds.get("RescaleIntercept", 0.0))
    tpis = [fg.value(i, "FrameContentSequence", "TemporalPositionIndex") for i in range(n)]
    tpis = [int(v) if v is not None else None for v in tpis]
    rel = _relative_candidates(ds, fg, tpis)
    for i in range(n):
        pos = fg.value(i, "PlanePositionSequence", "ImagePositionPatient")
        ori = fg.value(i, "PlaneOrientationSequence", "ImageOrientationPatient")
        if pos is None:
            raise AssemblyError(
                f"{ds.SOPInstanceUID} frame {i + 1}: (0020,0032) ImagePositionPatient missing "
                "in (0020,9113) PlanePositionSequence (PS3.3 C.7.6.16.2.3)"
            )
        if ori is None:
            raise AssemblyError(
                f"{ds.SOPInstanceUID} frame {i + 1}: (0020,0037) ImageOrientationPatient "
                "missing in (0020,9116) PlaneOrientationSequence (PS3.3 C.7.6.16.2.4)"
            )
        times: dict[str, Any] = {
            kw: parse_dt(fg.value(i, "FrameContentSequence", kw))
            for kw in ("FrameAcquisitionDateTime", "FrameReferenceDateTime")
        }
        times.update(inst)
        times.update({k: v[i] for k, v in rel.items()})
        slope = fg.value(i, "PixelValueTransformationSequence", "RescaleSlope")
        icpt = fg.value(i, "PixelValueTransformationSequence", "RescaleIntercept")
        if slope is None and icpt is None:  # no Modality rescale: the Real World Value Mapping, if any
            slope = fg.value(i, "RealWorldValueMappingSequence", "RealWorldValueSlope")
            icpt = fg.value(i, "RealWorldValueMappingSequence", "RealWorldValueIntercept")
        rows.append(
            _Frame(
                source,
                i,
                tpis[i],
                tuple(float(v) for v in pos),
                tuple(float(v) for v in ori),
                {k: v for k, v in times.items() if v is not None},
                float(slope) if slope is not None else top_slope,
                float(icpt) if icpt is not None else top_icpt,
                {},
            )
        )
    extra = _extra_columns(ds, fg)
    for i, f in enumerate(rows):
        f.extra = {k: v[i] for k, v in extra.items() if v[i] is not None}
    return rows


def _classic_frame(ds: Dataset, source: int) -> _Frame:
    for kw, tag in (("ImagePositionPatient", "(0020,0032)"), ("ImageOrientationPatient", "(0020,0037)")):
        if kw not in ds:
            raise AssemblyError(f"{ds.SOPInstanceUID}: {tag} {kw} missing (PS3.3 C.7.6.2)")
    tpi = ds.get("TemporalPositionIdentifier")
    return _Frame(
        source,
        0,
        int(tpi) if tpi is not None else None,
        tuple(float(v) for v in ds.ImagePositionPatient),
        tuple(float(v) for v in ds.ImageOrientationPatient),
        classic_times(ds),
        float(ds.get("RescaleSlope", 1.0)),
        float(ds.get("RescaleIntercept", 0.0)),
        _extra_classic(ds),
    )


def classic_times(ds: Dataset) -> dict[str, Any]:
    """The time candidates of a classic image (see :mod:`perfnode.dicom.timing`)."""
    tpi = ds.get("TemporalPositionIdentifier")
    times: dict[str, Any] = dict(instance_times(ds))
    trig = ds.get("TriggerTime")
    times["TriggerTime"] = float(trig) / 1000.0 if trig is not None and str(trig) != "" else None
    res = ds.get("TemporalResolution")
    if res is not None and tpi is not None and float(res) > 0:
        times["TemporalResolution"] = (int(tpi) - 1) * float(res) / 1000.0
    return {k: v for k, v in times.items() if v is not None}


def _extra_classic(ds: Dataset) -> dict[str, Any]:
    """Echo time, flip angle, inversion time, diffusion (b, direction) of a classic image."""
    out: dict[str, Any] = {}
    if "EchoTime" in ds and ds.EchoTime is not None:
        out["echo_time_ms"] = float(ds.EchoTime)
    if "FlipAngle" in ds and ds.FlipAngle is not None:
        out["flip_angle_deg"] = float(ds.FlipAngle)
    if "InversionTime" in ds and ds.InversionTime is not None:
        out["inversion_time_ms"] = float(ds.InversionTime)
    b: float | None = float(ds.DiffusionBValue) if ds.get("DiffusionBValue") is not None else None
    d = ds.get("DiffusionGradientOrientation")
    direction = tuple(float(v) for v in d) if d else None
    if vendors.vendor(ds) == "ge":
        gb, gd = vendors.ge_diffusion(functional_groups(ds))
        b = b if b is not None else gb
        direction = direction or gd
    if b is not None:
        out["diffusion"] = (b, *(direction or (0.0, 0.0, 0.0)))
    return out


def _mosaic_table(ds: Dataset, source: int) -> _Table:
    """The slices of a Siemens MOSAIC image as rows (frame index = slice index in the mosaic)."""
    try:
        m = mosaic.read(ds)
    except mosaic.MosaicError as e:
        raise AssemblyError(str(e)) from None
    base = _classic_frame(ds, source)
    rows = []
    for k in range(m.n):
        f = _Frame(source, k, base.temporal, tuple(m.positions[k].tolist()), base.orientation,
                   dict(base.times), base.slope, base.intercept, dict(base.extra), float(m.offsets_s[k]))
        rows.append(f)
    t = _Table.from_rows(rows)
    t.pixel_measures = {"PixelSpacing": ds.get("PixelSpacing"), "SliceThickness": ds.get("SliceThickness")}
    t.mosaics[source] = m
    return t
