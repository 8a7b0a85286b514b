"""Frames → one ordered 4-D volume ``(t, z, y, x)`` (plus extra axes) with timing and geometry.

Sources: one Enhanced MR/CT instance, a concatenation (parts in any order), one Enhanced instance per
time point, or a classic single-frame CT/MR series. Frames are placed by their attributes (Temporal
Position Index, position along the slice normal, echo time, b-value…), never by file order.

Time of a frame, first found wins (documented order):

1. Frame Acquisition DateTime (0018,9074) in the Frame Content Sequence;
2. Frame Reference DateTime (0018,9151);
3. Acquisition DateTime (0008,002A); 4. Acquisition Date + Time (0008,0022/0032);
5. Content Date + Time (0008,0023/0033); 6. Trigger Time (0018,1060, ms).

Times are seconds from the earliest frame; the time of a time point is its earliest frame.
Pixel values: stored values × Rescale Slope + Rescale Intercept (Pixel Value Transformation, per-frame
or shared, or the classic attributes); Real World Value Mapping is *not* applied.
Pixel data are decoded once per file: uncompressed little-endian data are read from the file in chunks,
other transfer syntaxes decoded by pydicom; each frame is rescaled straight into the preallocated output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from perfnode.dicom.concatenation import concatenation_errors
from perfnode.dicom.groups import Column, FunctionalGroups, functional_groups

ENHANCED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
}
#: Extra per-frame dimensions, in the order they become leading axes.
EXTRA_KEYS = ("echo_time_ms", "flip_angle_deg", "inversion_time_ms", "diffusion", "asl_context")
POSITION_DECIMALS = 3  # mm: positions closer than 1 µm are the same slice
DEFER = 1024 * 1024
CHUNK_BYTES = 1024 * 1024  # frames read from the file at a time (stays in the CPU cache)


class AssemblyError(ValueError):
    """The frames do not make one complete, consistent volume; the message names what is wrong."""


@dataclass
class Geometry:
    """Where the voxels are: orientation (row, column cosines), slice positions sorted along the normal."""

    image_orientation: np.ndarray  # (6,)
    positions: np.ndarray  # (z, 3) Image Position (Patient) of each slice, mm
    pixel_spacing: np.ndarray  # (2,) row spacing, column spacing, mm
    slice_spacing: float  # mm, from the positions (0 for one slice)
    slice_thickness: float | None
    frame_of_reference_uid: str

    @property
    def normal(self) -> np.ndarray:
        o = self.image_orientation
        return np.cross(o[:3], o[3:])


@dataclass
class Volume4D:
    """An assembled series: ``data`` has shape ``extra_shape + (t, z, y, x)`` (float32, rescaled)."""

    data: np.ndarray
    times_s: np.ndarray  # (t,) seconds from the first frame
    frame_times_s: np.ndarray  # extra_shape + (t, z)
    start: datetime | None  # absolute time of t = 0 (None when no time attribute exists)
    time_source: str  # keyword the times came from ("" when none)
    geometry: Geometry
    #: Extra axes in order: name → values (``diffusion`` values are (b, gx, gy, gz) rows).
    extra_dims: dict[str, np.ndarray] = field(default_factory=dict)
    sop_instance_uids: list[str] = field(default_factory=list)
    #: extra_shape + (t, z, 2): index into ``sop_instance_uids`` and 1-based frame number.
    source_frames: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 2), int))
    series_instance_uid: str = ""
    sop_class_uid: str = ""

    def source_frame(self, *index: int) -> tuple[str, int]:
        """``(SOP Instance UID, frame number)`` of the frame at ``(*extra, t, z)``."""
        uid, frame = self.source_frames[index]
        return self.sop_instance_uids[int(uid)], int(frame)


@dataclass
class _Frame:
    source: int  # index into the list of sources
    index: int  # 0-based frame index in its source
    temporal: int | None
    position: tuple[float, float, float]
    orientation: tuple[float, ...]
    time: datetime | None
    trigger_ms: float | None
    slope: float
    intercept: float
    extra: dict[str, Any]


def _seq(item: Dataset | None, keyword: str) -> Dataset | None:
    if item is None:
        return None
    s = item.get(keyword)
    return s[0] if s else None


def _group(per_frame: Dataset | None, shared: Dataset | None, keyword: str) -> Dataset | None:
    """A functional group macro's item: per-frame first, then shared."""
    return _seq(per_frame, keyword) or _seq(shared, keyword)


#: YYYYMMDDHHMMSS[.F{1,6}]: read by slicing, as strptime reads it when every field is in range
_DT = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})(?:\.([0-9]{1,6}))?")


def _fast_dt(v: str) -> datetime | None:
    """``v`` as a datetime when it is a plain 14-digit DT; None for anything strptime must judge."""
    m = _DT.fullmatch(v)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and s <= 59):
        return None
    try:
        return datetime(y, mo, d, h, mi, s, int((m.group(7) or "0").ljust(6, "0")))
    except ValueError:
        return None


def _parse_dt(value: str | None) -> datetime | None:
    """A DICOM DT (offset dropped): plain 14-digit values by slicing, anything else by ``strptime``."""
    if not value:
        return None
    v = str(value).strip().split("+")[0].split("-")[0]
    fast = _fast_dt(v)
    return fast if fast is not None else _strptime_dt(v)


def _strptime_dt(v: str) -> datetime | None:
    """``v`` (offset already dropped) by the DT formats perfnode accepts; None when none fits."""
    for fmt in ("%Y%m%d%H%M%S.%f", "%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d"):
        try:
            return datetime.strptime(v, fmt)
        except ValueError:
            continue
    return None


def _date_time(ds: Dataset, date_kw: str, time_kw: str) -> datetime | None:
    d, t = ds.get(date_kw), ds.get(time_kw)
    if not d or not t:
        return None
    t = str(t).replace(":", "")
    whole, _, frac = t.partition(".")
    return _parse_dt(f"{d}{whole.ljust(6, '0')}.{(frac or '0')[:6]}")


def _classic_time(ds: Dataset) -> tuple[datetime | None, str]:
    if t := _parse_dt(ds.get("AcquisitionDateTime")):
        return t, "AcquisitionDateTime"
    if t := _date_time(ds, "AcquisitionDate", "AcquisitionTime"):
        return t, "AcquisitionTime"
    if t := _date_time(ds, "ContentDate", "ContentTime"):
        return t, "ContentTime"
    return None, ""


def _extra_classic(ds: Dataset) -> dict[str, Any]:
    """Echo time, flip angle, inversion time, diffusion (b, direction) of a classic image."""
    out: dict[str, Any] = {}
    if "EchoTime" in ds:
        out["echo_time_ms"] = float(ds.EchoTime)
    if "FlipAngle" in ds:
        out["flip_angle_deg"] = float(ds.FlipAngle)
    if "InversionTime" in ds:
        out["inversion_time_ms"] = float(ds.InversionTime)
    if "DiffusionBValue" in ds:
        d = ds.get("DiffusionGradientOrientation") or (0.0, 0.0, 0.0)
        out["diffusion"] = (float(ds.DiffusionBValue), *(float(v) for v in d))
    return out


def _extra(fg: FunctionalGroups, i: int) -> dict[str, Any]:
    """Echo time, flip angle, inversion time/post-label delay, diffusion (b, direction), ASL context."""
    out: dict[str, Any] = {}
    if (te := fg.value(i, "MREchoSequence", "EffectiveEchoTime")) is not None:
        out["echo_time_ms"] = float(te)
    if (fa := fg.value(i, "MRTimingAndRelatedParametersSequence", "FlipAngle")) is not None:
        out["flip_angle_deg"] = float(fa)
    if (ti := fg.value(i, "MRModifierSequence", "InversionTimes")) is not None:
        out["inversion_time_ms"] = float(ti[0] if isinstance(ti, (list, MultiValue)) else ti)
    if fg.has(i, "MRDiffusionSequence"):
        b = fg.value(i, "MRDiffusionSequence", "DiffusionBValue") or 0.0
        g = fg.value(
            i, "MRDiffusionSequence", "DiffusionGradientDirectionSequence", "DiffusionGradientOrientation"
        ) or (0.0, 0.0, 0.0)
        out["diffusion"] = (float(b), *(float(v) for v in g))
    if ctx := fg.value(i, "MRArterialSpinLabelingSequence", "ASLContext"):
        out["asl_context"] = str(ctx)
    return out


@dataclass
class _Table:
    """The frames of one or more sources as columns, one entry per frame (see :class:`_Frame`)."""

    source: np.ndarray  # (n,) int
    index: np.ndarray  # (n,) int
    temporal: list[int | None]
    position: np.ndarray  # (n, 3)
    orientation: list[tuple[float, ...]]
    time: list[datetime | None]
    trigger_ms: list[float | None]
    slope: np.ndarray  # (n,)
    intercept: np.ndarray  # (n,)
    extra: dict[str, list[Any]]  # EXTRA_KEYS → value per frame, None where absent
    time_source: list[str]
    pixel_measures: dict[str, Any] | None  # of the first frame (Enhanced sources)

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def from_rows(cls, rows: list[_Frame]) -> _Table:
        return cls(
            np.array([f.source for f in rows], np.int64),
            np.array([f.index for f in rows], np.int64),
            [f.temporal for f in rows],
            np.array([f.position for f in rows], float).reshape(-1, 3),
            [f.orientation for f in rows],
            [f.time for f in rows],
            [f.trigger_ms for f in rows],
            np.array([f.slope for f in rows], float),
            np.array([f.intercept for f in rows], float),
            {k: [f.extra.get(k) for f in rows] for k in EXTRA_KEYS},
            [f.extra.get("_time_source", "") for f in rows],
            rows[0].extra.get("_pixel_measures") if rows else None,
        )

    @classmethod
    def concat(cls, tables: list[_Table]) -> _Table:
        def cat(name: str) -> list[Any]:
            return [v for t in tables for v in getattr(t, name)]

        return cls(
            np.concatenate([t.source for t in tables]),
            np.concatenate([t.index for t in tables]),
            cat("temporal"),
            np.concatenate([t.position for t in tables]),
            cat("orientation"),
            cat("time"),
            cat("trigger_ms"),
            np.concatenate([t.slope for t in tables]),
            np.concatenate([t.intercept for t in tables]),
            {k: [v for t in tables for v in t.extra[k]] for k in EXTRA_KEYS},
            cat("time_source"),
            tables[0].pixel_measures,
        )

    def rows(self) -> list[_Frame]:
        out = []
        for i in range(len(self)):
            extra = {k: v[i] for k, v in self.extra.items() if v[i] is not None}
            extra["_time_source"] = self.time_source[i]
            if i == 0 and self.pixel_measures is not None:
                extra["_pixel_measures"] = self.pixel_measures
            out.append(
                _Frame(
                    int(self.source[i]),
                    int(self.index[i]),
                    self.temporal[i],
                    tuple(self.position[i].tolist()),
                    self.orientation[i],
                    self.time[i],
                    self.trigger_ms[i],
                    float(self.slope[i]),
                    float(self.intercept[i]),
                    extra,
                )
            )
        return out


def frame_table(ds: Dataset, source: int = 0) -> list[_Frame]:
    """One row per frame of ``ds`` (Enhanced: from the functional groups; classic: the one frame)."""
    return _table(ds, source).rows()


def _table(ds: Dataset, source: int = 0) -> _Table:
    """:func:`frame_table` as columns."""
    n = int(ds.get("NumberOfFrames") or 1)
    if 0x52009230 not in ds:  # tested by tag: looking it up by keyword would parse the whole sequence
        if ds.SOPClassUID in ENHANCED_SOP_CLASSES or n > 1:
            raise AssemblyError(
                f"{ds.SOPClassUID.name} {ds.SOPInstanceUID}: "
                "(5200,9230) PerFrameFunctionalGroupsSequence missing "
                "(PS3.3 C.7.6.16): frame positions and times unknown"
            )
        return _Table.from_rows([_classic_frame(ds, source)])
    fg = functional_groups(ds)
    if len(fg) != n:
        raise AssemblyError(
            f"{ds.SOPInstanceUID}: (5200,9230) PerFrameFunctionalGroupsSequence has "
            f"{len(fg)} items, (0028,0008) NumberOfFrames is {n} (PS3.3 C.7.6.16)"
        )
    try:
        return _columns(ds, fg, source)
    except Exception:  # noqa: BLE001 - malformed values: the frame-by-frame reading names the first one
        return _Table.from_rows(_rows(ds, fg, source))


def _each(col: Column, fn: Callable[[Any], Any]) -> list[Any]:
    """``fn`` of every frame's value, computed once per distinct value."""
    done = [fn(v) for v in col.values]
    return [done[c] for c in col.codes.tolist()]


def _floats(v: Any) -> tuple[float, ...] | None:
    return None if v is None else tuple(float(x) for x in v)


def _columns(ds: Dataset, fg: FunctionalGroups, source: int) -> _Table:
    """The columns of an Enhanced instance, each distinct value converted once (see :func:`_rows`)."""
    n = len(fg)
    pos = _each(fg.column("PlanePositionSequence", "ImagePositionPatient"), _floats)
    ori = _each(fg.column("PlaneOrientationSequence", "ImageOrientationPatient"), _floats)
    if None in pos or None in ori:
        raise ValueError("missing position or orientation")  # named by _rows
    when, time_kw = _objects(n), _objects(n)  # time of each frame, and where it came from
    todo = np.ones(n, bool)
    for kw in ("FrameAcquisitionDateTime", "FrameReferenceDateTime"):
        col = fg.column("FrameContentSequence", kw)
        parsed = _objects(len(col.values))
        parsed[:] = [_parse_dt(v) for v in col.values]
        found = todo & np.array([t is not None for t in parsed], bool)[col.codes]
        when[found], time_kw[found] = parsed[col.codes[found]], kw
        todo &= ~found
    when[todo], time_kw[todo] = _classic_time(ds)
    trigger = float(ds.TriggerTime) if ds.get("TriggerTime") is not None else None
    top_slope, top_icpt = float(ds.get("RescaleSlope", 1.0)), float(ds.get("RescaleIntercept", 0.0))
    slope = _each(fg.column("PixelValueTransformationSequence", "RescaleSlope"), _or(top_slope))
    icpt = _each(fg.column("PixelValueTransformationSequence", "RescaleIntercept"), _or(top_icpt))
    return _Table(
        np.full(n, source, np.int64),
        np.arange(n),
        _each(fg.column("FrameContentSequence", "TemporalPositionIndex"), _int_or_none),
        np.array(pos, float).reshape(n, -1),
        ori,
        when.tolist(),
        [trigger] * n,
        np.array(slope, float),
        np.array(icpt, float),
        _extra_columns(fg),
        time_kw.tolist(),
        {
            "PixelSpacing": fg.value(0, "PixelMeasuresSequence", "PixelSpacing"),
            "SliceThickness": fg.value(0, "PixelMeasuresSequence", "SliceThickness"),
        },
    )


def _objects(n: int) -> np.ndarray:
    """An array of ``n`` Python objects (None)."""
    return np.full(n, None, object)


def _or(default: float) -> Callable[[Any], float]:
    return lambda v: float(v) if v is not None else default


def _int_or_none(v: Any) -> int | None:
    return int(v) if v is not None else None


def _extra_columns(fg: FunctionalGroups) -> dict[str, list[Any]]:
    """:func:`_extra` as columns."""
    n = len(fg)
    out: dict[str, list[Any]] = {k: [None] * n for k in EXTRA_KEYS}
    out["echo_time_ms"] = _each(fg.column("MREchoSequence", "EffectiveEchoTime"), _or_none(float))
    fa = fg.column("MRTimingAndRelatedParametersSequence", "FlipAngle")
    out["flip_angle_deg"] = _each(fa, _or_none(float))
    out["inversion_time_ms"] = _each(
        fg.column("MRModifierSequence", "InversionTimes"),
        _or_none(lambda ti: float(ti[0] if isinstance(ti, (list, MultiValue)) else ti)),
    )
    has = fg.has_column("MRDiffusionSequence")
    if has.any():
        b = fg.column("MRDiffusionSequence", "DiffusionBValue").tolist()
        g = fg.column(
            "MRDiffusionSequence", "DiffusionGradientDirectionSequence", "DiffusionGradientOrientation"
        ).tolist()
        for i in np.flatnonzero(has).tolist():
            out["diffusion"][i] = (float(b[i] or 0.0), *(float(v) for v in g[i] or (0.0, 0.0, 0.0)))
    out["asl_context"] = _each(
        fg.column("MRArterialSpinLabelingSequence", "ASLContext"), lambda c: str(c) if c else None
    )
    return out


def _or_none(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: fn(v) if v is not None else None


def _rows(ds: Dataset, fg: FunctionalGroups, source: int) -> list[_Frame]:
    """The frame table frame by frame: the reference, and the reader that names a malformed frame."""
    n = len(fg)
    rows = []
    classic_time = _classic_time(ds)
    trigger = float(ds.TriggerTime) if ds.get("TriggerTime") is not None else None
    top_slope, top_icpt = float(ds.get("RescaleSlope", 1.0)), float(ds.get("RescaleIntercept", 0.0))
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
        time, source_kw = None, ""
        for kw in ("FrameAcquisitionDateTime", "FrameReferenceDateTime"):
            if time := _parse_dt(fg.value(i, "FrameContentSequence", kw)):
                source_kw = kw
                break
        if time is None:
            time, source_kw = classic_time
        tpi = fg.value(i, "FrameContentSequence", "TemporalPositionIndex")
        slope = fg.value(i, "PixelValueTransformationSequence", "RescaleSlope")
        icpt = fg.value(i, "PixelValueTransformationSequence", "RescaleIntercept")
        f = _Frame(
            source,
            i,
            int(tpi) if tpi is not None else None,
            tuple(float(v) for v in pos),
            tuple(float(v) for v in ori),
            time,
            trigger,
            float(slope) if slope is not None else top_slope,
            float(icpt) if icpt is not None else top_icpt,
            _extra(fg, i),
        )
        f.extra["_time_source"] = source_kw
        if i == 0:
            f.extra["_pixel_measures"] = {
                "PixelSpacing": fg.value(i, "PixelMeasuresSequence", "PixelSpacing"),
                "SliceThickness": fg.value(i, "PixelMeasuresSequence", "SliceThickness"),
            }
        rows.append(f)
    return rows


def _classic_frame(ds: Dataset, source: int) -> _Frame:
    for kw, tag in (("ImagePositionPatient", "(0020,0032)"), ("ImageOrientationPatient", "(0020,0037)")):
        if kw not in ds:
            raise AssemblyError(f"{ds.SOPInstanceUID}: {tag} {kw} missing (PS3.3 C.7.6.2)")
    time, source_kw = _classic_time(ds)
    tpi = ds.get("TemporalPositionIdentifier")
    f = _Frame(
        source,
        0,
        int(tpi) if tpi is not None else None,
        tuple(float(v) for v in ds.ImagePositionPatient),
        tuple(float(v) for v in ds.ImageOrientationPatient),
        time,
        float(ds.TriggerTime) if ds.get("TriggerTime") is not None else None,
        float(ds.get("RescaleSlope", 1.0)),
        float(ds.get("RescaleIntercept", 0.0)),
        _extra_classic(ds),
    )
    f.extra["_time_source"] = source_kw
    return f


Source = str | Path | Dataset


def read_header(src: Source) -> Dataset:
    """The dataset with pixel data deferred (files) or as given (datasets)."""
    if isinstance(src, Dataset):
        return src
    return pydicom.dcmread(src, defer_size=DEFER)


def _pixels(ds: Dataset, src: Source) -> np.ndarray:
    """All frames ``(n, rows, cols)`` of one source, decoded once (memory-mapped when uncompressed)."""
    n = int(ds.get("NumberOfFrames") or 1)
    shape = (n, int(ds.Rows), int(ds.Columns))
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    native_le = ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    simple = (
        ds.SamplesPerPixel == 1
        and ds.BitsAllocated in (8, 16, 32)
        and (ds.PixelRepresentation == 0 or ds.BitsStored == ds.BitsAllocated)
    )
    path = src if not isinstance(src, Dataset) else getattr(src, "filename", None)
    if native_le and simple and isinstance(path, (str, Path)):
        elem = ds.get_item("PixelData", keep_deferred=True)
        tell = getattr(elem, "value_tell", None)
        if tell is not None and getattr(elem, "value", None) is None:  # still in the file: read from there
            dtype = np.dtype(f"<{'i' if ds.PixelRepresentation else 'u'}{ds.BitsAllocated // 8}")
            return _FileFrames(path, dtype, tell, shape)
    arr = ds.pixel_array
    return arr.reshape(shape)


class _FileFrames:
    """Uncompressed frames still in the file, read a chunk of frames at a time into one reused buffer
    (so that only the output volume, not the file too, is held in memory)."""

    def __init__(self, path: str | Path, dtype: np.dtype, offset: int, shape: tuple[int, int, int]) -> None:
        frame_bytes = shape[1] * shape[2] * dtype.itemsize
        if offset + shape[0] * frame_bytes > os.path.getsize(path):
            raise ValueError("mmap length is greater than file size")  # as numpy's memmap said
        self.path, self.offset, self.frame_bytes, self.shape = path, offset, frame_bytes, shape
        self.chunk = max(1, min(shape[0], CHUNK_BYTES // max(frame_bytes, 1)))
        self._buf = np.empty((self.chunk, *shape[1:]), dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` (at most :attr:`chunk`), valid until the next read."""
        view = self._buf[: stop - start]
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.frame_bytes)
            if f.readinto(memoryview(view).cast("B")) != view.nbytes:
                raise ValueError(f"{self.path}: pixel data shorter than the header says")
        return view


def _codes(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Integer code of each value in the sorted list of its distinct values."""
    uniq = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    lookup = {v: i for i, v in enumerate(uniq)}
    return np.array([lookup[v] for v in values], dtype=np.int64), uniq


def group_series(sources: Iterable[Source]) -> dict[str, list[Dataset]]:
    """Headers grouped by Series Instance UID (file path kept in ``ds.filename``)."""
    out: dict[str, list[Dataset]] = {}
    for src in sources:
        ds = read_header(src)
        out.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    return out


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files named, and every file under the folders named (sorted), skipping non-DICOM names."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() not in {".json", ".npz"}
            )
        else:
            out.append(p)
    return out


def assemble(sources: Iterable[Source]) -> Volume4D:
    """One series → :class:`Volume4D`; :class:`AssemblyError` names what is missing or inconsistent."""
    srcs = list(sources)
    if not srcs:
        raise AssemblyError("no instances given")
    headers = [read_header(s) for s in srcs]
    series = {str(h.get("SeriesInstanceUID", "")) for h in headers}
    if len(series) > 1:
        raise AssemblyError(
            f"(0020,000E) SeriesInstanceUID: {len(series)} series mixed ({', '.join(sorted(series))})"
            "; assemble one series at a time"
        )
    if errors := concatenation_errors(headers):
        raise AssemblyError("; ".join(str(e) for e in errors))
    frames = _Table.concat([_table(h, k) for k, h in enumerate(headers)])
    if len({h.SOPInstanceUID for h in headers}) != len(headers):
        raise AssemblyError("(0008,0018) SOPInstanceUID: the same instance given twice")
    ref = headers[0]
    for h in headers[1:]:
        for kw, tag in (("Rows", "(0028,0010)"), ("Columns", "(0028,0011)")):
            if h.get(kw) != ref.get(kw):
                raise AssemblyError(
                    f"{tag} {kw}: {h.SOPInstanceUID} has {h.get(kw)}, {ref.SOPInstanceUID} has {ref.get(kw)}"
                )

    # Geometry: one orientation; slices = distinct positions along the normal.
    orientations = {tuple(round(v, 4) for v in o) for o in _distinct(frames.orientation)}
    if len(orientations) > 1:
        raise AssemblyError(
            f"(0020,0037) ImageOrientationPatient differs between frames: {sorted(orientations)}"
        )
    ori = np.array(frames.orientation[0])
    normal = np.cross(ori[:3], ori[3:])
    pos = frames.position
    dist = np.round(pos @ normal, POSITION_DECIMALS)
    z_code, z_values = _codes(dist.tolist())

    # Extra axes: the attributes that take more than one value.
    extra_names = [k for k in EXTRA_KEYS if len({repr(v) for v in _distinct(frames.extra[k])}) > 1]
    for k in extra_names:
        if None in frames.extra[k]:
            raise AssemblyError(f"{k}: present in some frames only")
    extra_codes, extra_values = [], []
    for k in extra_names:
        c, v = _codes(frames.extra[k])
        extra_codes.append(c)
        extra_values.append(v)

    # Time axis: Temporal Position Index/Identifier when every frame has it, else rank of time per cell.
    t_s, start = _seconds(frames)
    if None not in frames.temporal:
        t_code, _ = _codes(frames.temporal)
    elif all(t is None for t in frames.temporal):
        if np.isnan(t_s).any():
            t_code = np.zeros(len(frames), np.int64)
        else:
            order = np.lexsort([t_s, z_code, *extra_codes[::-1]])
            group = np.stack([*extra_codes, z_code], axis=1)[order]
            new = np.ones(len(order), bool)
            new[1:] = (group[1:] != group[:-1]).any(axis=1)
            starts = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
            t_code = np.empty(len(frames), np.int64)
            t_code[order] = np.arange(len(frames)) - starts
    else:
        missing = [
            f"{headers[s].SOPInstanceUID} frame {i + 1}"
            for s, i, t in zip(frames.source.tolist(), frames.index.tolist(), frames.temporal, strict=True)
            if t is None
        ]
        raise AssemblyError(
            f"(0020,9128) TemporalPositionIndex missing in {len(missing)} frame(s): {', '.join(missing[:5])}"
        )
    nt = int(t_code.max()) + 1
    shape = tuple(len(v) for v in extra_values) + (nt, len(z_values))
    flat = np.ravel_multi_index((*extra_codes, t_code, z_code), shape)
    counts = np.bincount(flat, minlength=int(np.prod(shape)))
    names = [*extra_names, "t", "z"]
    axes = [*extra_values, list(range(1, nt + 1)), z_values]
    if (counts > 1).any():
        cells = [_cell(names, axes, np.unravel_index(i, shape)) for i in np.flatnonzero(counts > 1)[:5]]
        raise AssemblyError(f"{int((counts > 1).sum())} duplicated frame cell(s): {'; '.join(cells)}")
    if (counts == 0).any():
        cells = [_cell(names, axes, np.unravel_index(i, shape)) for i in np.flatnonzero(counts == 0)[:5]]
        raise AssemblyError(
            f"{int((counts == 0).sum())} missing frame cell(s) of the "
            f"{' × '.join(map(str, shape))} grid: {'; '.join(cells)}"
        )

    # Pixels: decode each source once, rescale runs of frames straight into their cells.
    rows, cols = int(ref.Rows), int(ref.Columns)
    data = np.empty((*shape, rows, cols), np.float32)
    out = data.reshape(-1, rows, cols)
    frame_times = np.full(int(np.prod(shape)), np.nan)
    frame_times[flat] = t_s
    source_frames = np.zeros((int(np.prod(shape)), 2), np.int64)
    source_frames[flat] = np.stack([frames.source, frames.index + 1], axis=1)
    for k in range(len(headers)):
        idx = np.flatnonzero(frames.source == k)
        if len(idx):
            px = _pixels(headers[k], srcs[k])
            _rescale(px, out, frames.index[idx], flat[idx], frames.slope[idx], frames.intercept[idx])
            del px
    frame_times = frame_times.reshape(shape)
    per_t = frame_times.reshape(-1, nt, len(z_values))
    times_s = np.nanmin(per_t, axis=(0, 2)) if not np.isnan(per_t).all() else np.full(nt, np.nan)

    # Positions per slice (first frame found at that slice).
    order = np.argsort(z_code, kind="stable")
    positions = pos[order[np.searchsorted(z_code[order], np.arange(len(z_values)))]]
    pm = frames.pixel_measures or ref
    pixel_spacing, thickness = pm.get("PixelSpacing"), pm.get("SliceThickness")
    if pixel_spacing is None:
        raise AssemblyError("(0028,0030) PixelSpacing missing (PS3.3 C.7.6.16.2.1)")
    spacing = _median(np.diff(z_values)) if len(z_values) > 1 else 0.0
    geometry = Geometry(
        ori,
        positions,
        np.array([float(v) for v in pixel_spacing]),
        spacing,
        float(thickness) if thickness is not None else None,
        str(ref.get("FrameOfReferenceUID", "")),
    )
    time_sources = set(frames.time_source)
    return Volume4D(
        data=data,
        times_s=times_s,
        frame_times_s=frame_times,
        start=start,
        time_source=next(iter(time_sources)) if len(time_sources) == 1 else "/".join(sorted(time_sources)),
        geometry=geometry,
        extra_dims={k: np.array(v) for k, v in zip(extra_names, extra_values, strict=True)},
        sop_instance_uids=[str(h.SOPInstanceUID) for h in headers],
        source_frames=source_frames.reshape(*shape, 2),
        series_instance_uid=str(ref.get("SeriesInstanceUID", "")),
        sop_class_uid=str(ref.SOPClassUID),
    )


def _median(values: np.ndarray) -> float:
    """``np.median`` (the same value), without the ``numpy.ma`` import its NaN check costs on first use."""
    d = np.sort(values)
    if np.isnan(d).any():
        return float(np.median(d))
    mid = len(d) // 2
    return float(d[mid]) if len(d) % 2 else float((d[mid - 1] + d[mid]) / 2)


def _distinct(values: list[Any]) -> list[Any]:
    """The distinct objects of ``values`` (by identity: frames sharing a value share the object)."""
    return list({id(v): v for v in values}.values())


def _seconds(frames: _Table) -> tuple[np.ndarray, datetime | None]:
    """Seconds of each frame from the earliest frame time (else Trigger Time; else NaN), and that start."""
    distinct = set(frames.time)
    distinct.discard(None)
    start = min(distinct) if distinct else None
    seconds = {t: (t - start).total_seconds() for t in distinct}
    nan = float("nan")
    t_s = [
        seconds[t] if t is not None and start is not None else (trig / 1000.0 if trig is not None else nan)
        for t, trig in zip(frames.time, frames.trigger_ms, strict=True)
    ]
    return np.array(t_s, float), start


def _rescale(
    px: np.ndarray | _FileFrames,
    out: np.ndarray,
    index: np.ndarray,
    cells: np.ndarray,
    slope: np.ndarray,
    icpt: np.ndarray,
) -> None:
    """``out[cells] = px[index] × slope + intercept`` (float32, like a frame at a time), in runs of frames
    that are consecutive in both the source and the output and share the rescale; frames in the file are
    read in source order, a chunk at a time."""
    order = np.argsort(index, kind="stable")
    index, cells, slope, icpt = index[order], cells[order], slope[order], icpt[order]
    chunk = px.chunk if isinstance(px, _FileFrames) else max(len(px), 1)
    cut = np.ones(len(index) + 1, bool)
    cut[1:-1] = (np.diff(index) != 1) | (np.diff(cells) != 1) | (np.diff(index // chunk) != 0)
    cut[1:-1] |= (slope[1:] != slope[:-1]) | (icpt[1:] != icpt[:-1])
    bounds = np.flatnonzero(cut).tolist()
    loaded, block = -1, None
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        i, c, m = int(index[a]), int(cells[a]), b - a
        k = i // chunk
        if k != loaded:
            start = k * chunk
            block = px.read(start, min(start + chunk, len(px))) if isinstance(px, _FileFrames) else px
            loaded = k
        src = block[i - k * chunk : i - k * chunk + m]  # type: ignore[index]
        dst = out[c : c + m]
        if slope[a] == 1.0:
            np.copyto(dst, src, casting="unsafe")  # × 1 is exact: the same values, one pass less
        else:
            np.multiply(src, np.float32(slope[a]), out=dst, casting="unsafe")
        if icpt[a]:
            dst += np.float32(icpt[a])


def _cell(names: list[str], axes: list[list[Any]], idx: tuple[Any, ...]) -> str:
    parts = []
    for n, a, i in zip(names, axes, idx, strict=True):
        v = a[int(i)]
        parts.append(f"z={v} mm" if n == "z" else f"{n}={v}")
    return ", ".join(parts)
