"""Frames → one ordered volume ``extra axes + (t, z, y, x)`` with timing, geometry and what it means.

Sources: one Enhanced MR/CT instance, a concatenation (parts in any order), one Enhanced instance per
time point, a classic single-frame series, Siemens MOSAIC images. Frames are placed by their attributes
(:mod:`perfnode.dicom.frame_table`), never by file order:

- **z**: distinct positions along the slice normal (:mod:`perfnode.dicom.geometry`);
- **extra axes**: each attribute of :data:`~perfnode.dicom.frame_table.EXTRA_KEYS` that takes more than
  one value, and each further dimension the Dimension Index Sequence names (placed by its index);
- **t**: Temporal Position Index/Identifier when every frame has one, else the rank of the frame's time
  within its cell. When the Temporal Position Index is in one-to-one correspondence with an extra axis
  (Siemens XA and Canon DWI count diffusion volumes with it), it *is* that axis and t has one point.
- **ASL**: label/control from ASL Context, the vendor's private marker, or (Siemens pCASL mosaics, only
  in the protocol) the convention, said so in :attr:`Volume4D.notes`. Volumes whose context is a function
  of the time point (alternating, or blocks) are paired in order; M0 volumes inside the series go to
  :attr:`Volume4D.m0`; the data become ``(asl_context = [CONTROL, LABEL], t = repeat, z, y, x)``.

Pixel values: stored × Rescale Slope + Intercept, per frame (a frame without a Modality rescale: its Real
World Value Mapping; Philips: floating-point values, see :mod:`perfnode.dicom.vendors`). Uncompressed
little-endian pixel data are read from the file in chunks, other transfer syntaxes decoded by pydicom;
each frame is rescaled straight into the output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from perfnode.dicom import timing
from perfnode.dicom.concatenation import concatenation_errors
from perfnode.dicom.frame_table import EXTRA_KEYS, AssemblyError, _Frame, _Table, classic_times, table
from perfnode.dicom.geometry import Geometry, codes, distinct, median, slices

DEFER = 1024 * 1024
CHUNK_BYTES = 1024 * 1024  # frames read from the file at a time (stays in the CPU cache)
ASL_ORDER = ("CONTROL", "LABEL")
M0 = "M_ZERO_SCAN"


class NotDicomError(AssemblyError, InvalidDicomError):
    """A file that is not DICOM (both an :class:`AssemblyError` and pydicom's ``InvalidDicomError``)."""


@dataclass(frozen=True)
class AssemblyWarning:
    """Something the volume lacks or assumes: ``code`` (e.g. ``incomplete``), the attribute, a message."""

    code: str
    attribute: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class Volume4D:
    """An assembled series: ``data`` has shape ``extra_shape + (t, z, y, x)`` (float32, rescaled).

    See the ``Volume4D`` contract in the README's architecture section and /work/coord/NOTES.md."""

    data: np.ndarray
    times_s: np.ndarray  # (t,) seconds from the first frame: the start (earliest frame) of each time point
    frame_times_s: np.ndarray  # extra_shape + (t, z): each frame's own time (slice timing)
    start: datetime | None  # absolute time of 0 s (None when the times are relative, or absent)
    time_source: str  # keyword the times came from ("" when none)
    geometry: Geometry
    #: Extra axes in order: name → values (``diffusion`` values are (b, gx, gy, gz) rows).
    extra_dims: dict[str, np.ndarray] = field(default_factory=dict)
    sop_instance_uids: list[str] = field(default_factory=list)
    #: extra_shape + (t, z, 2): index into ``sop_instance_uids`` and 1-based frame number.
    source_frames: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 2), int))
    series_instance_uid: str = ""
    sop_class_uid: str = ""
    #: names of the leading axes of ``data``: the extra axes, then "t" and "z" (then y, x)
    axes: tuple[str, ...] = ("t", "z")
    #: per-cell values (extra_shape + (t, z)) of attributes that vary slightly within an axis value
    #: (``trigger_delay_ms``: Philips shifts the delay a few ms per slice)
    cell_values: dict[str, np.ndarray] = field(default_factory=dict)
    #: M0 volumes found inside the series (n, z, y, x), their times (n,), and None when there are none
    m0: np.ndarray | None = None
    m0_times_s: np.ndarray | None = None
    #: where the ASL label/control context came from ("" when the series has none)
    asl_context_source: str = ""
    #: ASL acquisition parameters the header gives, name → (value, attribute it came from):
    #: labelling_type, labelling_duration_ms, post_labelling_delay_ms (one value or one per PLD),
    #: background_suppression; a name is absent when the header does not say it
    asl_parameters: dict[str, tuple[Any, str]] = field(default_factory=dict)
    #: how the volume was read where a convention or a decision was involved (one sentence each)
    notes: list[str] = field(default_factory=list)
    warnings: list[AssemblyWarning] = field(default_factory=list)

    def source_frame(self, *index: int) -> tuple[str, int]:
        """``(SOP Instance UID, frame number)`` of the frame at ``(*extra, t, z)``."""
        uid, frame = self.source_frames[index]
        return self.sop_instance_uids[int(uid)], int(frame)

    @property
    def incomplete(self) -> bool:
        """Fewer time points present than the header announces."""
        return any(w.code == "incomplete" for w in self.warnings)


Source = str | Path | Dataset


def read_header(src: Source) -> Dataset:
    """The dataset with pixel data deferred (files) or as given (datasets); :class:`AssemblyError` in
    one line for a file that is missing, unreadable or not DICOM."""
    if isinstance(src, Dataset):
        return src
    try:
        return pydicom.dcmread(src, defer_size=DEFER)
    except InvalidDicomError as e:
        raise NotDicomError(f"{src}: not a DICOM file ({e})") from None
    except OSError as e:
        raise AssemblyError(f"{src}: cannot be read ({e.strerror or e})") from None


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


@dataclass
class Plan:
    """Where every frame goes (everything but the pixels): what :func:`assemble` fills."""

    headers: list[Dataset]
    frames: _Table
    shape: tuple[int, ...]  # extra_shape + (t, z)
    flat: np.ndarray  # (n,) cell of each frame; −1: not in the volume (M0 frames)
    names: list[str]
    axis_values: list[np.ndarray]
    frame_s: np.ndarray  # (n,) seconds of each frame
    start: datetime | None
    time_source: str
    geometry: Geometry
    frame_shape: tuple[int, int]
    cell_values: dict[str, np.ndarray]
    m0_index: list[np.ndarray]  # per M0 volume: the frames (indices into ``frames``) of its slices
    m0_z: list[np.ndarray]
    asl_source: str
    notes: list[str]
    warnings: list[AssemblyWarning]
    asl_parameters: dict[str, tuple[Any, str]] = field(default_factory=dict)

    @property
    def times_s(self) -> np.ndarray:
        """Start of each time point (earliest frame), seconds."""
        nt = self.shape[-2]
        ok = self.flat >= 0
        t_of = np.unravel_index(self.flat[ok], self.shape)[-2]
        return timing.time_points(self.frame_s[ok], t_of, nt)


def series_times(headers: Sequence[Source]) -> np.ndarray | None:
    """Start (s, from the first) of each time point of a series, from the headers alone; None when the
    headers give no times. The same timing as :func:`assemble`; when the frames do not make a complete
    volume, the times of the time points that are there (by Temporal Position, else of the slice
    position with the most frames)."""
    try:
        p = plan(list(headers))
        t = p.times_s
    except (AssemblyError, ValueError, AttributeError, KeyError, TypeError):
        frames = _Table.concat([_any_table(read_header(h), k) for k, h in enumerate(headers)])
        s, _, _ = timing.choose(frames.times)
        if len(s) != len(frames):
            return None
        s = s + frames.offset_s
        if None not in frames.temporal:
            c, _ = codes(frames.temporal)
            t = timing.time_points(s, c, int(c.max()) + 1)
        else:
            where = [repr(np.round(p, 2).tolist()) for p in frames.position]
            best = max(set(where), key=where.count)
            t = np.unique(s[np.array([w == best for w in where])])
    t = t[~np.isnan(t)]
    return None if not len(t) else np.sort(t) - np.min(t)


def _named_table(ds: Dataset, source: int) -> _Table:
    """:func:`table`, its errors naming the file the frames came from."""
    try:
        return table(ds, source)
    except AssemblyError as e:
        name = getattr(ds, "filename", None)
        if name and str(name) not in str(e):
            raise AssemblyError(f"{name}: {e}") from None
        raise


def frame_diffusion(headers: Sequence[Source]) -> list[tuple[float, ...]]:
    """(b, gx, gy, gz) of every frame of a series as the assembly reads it (b = 0 where a diffusion
    series' frame has no b-value); [] when no frame has a b-value."""
    frames = _Table.concat([_any_table(read_header(h), k) for k, h in enumerate(headers)])
    _diffusion_b0(frames, [])
    return [tuple(d) for d in frames.extra.get("diffusion", []) if d is not None]


def _any_table(ds: Dataset, source: int) -> _Table:
    """:func:`table`, or for a header without geometry a row with its times only (position NaN)."""
    try:
        return table(ds, source)
    except (AssemblyError, ValueError, AttributeError, KeyError, TypeError):
        tpi = ds.get("TemporalPositionIdentifier")
        ipp = ds.get("ImagePositionPatient")
        pos = tuple(float(v) for v in ipp) if ipp is not None and len(ipp) == 3 else (np.nan,) * 3
        tp = int(tpi) if tpi is not None else None
        row = _Frame(source, 0, tp, pos, (), classic_times(ds), 1.0, 0.0, {})
        return _Table.from_rows([row])


def _check_headers(headers: list[Dataset]) -> None:
    series = {str(h.get("SeriesInstanceUID", "")) for h in headers}
    if len(series) > 1:
        raise AssemblyError(
            f"(0020,000E) SeriesInstanceUID: {len(series)} series mixed ({', '.join(sorted(series))})"
            "; assemble one series at a time"
        )
    if errors := concatenation_errors(headers):
        raise AssemblyError("; ".join(str(e) for e in errors))
    if len({h.SOPInstanceUID for h in headers}) != len(headers):
        raise AssemblyError("(0008,0018) SOPInstanceUID: the same instance given twice")
    ref = headers[0]
    for h in headers[1:]:
        for kw, tag in (("Rows", "(0028,0010)"), ("Columns", "(0028,0011)")):
            if h.get(kw) != ref.get(kw):
                raise AssemblyError(
                    f"{tag} {kw}: {h.SOPInstanceUID} has {h.get(kw)}, {ref.SOPInstanceUID} has {ref.get(kw)}"
                )


def plan(sources: Sequence[Source]) -> Plan:
    """Read the headers and place every frame; :class:`AssemblyError` names what does not fit."""
    if not sources:
        raise AssemblyError("no instances given")
    headers = [read_header(s) for s in sources]
    _check_headers(headers)
    frames = _Table.concat([_named_table(h, k) for k, h in enumerate(headers)])
    notes = list(frames.notes)
    warnings: list[AssemblyWarning] = []
    geometry, z_code, z_values = slices(frames, headers[0])
    n = len(frames)

    # Extra axes: attributes that take more than one value (dimension-indexed ones by their index).
    _diffusion_b0(frames, notes)
    extra_names: list[str] = []
    extra_codes: list[np.ndarray] = []
    extra_values: list[np.ndarray] = []
    cell_source: dict[str, list[Any]] = {}
    dims = [k for k in frames.extra if k.startswith("dim:") and k != "dim:trigger_delay_ms"]
    for k in [*EXTRA_KEYS, *dims]:
        vals = frames.extra[k]
        if k == "asl_context":
            continue  # the ASL design below
        if k == "trigger_delay_ms":
            index = frames.extra.get("dim:trigger_delay_ms")
            if index is None or len({repr(v) for v in distinct(index)}) < 2:
                continue  # a trigger delay that is no dimension: timing only
            c, _ = codes(index)
            extra_names.append(k)
            extra_codes.append(c)
            per = np.array([v if v is not None else np.nan for v in vals], float)
            extra_values.append(np.array([np.nanmin(per[c == j]) for j in range(int(c.max()) + 1)]))
            cell_source[k] = vals
            continue
        if len({repr(v) for v in distinct(vals)}) < 2:
            continue
        if None in vals:
            # an M0 volume inside an ASL series need not carry the label/control volumes' value (e.g. their
            # post-labelling delay): a placeholder, dropped with the M0 frames below
            ctx_raw = [str(c).upper() for c in frames.extra.get("asl_context") or []]
            if not ctx_raw or any(ctx_raw[i] != M0 for i, v in enumerate(vals) if v is None):
                raise AssemblyError(f"{_label(k)}: present in some frames only")
            vals = [v if v is not None else -1.0 for v in vals]
        c, v = codes(vals)
        extra_names.append(k[4:] if k.startswith("dim:") else k)
        extra_codes.append(c)
        extra_values.append(np.array(v))

    # Time axis.
    frame_s, time_kw, start = timing.choose(frames.times)
    frame_s = frame_s + frames.offset_s
    t_code = _time_codes(frames, headers, frame_s, z_code, extra_codes)
    t_code = _fold_temporal_index(frames, t_code, extra_names, extra_codes, notes)

    # ASL: label/control (and M0) from the header, a vendor marker, or the convention.
    ctx, asl_source = _asl_contexts(frames, headers, t_code, notes)
    m0_index: list[np.ndarray] = []
    m0_z: list[np.ndarray] = []
    keep = np.ones(n, bool)
    if ctx is not None:
        m0_mask = np.array(ctx, object) == M0
        extra_names, extra_codes, extra_values = _recode(~m0_mask, extra_names, extra_codes, extra_values)
        t_code, c_code, keep, m0_index = _asl_design(ctx, t_code, extra_codes, notes)
        m0_z = [z_code[ix] for ix in m0_index]
        extra_names.append("asl_context")
        extra_codes.append(c_code)
        extra_values.append(np.array(ASL_ORDER))

    nt = int(t_code[keep].max()) + 1 if keep.any() else 1
    shape = tuple(len(v) for v in extra_values) + (nt, len(z_values))
    flat = np.full(n, -1, np.int64)
    flat[keep] = np.ravel_multi_index(
        (*(c[keep] for c in extra_codes), t_code[keep], z_code[keep]), shape
    )
    axes = [*extra_values, np.arange(1, nt + 1), z_values]
    _grid_complete(flat[keep], shape, [*extra_names, "t", "z"], axes)
    warnings += _completeness(headers, frames)
    cell_values = {}
    for k, vals in cell_source.items():
        arr = np.full(int(np.prod(shape)), np.nan)
        arr[flat[keep]] = np.array([v if v is not None else np.nan for v in vals], float)[keep]
        cell_values[k] = arr.reshape(shape)
    frame_shape = _frame_shape(frames, headers)
    asl = _asl_parameters(headers, frames, keep) if ctx is not None or m0_index else {}
    return Plan(headers, frames, shape, flat, [*extra_names], extra_values, frame_s, start, time_kw,
                geometry, frame_shape, cell_values, m0_index, m0_z, asl_source, notes, warnings, asl)


def _label(k: str) -> str:
    return k[4:] if k.startswith("dim:") else k


def _diffusion_b0(frames: _Table, notes: list[str]) -> None:
    """A frame without a b-value in a series whose other frames have one is b = 0 (no direction)."""
    d = frames.extra["diffusion"]
    if any(v is not None for v in d) and None in d:
        frames.extra["diffusion"] = [v if v is not None else (0.0, 0.0, 0.0, 0.0) for v in d]
        notes.append("frames without (0018,9087) DiffusionBValue in a diffusion series read as b = 0")


def _time_codes(frames: _Table, headers: list[Dataset], frame_s: np.ndarray, z_code: np.ndarray,
                extra_codes: list[np.ndarray]) -> np.ndarray:
    """Temporal Position Index/Identifier when every frame has it, else the rank of time per cell."""
    n = len(frames)
    if None not in frames.temporal:
        return codes(frames.temporal)[0]
    if any(t is not None for t in frames.temporal):
        missing = [
            f"{headers[s].SOPInstanceUID} frame {i + 1}"
            for s, i, t in zip(frames.source.tolist(), frames.index.tolist(), frames.temporal, strict=True)
            if t is None
        ]
        raise AssemblyError(
            f"(0020,9128) TemporalPositionIndex missing in {len(missing)} frame(s): {', '.join(missing[:5])}"
        )
    if np.isnan(frame_s).any():
        return np.zeros(n, np.int64)
    # rank within each cell, by the image's time (a mosaic's slices share their image's rank)
    key = frame_s - frames.offset_s
    order = np.lexsort([frames.index, key, z_code, *extra_codes[::-1]])
    group = np.stack([*extra_codes, z_code], axis=1)[order]
    new = np.ones(len(order), bool)
    new[1:] = (group[1:] != group[:-1]).any(axis=1)
    starts = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
    t_code = np.empty(n, np.int64)
    t_code[order] = np.arange(n) - starts
    return t_code


def _fold_temporal_index(frames: _Table, t_code: np.ndarray, names: list[str], extra_codes: list[np.ndarray],
                         notes: list[str]) -> np.ndarray:
    """A Temporal Position Index that counts the values of an extra axis one to one *is* that axis."""
    if None in frames.temporal or int(t_code.max()) == 0:
        return t_code
    for name, c in zip(names, extra_codes, strict=True):
        pairs = set(zip(t_code.tolist(), c.tolist(), strict=True))
        if len(pairs) == len(set(t_code.tolist())) == len(set(c.tolist())):
            notes.append(f"(0020,9128) TemporalPositionIndex counts the {name} volumes one to one: "
                         f"read as the {name} axis, one time point")
            return np.zeros_like(t_code)
    return t_code


def _asl_contexts(frames: _Table, headers: list[Dataset], t_code: np.ndarray,
                  notes: list[str]) -> tuple[list[str] | None, str]:
    """Per frame ASL context (CONTROL, LABEL, M_ZERO_SCAN) and where it came from; None when no ASL."""
    ctx = frames.extra.get("asl_context") or []
    if ctx and set(ctx) == {M0}:
        notes.append("every frame's ASL context is M_ZERO_SCAN: an M0 series")
        return None, ""
    if any(c is not None for c in ctx) and not set(ASL_ORDER) <= set(ctx):
        notes.append(f"ASL context {sorted({str(c) for c in ctx})} in every frame: no label/control pairs")
        return None, ""
    if any(c is not None for c in ctx):
        if None in ctx:
            raise AssemblyError("(0018,9257) ASLContext: present in some frames only")
        from perfnode.dicom import vendors

        if any(h.get("SOPClassUID") for h in headers) and vendors.vendor(headers[0]) == "philips" and not any(
            _has_standard_asl(h) for h in headers
        ):
            return list(ctx), "private (2005,xx29) label type of 'Philips MR Imaging DD 005'"
        return list(ctx), "(0018,9257) ASLContext"
    if not frames.mosaics:
        return None, ""
    sequence = next(iter(frames.mosaics.values())).sequence
    nt = int(t_code.max()) + 1
    if nt < 2 or not any(w in sequence.lower() for w in ("pcasl", "pasl", "_asl", "casl")):
        if any(w in sequence.lower() for w in ("pcasl", "pasl", "casl")):
            notes.append(f"one volume of the Siemens ASL sequence {sequence!r}: no label/control pair "
                         "(an M0 calibration series when the protocol says so)")
        return None, ""
    by_t = ["LABEL" if t % 2 == 0 else "CONTROL" for t in range(nt)]
    notes.append(
        f"label/control alternate by instance, label first: the convention of the Siemens pCASL "
        f"sequence {sequence!r}, not stated in any standard attribute (no ASL Context)"
    )
    return [by_t[t] for t in t_code.tolist()], "convention (Siemens pCASL: label, control, … by instance)"


def _asl_parameters(headers: list[Dataset], frames: _Table, keep: np.ndarray) -> dict[str, tuple[Any, str]]:
    """Labelling type, labelling duration, post-labelling delay and background suppression where the
    header gives them (value, attribute it came from); absent keys: not in the header."""
    from perfnode.dicom.groups import functional_groups

    out: dict[str, tuple[Any, str]] = {}
    ds = headers[0]
    fg = functional_groups(ds)

    def first(*path: str) -> Any:
        v = fg.value(0, *path)
        return v if v is not None else ds.get(path[-1])

    kind = first("MRArterialSpinLabelingSequence", "ArterialSpinLabelingContrast")
    if kind:
        out["labelling_type"] = (str(kind).upper(), "(0018,9250) ArterialSpinLabelingContrast")
    dur = first("MRArterialSpinLabelingSequence", "ASLSlabSequence", "ASLPulseTrainDuration")
    if dur is not None and float(dur) > 0:
        # as qc.facts reads it: plausible durations are 0.1–5 s, so values ≥ 100 000 are µs, smaller ms
        ms = float(dur) / 1000 if float(dur) >= 100_000 else float(dur)
        out["labelling_duration_ms"] = (ms, "(0018,9258) ASLPulseTrainDuration")
    ti = [v for v, k in zip(frames.extra.get("inversion_time_ms", []), keep, strict=True)
          if v is not None and k]  # the label/control frames' (not the M0's)
    if ti:
        values = sorted(set(ti))
        out["post_labelling_delay_ms"] = (values[0] if len(values) == 1 else values,
                                          "(0018,9079) InversionTimes (read as the post-labelling delay)")
    desc = str(first("MRArterialSpinLabelingSequence", "ASLTechniqueDescription") or "")
    m = re.search(r"\b(P?CASL|PASL|FAIR|PICORE|EPISTAR)\b", desc.upper())
    if "labelling_type" not in out and m:
        out["labelling_type"] = (m.group(1) if m.group(1) in {"PCASL", "CASL"} else "PASL",
                                 f"(0018,9252) ASLTechniqueDescription {desc!r}")
    if re.search(r"BACKGROUND[ _-]?SUPPRESS|\bBGS\b", desc.upper()):
        out["background_suppression"] = (True, "(0018,9252) ASLTechniqueDescription")
    return out


def _has_standard_asl(h: Dataset) -> bool:
    from perfnode.dicom.groups import functional_groups

    return any(v is not None for v in functional_groups(h).column(
        "MRArterialSpinLabelingSequence", "ASLContext").values)


def _recode(keep: np.ndarray, names: list[str], codes_: list[np.ndarray],
            values: list[np.ndarray]) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """The extra axes over the frames ``keep`` only (M0 frames may carry values of their own)."""
    out: tuple[list[str], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for name, c, v in zip(names, codes_, values, strict=True):
        used = np.unique(c[keep])
        if len(used) < 2:
            continue
        remap = np.zeros(int(c.max()) + 1, np.int64)
        remap[used] = np.arange(len(used))
        out[0].append(name)
        out[1].append(remap[c])
        out[2].append(np.asarray(v)[used])
    return out


def _asl_design(ctx: list[str], t_code: np.ndarray, group_codes: list[np.ndarray],
                notes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """(t = repeat, context code, frames kept, M0 volumes) of a label/control series; pairs are formed in
    time order within each value of the other extra axes (e.g. per post-labelling delay)."""
    ctx_arr = np.array(ctx, object)
    unknown = sorted(set(ctx) - {*ASL_ORDER, M0})
    if unknown:
        raise AssemblyError(f"(0018,9257) ASLContext: {unknown} not CONTROL, LABEL or M_ZERO_SCAN")
    per_t: dict[int, set[str]] = {}
    for t, c in zip(t_code.tolist(), ctx, strict=True):
        per_t.setdefault(t, set()).add(c)
    m0_mask = ctx_arr == M0
    m0_index: list[np.ndarray] = []
    if all(len(s) == 1 for s in per_t.values()):  # one context per time point: alternating or blocks
        order = sorted(per_t)
        seq = [next(iter(per_t[t])) for t in order]
        first: dict[int, int] = {}
        for i, t in enumerate(t_code.tolist()):
            first.setdefault(t, i)
        group = {t: tuple(int(c[first[t]]) for c in group_codes) for t in order}
        repeat: dict[int, int] = {}
        controls: list[int] = []
        for key in sorted(set(group.values())):
            ts = [t for t in order if group[t] == key]
            con = [t for t in ts if per_t[t] == {"CONTROL"}]
            lab = [t for t in ts if per_t[t] == {"LABEL"}]
            if len(con) != len(lab):
                raise AssemblyError(
                    f"(0018,9257) ASLContext: {len(con)} CONTROL and {len(lab)} LABEL volumes "
                    "cannot be paired" + (f" (at {key} of the other axes)" if key else "")
                )
            repeat |= {t: r for r, t in enumerate(con)} | {t: r for r, t in enumerate(lab)}
            controls += con
        new_t = np.array([repeat.get(t, 0) for t in t_code.tolist()], np.int64)
        for t in order:
            if per_t[t] == {M0}:
                m0_index.append(np.flatnonzero((t_code == t) & m0_mask))
        design = "alternating" if _alternates(seq) else "in blocks"
        notes.append(f"ASL: {len(controls)} control/label pairs ({design}), paired in order"
                     + (f"; {len(m0_index)} M0 volume(s) inside the series" if m0_index else ""))
    else:  # control and label share time points: the context is an axis of its own
        new_t = t_code.copy()
        for t in sorted({t for t, c in zip(t_code.tolist(), ctx, strict=True) if c == M0}):
            m0_index.append(np.flatnonzero((t_code == t) & m0_mask))
        if m0_index:  # renumber the remaining time points densely
            kept_t = sorted(set(t_code[~m0_mask].tolist()))
            remap = {t: i for i, t in enumerate(kept_t)}
            new_t = np.array([remap.get(t, 0) for t in t_code.tolist()], np.int64)
    c_code = np.array([ASL_ORDER.index(c) if c in ASL_ORDER else 0 for c in ctx], np.int64)
    return new_t, c_code, ~m0_mask, m0_index


def _alternates(seq: list[str]) -> bool:
    s = [c for c in seq if c != M0]
    return all(a != b for a, b in zip(s[:-1], s[1:], strict=True))


def _grid_complete(flat: np.ndarray, shape: tuple[int, ...], names: list[str], axes: list[Any]) -> None:
    counts = np.bincount(flat, minlength=int(np.prod(shape)))
    if (counts > 1).any():
        cells = [_cell(names, axes, np.unravel_index(i, shape)) for i in np.flatnonzero(counts > 1)[:5]]
        raise AssemblyError(f"{int((counts > 1).sum())} duplicated frame cell(s): {'; '.join(cells)}")
    if (counts == 0).any():
        cells = [_cell(names, axes, np.unravel_index(i, shape)) for i in np.flatnonzero(counts == 0)[:5]]
        raise AssemblyError(
            f"{int((counts == 0).sum())} missing frame cell(s) of the "
            f"{' × '.join(map(str, shape))} grid: {'; '.join(cells)}"
        )


def _completeness(headers: list[Dataset], frames: _Table) -> list[AssemblyWarning]:
    """Fewer temporal positions present than Number of Temporal Positions (0020,0105) announces."""
    declared = [int(h.NumberOfTemporalPositions) for h in headers
                if str(h.get("NumberOfTemporalPositions", "") or "").strip().isdigit()]
    if not declared or None in frames.temporal:
        return []
    want, have = max(declared), len(set(frames.temporal))
    if have >= want:
        return []
    missing = sorted(set(range(1, want + 1)) - set(frames.temporal))
    shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
    return [AssemblyWarning(
        "incomplete", "NumberOfTemporalPositions",
        f"{have} of {want} temporal positions (0020,0105) present (missing: {shown})",
    )]


def _frame_shape(frames: _Table, headers: list[Dataset]) -> tuple[int, int]:
    if frames.mosaics:
        shapes = {(m.tile_rows, m.tile_cols) for m in frames.mosaics.values()}
        if len(shapes) > 1 or len(frames.mosaics) != len(headers):
            raise AssemblyError("Siemens MOSAIC: images with different slice matrices in one series")
        return next(iter(shapes))
    return int(headers[0].Rows), int(headers[0].Columns)


def assemble(sources: Iterable[Source]) -> Volume4D:
    """One series → :class:`Volume4D`; :class:`AssemblyError` names what is missing or inconsistent."""
    srcs = list(sources)
    p = plan(srcs)
    headers, frames, shape, flat = p.headers, p.frames, p.shape, p.flat
    rows, cols = p.frame_shape
    size = int(np.prod(shape))
    data = np.empty((*shape, rows, cols), np.float32)
    out = data.reshape(-1, rows, cols)
    m0 = np.empty((len(p.m0_index), shape[-1], rows, cols), np.float32) if p.m0_index else None
    m0_slot = np.full(len(frames), -1, np.int64)
    for v, (ix, zc) in enumerate(zip(p.m0_index, p.m0_z, strict=True)):
        m0_slot[ix] = v * shape[-1] + zc
    for k in range(len(headers)):
        idx = np.flatnonzero(frames.source == k)
        if not len(idx):
            continue
        try:
            px = _pixels(headers[k], srcs[k], frames.mosaics.get(k))
            inside = idx[flat[idx] >= 0]
            _rescale(px, out, frames.index[inside], flat[inside], frames.slope[inside],
                     frames.intercept[inside])
            m0_here = idx[m0_slot[idx] >= 0]
            if m0 is not None and len(m0_here):
                _rescale(px, m0.reshape(-1, rows, cols), frames.index[m0_here], m0_slot[m0_here],
                         frames.slope[m0_here], frames.intercept[m0_here])
        except (ValueError, OSError, AttributeError, NotImplementedError, RuntimeError) as e:
            where = getattr(headers[k], "filename", None) or headers[k].get("SOPInstanceUID", "?")
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise AssemblyError(f"{where}: (7FE0,0010) PixelData cannot be read: {first}") from None
        del px
    ok = flat >= 0
    frame_times = np.full(size, np.nan)
    frame_times[flat[ok]] = p.frame_s[ok]
    source_frames = np.zeros((size, 2), np.int64)
    source_frames[flat[ok]] = np.stack([frames.source[ok], frames.index[ok] + 1], axis=1)
    m0_times = (np.array([float(np.nanmin(p.frame_s[ix])) for ix in p.m0_index]) if p.m0_index else None)
    return Volume4D(
        data=data,
        times_s=p.times_s,
        frame_times_s=frame_times.reshape(shape),
        start=p.start,
        time_source=p.time_source,
        geometry=p.geometry,
        extra_dims={k: np.array(v) for k, v in zip(p.names, p.axis_values, strict=True)},
        sop_instance_uids=[str(h.SOPInstanceUID) for h in headers],
        source_frames=source_frames.reshape(*shape, 2),
        series_instance_uid=str(headers[0].get("SeriesInstanceUID", "")),
        sop_class_uid=str(headers[0].SOPClassUID),
        axes=(*p.names, "t", "z"),
        cell_values=p.cell_values,
        m0=m0,
        m0_times_s=m0_times,
        asl_context_source=p.asl_source,
        asl_parameters=p.asl_parameters,
        notes=p.notes,
        warnings=p.warnings,
    )


def _pixels(ds: Dataset, src: Source, mosaic: Any = None) -> np.ndarray | _FileFrames:
    """All frames ``(n, rows, cols)`` of one source, decoded once (read in chunks when uncompressed)."""
    n = int(ds.get("NumberOfFrames") or 1)
    shape = (n, int(ds.Rows), int(ds.Columns))
    if mosaic is not None:
        tiles: np.ndarray = mosaic.tiles(ds.pixel_array.reshape(shape[1:]))
        return tiles
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
            if f.readinto(view.data.cast("B")) != view.nbytes:
                raise ValueError(f"{self.path}: pixel data shorter than the header says")
        return view


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


def _cell(names: list[str], axes: list[Any], idx: tuple[Any, ...]) -> str:
    parts = []
    for n, a, i in zip(names, axes, idx, strict=True):
        v = a[int(i)]
        v = v.tolist() if hasattr(v, "tolist") else v
        v = tuple(v) if isinstance(v, list) else v
        parts.append(f"z={v} mm" if n == "z" else f"{n}={v}")
    return ", ".join(parts)


__all__ = ["AssemblyError", "AssemblyWarning", "Plan", "Volume4D", "assemble", "expand", "group_series",
           "median", "plan", "read_header", "series_times"]
