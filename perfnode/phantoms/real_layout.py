"""A phantom signal written in a real scanner's layout: real headers, functional groups, private data and
geometry from a template series, the phantom's pixel values and as many time points as it has.

``write_real_layout(template_files, signal (t, z, y, x), times_s, out)`` picks one volume of the template
(its first time point / first value of every other axis), then writes, per layout:

- **Enhanced, one instance per time point** (Siemens XA): the template instance cloned per time point;
- **Enhanced, one multi-frame instance** (Philips, Canon): the volume's per-frame items repeated per time
  point in one instance;
- **classic** (GE, one image per slice and time point): the slice images cloned per time point.

Temporal Position Index/Identifier and its Dimension Index Value, frame/acquisition times (the template's
per-slice offsets kept; GE: Trigger Time), Number of Temporal Positions, SOP Instance and Series UIDs are
renumbered consistently; Echo Time optionally replaced (DSC vs DCE); ASL Context optionally set per time
point. Pixel values are stored as 16-bit unsigned with a power-of-two Rescale Slope and an integer
intercept (Philips: the private scale slope set so the floating-point value equals the rescaled one), so
:attr:`RealLayoutSeries.expected` is exactly what :func:`perfnode.dicom.assembly.assemble` gives back.
Made at test time from ``tests/data/real-data``, never committed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from perfnode.dicom.assembly import plan
from perfnode.dicom.timing import parse_dt
from perfnode.dicom.vendors import PHILIPS_FG, PHILIPS_SCALE_SLOPE

TPI = 0x00209128


@dataclass
class RealLayoutSeries:
    """What was written: the files, the layout, and the volume ``assemble`` must give back."""

    files: list[Path]
    layout: str  # "per-time-point", "multi-frame" or "classic"
    expected: np.ndarray  # (t, z, y, x) float32: the phantom as stored (quantised to the rescale)
    times_s: np.ndarray
    slope: float
    intercept: float
    series_instance_uid: str


def template_shape(template_files: list[str | Path]) -> tuple[int, int, int]:
    """``(z, y, x)`` of the template series' volume: the shape a phantom signal must have."""
    p = plan([str(f) for f in template_files])
    return p.shape[-1], p.frame_shape[0], p.frame_shape[1]


def _scale(signal: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Power-of-two slope, integer intercept, and the stored 16-bit values of ``signal``."""
    lo = float(np.floor(np.nanmin(signal)))
    span = float(np.nanmax(signal)) - lo
    slope = float(2.0 ** np.ceil(np.log2(span / 65535.0))) if span > 0 else 1.0
    stored = np.clip(np.rint((signal - lo) / slope), 0, 65535).astype(np.uint16)
    return slope, lo, stored


def _ds_text(v: float) -> str:
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def _set_pixels(ds: Dataset, frames: np.ndarray) -> None:
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    for kw in ("SmallestImagePixelValue", "LargestImagePixelValue", "PixelPaddingValue"):
        if kw in ds:
            del ds[kw]
    ds.PixelData = np.ascontiguousarray(frames, "<u2").tobytes()
    ds["PixelData"].VR = "OW"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


def _rescale_item(item: Dataset, slope: float, icpt: float) -> None:
    """Set the rescale of one per-frame (or shared) item, and what Philips derives from it."""
    if "PixelValueTransformationSequence" in item:
        pvt = item.PixelValueTransformationSequence[0]
        pvt.RescaleSlope, pvt.RescaleIntercept = _ds_text(slope), _ds_text(icpt)
    if "RealWorldValueMappingSequence" in item:
        for rwv in item.RealWorldValueMappingSequence:
            rwv.RealWorldValueSlope, rwv.RealWorldValueIntercept = float(slope), float(icpt)
            if "RealWorldValueLastValueMapped" in rwv:
                rwv.RealWorldValueLastValueMapped = 65535
    tag = PHILIPS_FG.tag_in(item)
    if tag is not None and tag in item and item[tag].value:
        inner = item[tag].value[0]
        ss = PHILIPS_SCALE_SLOPE.tag_in(inner)
        if ss is not None and ss in inner:
            inner[ss].value = 1.0 / slope  # RS × SS = 1: floating-point value = rescaled value
        for kw, v in (("RescaleSlope", slope), ("RescaleIntercept", icpt)):
            if kw in inner:
                setattr(inner, kw, _ds_text(v))


def _shift_dt(value: object, delta_s: float) -> str | None:
    t = parse_dt(value)
    if t is None:
        return None
    return (t + timedelta(seconds=delta_s)).strftime("%Y%m%d%H%M%S.%f")


def _set_te(item: Dataset, te_ms: float) -> None:
    if "MREchoSequence" in item:
        item.MREchoSequence[0].EffectiveEchoTime = float(te_ms)


def _set_context(item: Dataset, context: str) -> None:
    asl = Dataset()
    asl.ASLContext = context
    item.MRArterialSpinLabelingSequence = Sequence([asl])


def _frame_content(item: Dataset, k: int, delta_s: float, pointers: list[int]) -> None:
    fc = item.FrameContentSequence[0]
    fc.TemporalPositionIndex = k + 1
    if "DimensionIndexValues" in fc and TPI in pointers:
        raw = fc.DimensionIndexValues
        div = [int(v) for v in (raw if hasattr(raw, "__len__") else [raw])]
        div[pointers.index(TPI)] = k + 1
        fc.DimensionIndexValues = div
    for kw in ("FrameAcquisitionDateTime", "FrameReferenceDateTime"):
        if kw in fc and (v := _shift_dt(fc.get(kw), delta_s)) is not None:
            setattr(fc, kw, v)


def write_real_layout(
    template_files: list[str | Path],
    signal: np.ndarray,
    times_s: np.ndarray,
    out: str | Path,
    te_ms: float | None = None,
    asl_context: list[str] | None = None,
    seed: str = "",
) -> RealLayoutSeries:
    """Write ``signal`` (t, z, y, x) at ``times_s`` in the layout of ``template_files`` (module doc)."""
    files = [str(f) for f in template_files]
    p = plan(files)
    nz, (ny, nx) = p.shape[-1], p.frame_shape
    signal = np.asarray(signal, float)
    times_s = np.asarray(times_s, float)
    nt = signal.shape[0]
    if signal.shape[1:] != (nz, ny, nx):
        raise ValueError(f"phantom signal {signal.shape[1:]} does not fit the template's (z, y, x) "
                         f"{(nz, ny, nx)}")
    if times_s.shape != (nt,):
        raise ValueError(f"{len(times_s)} times for {nt} time points")
    if asl_context is not None and len(asl_context) != nt:
        raise ValueError(f"{len(asl_context)} ASL contexts for {nt} time points")
    slope, icpt, stored = _scale(signal)
    expected = stored.astype(np.float32) * np.float32(slope)
    if icpt:
        expected += np.float32(icpt)
    # the template volume: frames of the first cell of every non-spatial axis, by slice
    z_of = np.unravel_index(np.maximum(p.flat, 0), p.shape)
    first = (p.flat >= 0) & np.all([c == 0 for c in z_of[:-1]], axis=0)
    vol_frames = np.flatnonzero(first)
    vol_frames = vol_frames[np.argsort(z_of[-1][vol_frames])]  # one per slice, in z order
    z_code = z_of[-1][vol_frames]
    src = sorted({int(p.frames.source[i]) for i in vol_frames})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid(entropy_srcs=[seed, "series"]) if seed else generate_uid()

    def uid(*parts: object) -> str:
        return generate_uid(entropy_srcs=[seed, *map(str, parts)]) if seed else generate_uid()

    written: list[Path] = []
    ref = pydicom.dcmread(files[int(p.frames.source[vol_frames[0]])])
    enhanced = "PerFrameFunctionalGroupsSequence" in ref
    pointers = [int(d.DimensionIndexPointer) for d in ref.get("DimensionIndexSequence") or []]
    if enhanced and len(src) == 1 and len(p.headers) > 1:
        layout = "per-time-point"
        for k in range(nt):
            ds = copy.deepcopy(ref)
            frame_index = p.frames.index[vol_frames]
            if len(frame_index) != len(ds.PerFrameFunctionalGroupsSequence):
                raise ValueError("the template instance holds more than one volume")
            px = np.empty((len(frame_index), ny, nx), np.uint16)
            for j, fi in enumerate(frame_index.tolist()):
                item = ds.PerFrameFunctionalGroupsSequence[fi]
                _frame_content(item, k, float(times_s[k] - times_s[0]), pointers)
                _rescale_item(item, slope, icpt)
                if te_ms is not None:
                    _set_te(item, te_ms)
                if asl_context is not None:
                    _set_context(item, asl_context[k])
                px[fi] = stored[k, z_code[j]]
            _common(ds, k, nt, times_s, series_uid, uid("inst", k), slope, icpt, te_ms)
            _set_pixels(ds, px)
            path = out / f"{k + 1:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            written.append(path)
    elif enhanced:
        layout = "multi-frame"
        ds = copy.deepcopy(ref)
        template_items = [ds.PerFrameFunctionalGroupsSequence[int(p.frames.index[i])] for i in vol_frames]
        items = []
        px = np.empty((nt * len(vol_frames), ny, nx), np.uint16)
        for k in range(nt):
            for j, item0 in enumerate(template_items):
                item = copy.deepcopy(item0)
                _frame_content(item, k, float(times_s[k] - times_s[0]), pointers)
                _rescale_item(item, slope, icpt)
                if te_ms is not None:
                    _set_te(item, te_ms)
                if asl_context is not None:
                    _set_context(item, asl_context[k])
                items.append(item)
                px[k * len(vol_frames) + j] = stored[k, z_code[j]]
        ds.PerFrameFunctionalGroupsSequence = Sequence(items)
        ds.NumberOfFrames = len(items)
        _rescale_item(ds.SharedFunctionalGroupsSequence[0], slope, icpt)
        if te_ms is not None:
            _set_te(ds.SharedFunctionalGroupsSequence[0], te_ms)
        _common(ds, 0, nt, times_s, series_uid, uid("inst", 0), slope, icpt, te_ms)
        _set_pixels(ds, px)
        path = out / "0001.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    else:
        layout = "classic"
        if asl_context is not None:
            raise ValueError("ASL contexts are written into Enhanced layouts only")
        templates = [pydicom.dcmread(files[int(p.frames.source[i])]) for i in vol_frames]
        n = 0
        for k in range(nt):
            for j, t0 in enumerate(templates):
                ds = copy.deepcopy(t0)
                n += 1
                if ds.get("TriggerTime") is not None:
                    shifted = float(ds.TriggerTime) + 1000.0 * (times_s[k] - times_s[0])
                    ds.TriggerTime = _ds_text(round(shifted, 3))
                else:
                    pairs = (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime"))
                    for d_kw, t_kw in pairs:
                        if ds.get(d_kw) and ds.get(t_kw):
                            v = _shift_dt(f"{ds.get(d_kw)}{str(ds.get(t_kw)).ljust(6, '0')}",
                                          float(times_s[k] - times_s[0]))
                            if v:
                                setattr(ds, d_kw, v[:8])
                                setattr(ds, t_kw, v[8:])
                ds.TemporalPositionIdentifier = k + 1
                if "ImagesInAcquisition" in ds:
                    ds.ImagesInAcquisition = nt * len(templates)
                ds.RescaleSlope, ds.RescaleIntercept = _ds_text(slope), _ds_text(icpt)
                _common(ds, n - 1, nt, times_s, series_uid, uid("inst", k, j), slope, icpt, te_ms)
                _set_pixels(ds, stored[k, z_code[j]])
                path = out / f"{n:04d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                written.append(path)
    return RealLayoutSeries(written, layout, expected, times_s - times_s[0], slope, icpt, series_uid)


def _common(ds: Dataset, k: int, nt: int, times_s: np.ndarray, series_uid: str, sop_uid: str,
            slope: float, icpt: float, te_ms: float | None) -> None:
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.InstanceNumber = k + 1
    ds.NumberOfTemporalPositions = nt
    if "PerFrameFunctionalGroupsSequence" in ds and ds.get("AcquisitionDateTime"):
        v = _shift_dt(ds.AcquisitionDateTime, float(times_s[min(k, nt - 1)] - times_s[0]))
        if v:
            ds.AcquisitionDateTime = v
    if te_ms is not None and "EchoTime" in ds:
        ds.EchoTime = _ds_text(te_ms)
    if "ConcatenationUID" in ds:
        for kw in ("ConcatenationUID", "SOPInstanceUIDOfConcatenationSource", "InConcatenationNumber",
                   "InConcatenationTotalNumber", "ConcatenationFrameOffsetNumber"):
            if kw in ds:
                del ds[kw]
