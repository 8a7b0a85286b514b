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
point, with ``labelling`` (``contrast``: Arterial Spin Labeling Contrast, ``duration_ms``: ASL Pulse Train
Duration, ``pld_ms``: one post-labelling delay per volume, as Inversion Times, None for an M0 volume);
``slices=n`` keeps n adjacent slices of the template (fewer frames, the same per-frame items), so tests
stay small. ``protocol`` (a phantom module's ``PROTOCOL``: technique, TE, TR, flip angle, contrast
agent) makes the header say what the series is, as the same scanner's perfusion series would: Image/Frame
Type value 3 (PERFUSION, ASL), Acquisition Contrast, TE/TR/flip angle where the template keeps them
(top level, shared or per-frame MR Timing), the contrast agent (Enhanced Contrast/Bolus, or (0018,0010)
for classic images) and the series description; what belongs to the template's own technique goes (the MR
Diffusion macro of a DWI template, the Philips label-type dimension of an ASL template used for DSC).
``flip_deg`` (one per volume) with ``same_time=True`` writes a variable-flip-angle set instead of a time
series (every volume at time point 1). :func:`slice_offsets` gives each slice's acquisition time within a
volume (the template's slice timing, kept; ``slice_timing`` scales it: 0 for a 3-D acquisition, < 1 for the
same slice order in a shorter repetition time), so a test can sample its phantom when the header says it
was acquired. Pixel values are stored as 16-bit unsigned with a power-of-two Rescale Slope and an integer
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

from perfnode.dicom.assembly import Plan, plan
from perfnode.dicom.timing import parse_dt
from perfnode.dicom.vendors import PHILIPS_FG, PHILIPS_SCALE_SLOPE
from perfnode.phantoms.enhanced import _contrast_agent

TPI = 0x00209128
PHILIPS_LABEL_TYPE = 0x20051429
#: Image / Frame Type value 3 and Acquisition Contrast the header says, per technique of ``protocol``.
TYPE3 = {"dsc": ("PERFUSION", "T2_STAR"), "dce": ("PERFUSION", "T1"), "ctp": ("PERFUSION", "UNKNOWN"),
         "asl": ("ASL", "PERFUSION"), "vfa": ("T1", "T1")}


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


def template_shape(template_files: list[str | Path], slices: int | None = None) -> tuple[int, int, int]:
    """``(z, y, x)`` of the template series' volume (``slices`` of it): the shape a phantom must have."""
    p = plan([str(f) for f in template_files])
    nz = p.shape[-1] if slices is None else min(int(slices), p.shape[-1])
    return nz, p.frame_shape[0], p.frame_shape[1]


def _volume(p: Plan, slices: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Frames of the template volume (first cell of every non-spatial axis), one per slice in z order, and
    their z codes; ``slices``: the middle ``slices`` adjacent ones."""
    z_of = np.unravel_index(np.maximum(p.flat, 0), p.shape)
    first = (p.flat >= 0) & np.all([c == 0 for c in z_of[:-1]], axis=0)
    vol_frames = np.flatnonzero(first)
    vol_frames = vol_frames[np.argsort(z_of[-1][vol_frames])]  # one per slice, in z order
    if slices is not None and slices < len(vol_frames):
        start = (len(vol_frames) - int(slices)) // 2
        vol_frames = vol_frames[start:start + int(slices)]
    return vol_frames, z_of[-1][vol_frames]


def slice_offsets(template_files: list[str | Path], slices: int | None = None) -> np.ndarray:
    """Acquisition time (s) of each slice of the template's volume after its earliest slice, in z order
    (the slice timing :func:`write_real_layout` keeps: slice z of volume k is acquired at
    ``times_s[k] + offsets[z]``)."""
    p = plan([str(f) for f in template_files])
    vol_frames, _ = _volume(p, slices)
    t = p.frame_s[vol_frames]
    return np.asarray(t - t.min(), float)


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


def _vendor_copies(item: Dataset, te_ms: float | None, protocol: dict | None, flip_deg: float | None) -> None:
    """Philips repeats TE, TR and flip angle in its private per-frame group (2005,140F): the same values."""
    tag = PHILIPS_FG.tag_in(item)
    if tag is None or tag not in item or not item[tag].value:
        return
    inner = item[tag].value[0]
    fa = flip_deg if flip_deg is not None else (protocol or {}).get("flip_deg")
    for kw, v in (("EchoTime", te_ms), ("FlipAngle", fa), ("RepetitionTime", (protocol or {}).get("tr_ms"))):
        if v is not None and kw in inner:
            setattr(inner, kw, _ds_text(v) if inner[kw].VR == "DS" else float(v))


def _set_timing(item: Dataset, protocol: dict | None, flip_deg: float | None = None) -> None:
    """TR / flip angle of an MR Timing macro item (shared or per-frame) or a classic image."""
    if protocol is None and flip_deg is None:
        return
    targets = [item]
    if "MRTimingAndRelatedParametersSequence" in item:
        targets = [item.MRTimingAndRelatedParametersSequence[0]]
    for t in targets:
        if protocol and protocol.get("tr_ms") is not None and "RepetitionTime" in t:
            t.RepetitionTime = _ds_text(protocol["tr_ms"]) if t["RepetitionTime"].VR == "DS" else \
                float(protocol["tr_ms"])
        fa = flip_deg if flip_deg is not None else (protocol or {}).get("flip_deg")
        if fa is not None and "FlipAngle" in t:
            t.FlipAngle = _ds_text(fa) if t["FlipAngle"].VR == "DS" else float(fa)


def _type3(ds: Dataset, item_or_none: Dataset | None, protocol: dict | None) -> None:
    """Image Type (top level) or Frame Type (an MR Image Frame Type item) value 3 and Acquisition Contrast."""
    if not protocol or protocol.get("technique") not in TYPE3:
        return
    value3, contrast = TYPE3[protocol["technique"]]
    if item_or_none is None:
        if "ImageType" in ds and len(ds.ImageType) >= 3:
            ds.ImageType = [*ds.ImageType[:2], value3, *ds.ImageType[3:]]
        if "AcquisitionContrast" in ds:
            ds.AcquisitionContrast = contrast
        return
    for kw in ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence"):
        if kw in item_or_none:
            ft = item_or_none[kw].value[0]
            if "FrameType" in ft and len(ft.FrameType) >= 3:
                ft.FrameType = [*ft.FrameType[:2], value3, *ft.FrameType[3:]]
            if "AcquisitionContrast" in ft:
                ft.AcquisitionContrast = contrast


def _drop_other_technique(item: Dataset, protocol: dict | None) -> None:
    """Macros of the template's own technique the new one has no use for (MR Diffusion for non-DWI)."""
    if protocol and protocol.get("technique") not in ("ivim", "dwi") and "MRDiffusionSequence" in item:
        del item.MRDiffusionSequence


def _drop_dimension(ds: Dataset, pointer: int) -> int | None:
    """Remove one dimension (its Dimension Index item) from an Enhanced instance; its position or None."""
    items = list(ds.get("DimensionIndexSequence") or [])
    where = [i for i, d in enumerate(items) if int(d.get("DimensionIndexPointer", 0)) == pointer]
    if not where:
        return None
    del items[where[0]]
    ds.DimensionIndexSequence = Sequence(items)
    return where[0]


def _drop_div(item: Dataset, position: int | None) -> None:
    if position is None:
        return
    fc = item.FrameContentSequence[0]
    raw = fc.get("DimensionIndexValues")
    if raw is None:
        return
    div = [int(v) for v in (raw if hasattr(raw, "__len__") else [raw])]
    del div[position]
    fc.DimensionIndexValues = div


def _header(ds: Dataset, protocol: dict | None, description: str | None, enhanced: bool,
            labelling: dict | None = None) -> None:
    """Top-level attributes that say what the series is (see the module docstring)."""
    if labelling and labelling.get("contrast"):
        ds.ArterialSpinLabelingContrast = labelling["contrast"]
    if description:
        ds.SeriesDescription = description
        if "ProtocolName" in ds:
            ds.ProtocolName = description
    if not protocol:
        return
    _type3(ds, None, protocol)
    _set_timing(ds, protocol)
    if protocol.get("te_ms") is not None and "EchoTime" in ds:
        ds.EchoTime = _ds_text(protocol["te_ms"])
    if not protocol.get("contrast"):
        return
    if enhanced:
        agent = _contrast_agent(protocol, str(ds.get("Modality", "MR")))
        ds.ContrastBolusAgentSequence = Sequence([agent])
        usage = Dataset()
        usage.ContrastBolusAgentNumber = 1
        usage.ContrastBolusAgentAdministered = "YES"
        usage.ContrastBolusAgentDetected = "YES"
        ds.SharedFunctionalGroupsSequence[0].ContrastBolusUsageSequence = Sequence([usage])
    else:
        ds.ContrastBolusAgent = str(protocol["contrast"])
        ds.ContrastBolusRoute = "IV"


def _set_context(item: Dataset, context: str, labelling: dict | None = None) -> None:
    asl = Dataset()
    asl.ASLContext = context
    if labelling and labelling.get("duration_ms"):
        slab = Dataset()
        slab.ASLSlabNumber = 1
        slab.ASLPulseTrainDuration = int(round(float(labelling["duration_ms"]) * 1000))  # µs
        asl.ASLSlabSequence = Sequence([slab])
    item.MRArterialSpinLabelingSequence = Sequence([asl])


def _set_pld(sh: Dataset, pld_ms: float | None) -> None:
    """Post-labelling delay of one volume as Inversion Times (0018,9079) of its MR Modifier macro."""
    if "MRModifierSequence" not in sh:
        sh.MRModifierSequence = Sequence([Dataset()])
    mod = sh.MRModifierSequence[0]
    if pld_ms is None:
        if "InversionTimes" in mod:
            del mod.InversionTimes
        return
    mod.InversionRecovery = "YES"
    mod.InversionTimes = [float(pld_ms)]


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
    slices: int | None = None,
    protocol: dict | None = None,
    description: str | None = None,
    flip_deg: list[float] | None = None,
    same_time: bool = False,
    slice_timing: float = 1.0,
    labelling: dict | None = None,
) -> RealLayoutSeries:
    """Write ``signal`` (t, z, y, x) at ``times_s`` in the layout of ``template_files`` (module doc)."""
    files = [str(f) for f in template_files]
    p = plan(files)
    (ny, nx) = p.frame_shape
    vol_frames, _ = _volume(p, slices)
    nz = len(vol_frames)
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
    if flip_deg is not None and len(flip_deg) != nt:
        raise ValueError(f"{len(flip_deg)} flip angles for {nt} volumes")
    if te_ms is None and protocol is not None:
        te_ms = protocol.get("te_ms")
    slope, icpt, stored = _scale(signal)
    expected = stored.astype(np.float32) * np.float32(slope)
    if icpt:
        expected += np.float32(icpt)
    # slice_timing: the template's slice offsets × this factor (0: every slice at the volume's start, a 3-D
    # acquisition; < 1: the same slice order in a shorter repetition time)
    frame_s = p.frame_s[vol_frames]
    undo = (float(slice_timing) - 1.0) * (frame_s - frame_s.min())  # per slice, z order
    src = sorted({int(p.frames.source[i]) for i in vol_frames})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid(entropy_srcs=[seed, "series"]) if seed else generate_uid()

    def uid(*parts: object) -> str:
        return generate_uid(entropy_srcs=[seed, *map(str, parts)]) if seed else generate_uid()

    def tk(k: int) -> int:  # the time point volume k is written at
        return 0 if same_time else k

    def dt(k: int) -> float:
        return 0.0 if same_time else float(times_s[k] - times_s[0])

    written: list[Path] = []
    ref = pydicom.dcmread(files[int(p.frames.source[vol_frames[0]])])
    enhanced = "PerFrameFunctionalGroupsSequence" in ref
    drop_pos = None
    if enhanced and protocol is not None and protocol.get("technique") != "asl":
        drop_pos = _drop_dimension(ref, PHILIPS_LABEL_TYPE)  # an ASL template's label type, for DSC/DCE
    pointers = [int(d.DimensionIndexPointer) for d in ref.get("DimensionIndexSequence") or []]

    def frame_item(item0: Dataset, k: int, j: int) -> Dataset:
        item = copy.deepcopy(item0)
        _drop_div(item, drop_pos)
        _frame_content(item, tk(k), dt(k) + float(undo[j]), pointers)
        _vendor_copies(item, te_ms, protocol, None if flip_deg is None else flip_deg[k])
        _rescale_item(item, slope, icpt)
        if te_ms is not None:
            _set_te(item, te_ms)
        _type3(ref, item, protocol)
        _drop_other_technique(item, protocol)
        if flip_deg is not None and "MRTimingAndRelatedParametersSequence" in item:
            _set_timing(item, None, flip_deg[k])
        if asl_context is not None:
            _set_context(item, asl_context[k], labelling)
        return item

    def shared(ds: Dataset, k: int | None) -> None:
        sh = ds.SharedFunctionalGroupsSequence[0]
        _rescale_item(sh, slope, icpt)
        if te_ms is not None:
            _set_te(sh, te_ms)
        _type3(ds, sh, protocol)
        _drop_other_technique(sh, protocol)
        _set_timing(sh, protocol, None if (flip_deg is None or k is None) else flip_deg[k])
        if labelling and labelling.get("pld_ms") is not None:
            if k is None:
                raise ValueError("post-labelling delays per volume are written into one-instance-per-volume "
                                 "layouts only")
            _set_pld(sh, labelling["pld_ms"][k])

    if enhanced and len(src) == 1 and len(p.headers) > 1:
        layout = "per-time-point"
        frame_index = p.frames.index[vol_frames]
        if len(ref.PerFrameFunctionalGroupsSequence) != p.shape[-1]:
            raise ValueError("the template instance holds more than one volume")
        keep = np.sort(frame_index)  # the kept frames, in the template's frame order
        j_of = {int(f): j for j, f in enumerate(frame_index.tolist())}  # frame → slice (z order)
        items0 = [ref.PerFrameFunctionalGroupsSequence[int(i)] for i in keep]
        del ref.PerFrameFunctionalGroupsSequence, ref.PixelData  # ref is this function's own copy
        acquired = ref.get("AcquisitionDateTime")
        for k in range(nt):
            ds = ref  # rewritten in place: every attribute that differs between instances is set below
            if acquired:
                ds.AcquisitionDateTime = acquired
            ds.PerFrameFunctionalGroupsSequence = Sequence(
                [frame_item(it, k, j_of[int(i)]) for it, i in zip(items0, keep, strict=True)])
            ds.NumberOfFrames = len(keep)
            px = np.empty((len(keep), ny, nx), np.uint16)
            for j, fi in enumerate(keep.tolist()):
                px[j] = stored[k, j_of[fi]]
            shared(ds, k)
            _header(ds, protocol, description, True, labelling)
            _common(ds, k, nt, times_s, series_uid, uid("inst", k), slope, icpt, te_ms, same_time)
            _set_pixels(ds, px)
            path = out / f"{k + 1:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            written.append(path)
    elif enhanced:
        layout = "multi-frame"
        template_items = [ref.PerFrameFunctionalGroupsSequence[int(p.frames.index[i])] for i in vol_frames]
        del ref.PerFrameFunctionalGroupsSequence, ref.PixelData  # ref is this function's own copy
        ds = ref
        sh0 = ds.SharedFunctionalGroupsSequence[0]
        if flip_deg is not None and "MRTimingAndRelatedParametersSequence" in sh0:
            # a flip angle per volume: the MR Timing macro moves from the shared to the per-frame groups
            timing_seq = sh0.MRTimingAndRelatedParametersSequence
            del sh0.MRTimingAndRelatedParametersSequence
            for it in template_items:
                it.MRTimingAndRelatedParametersSequence = timing_seq
        items = []
        px = np.empty((nt * nz, ny, nx), np.uint16)
        for k in range(nt):
            for j, item0 in enumerate(template_items):
                items.append(frame_item(item0, k, j))
                px[k * nz + j] = stored[k, j]
        ds.PerFrameFunctionalGroupsSequence = Sequence(items)
        ds.NumberOfFrames = len(items)
        shared(ds, None)
        _header(ds, protocol, description, True)
        _common(ds, 0, nt, times_s, series_uid, uid("inst", 0), slope, icpt, te_ms, same_time)
        _set_pixels(ds, px)
        path = out / "0001.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    else:
        layout = "classic"
        if asl_context is not None:
            raise ValueError("ASL contexts are written into Enhanced layouts only")
        templates = [pydicom.dcmread(files[int(p.frames.source[i])]) for i in vol_frames]
        shifts = undo.tolist()
        n = 0
        for k in range(nt):
            for j, t0 in enumerate(templates):
                ds = copy.deepcopy(t0)
                n += 1
                if ds.get("TriggerTime") is not None:
                    shifted = float(ds.TriggerTime) + 1000.0 * (dt(k) + shifts[j])
                    ds.TriggerTime = _ds_text(round(shifted, 3))
                else:
                    pairs = (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime"))
                    for d_kw, t_kw in pairs:
                        if ds.get(d_kw) and ds.get(t_kw):
                            v = _shift_dt(f"{ds.get(d_kw)}{str(ds.get(t_kw)).ljust(6, '0')}",
                                          dt(k) + shifts[j])
                            if v:
                                setattr(ds, d_kw, v[:8])
                                setattr(ds, t_kw, v[8:])
                ds.TemporalPositionIdentifier = tk(k) + 1
                if "ImagesInAcquisition" in ds:
                    ds.ImagesInAcquisition = nt * len(templates)
                ds.RescaleSlope, ds.RescaleIntercept = _ds_text(slope), _ds_text(icpt)
                _header(ds, protocol, description, False)
                if flip_deg is not None:
                    ds.FlipAngle = _ds_text(flip_deg[k])
                _common(ds, n - 1, nt, times_s, series_uid, uid("inst", k, j), slope, icpt, te_ms, same_time)
                _set_pixels(ds, stored[k, j])
                path = out / f"{n:04d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                written.append(path)
    return RealLayoutSeries(written, layout, expected, times_s - times_s[0], slope, icpt, series_uid)


def _common(ds: Dataset, k: int, nt: int, times_s: np.ndarray, series_uid: str, sop_uid: str,
            slope: float, icpt: float, te_ms: float | None, same_time: bool = False) -> None:
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.InstanceNumber = k + 1
    ds.NumberOfTemporalPositions = 1 if same_time else nt
    if "PerFrameFunctionalGroupsSequence" in ds and ds.get("AcquisitionDateTime") and not same_time:
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
