"""Numpy maps + provenance → DICOM Parametric Maps (highdicom), one series per analysis.

``build_parametric_maps(sources, {"cbf": cbf, "mtt": mtt, ...}, uid_seed=...)`` returns one
:class:`highdicom.pm.ParametricMap` per quantity, all in one series, float32, on the source's grid
(same frame of reference, orientation, per-slice positions, pixel spacing), each frame referencing
the source frames at its position, with a Real World Value Mapping carrying the quantity code and
UCUM unit from :mod:`perfnode.dicom.codes`, and the provenance written by
:mod:`perfnode.dicom.provenance`. UIDs derive from ``uid_seed`` so a re-run gives the same objects.

Map arrays are ``(z, y, x)`` with ``z`` in the order of :attr:`MapGeometry.positions`: slices sorted
ascending along the slice normal (row cosine × column cosine), as :meth:`MapGeometry.from_datasets`
finds them.

The map's geometry comes from the assembled volume (:meth:`MapSource.from_volume`: one orientation,
pixel spacing and one position per slice, the frame of reference), never from the raw source headers:
vendors put Pixel Measures and Plane Orientation in the shared or in the per-frame functional groups,
tile slices into mosaics, and so on. The volume's geometry is checked against every source frame
(orientation within :data:`ORIENTATION_TOLERANCE`, each referenced frame's position within
:data:`POSITION_TOLERANCE_MM` of its slice, pixel spacing within :data:`SPACING_RTOL`); only a real
inconsistency (slices that change orientation mid-series, a frame off its slice) is refused, with a
:class:`GeometryError` naming the frame and the attribute. highdicom is handed a clean one-frame
stand-in of the source carrying that geometry (patient, study, equipment and frame of reference copied
from the source), so its own checks see one consistent grid whatever the vendor's layout.

Extending the writer (e.g. integer maps with a Real World Value Mapping slope): only the per-quantity
step of :func:`build_parametric_maps` (pixel array and mapping → ``hd.pm.ParametricMap``) changes; the
grid (:class:`MapSource`), the per-slice references and the provenance are shared by every variant.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
from highdicom._standard_utils import is_multiframe_image
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from numpy.typing import NDArray
from pydicom import config
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_data_element
from pydicom.sr.codedict import codes as sr_codes
from pydicom.tag import Tag
from pydicom.uid import generate_uid

import perfnode
from perfnode.dicom.codes import PRIVATE_SCHEME, QUANTITIES, Quantity, check_units, quantity
from perfnode.dicom.findings import Finding
from perfnode.dicom.groups import functional_groups
from perfnode.dicom.provenance import make_provenance, summary, write_provenance

PARAMETRIC_MAP_STORAGE = "1.2.840.10008.5.1.4.1.1.30"
_POSITION_TOLERANCE_MM = 1e-3
#: How far a source frame's (0020,0032) ImagePositionPatient may lie from its slice of the volume, mm.
POSITION_TOLERANCE_MM = 0.01
#: Largest difference of a direction cosine of (0020,0037) ImageOrientationPatient from the volume's.
ORIENTATION_TOLERANCE = 1e-4
#: Largest relative difference of (0028,0030) PixelSpacing from the volume's.
SPACING_RTOL = 1e-4


class GeometryError(ValueError):
    """The source frames do not share the one grid a map needs; the message names frame and attribute."""


def derive_uid(seed: str, *parts: str) -> str:
    """A UID under perfnode's root that depends only on ``seed`` and ``parts`` (re-runs match)."""
    if not seed:
        raise ValueError("uid_seed must be a non-empty string (e.g. job id + source Series Instance UID)")
    return generate_uid(prefix=perfnode.UID_ROOT, entropy_srcs=[seed, *parts])


def _frame_geometry(ds: Dataset) -> list[tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...], Any]]:
    """(position, orientation, pixel spacing, slice thickness) of every frame of ``ds``."""
    if "PerFrameFunctionalGroupsSequence" not in ds:
        for kw, tag in (
            ("ImagePositionPatient", "(0020,0032)"),
            ("ImageOrientationPatient", "(0020,0037)"),
            ("PixelSpacing", "(0028,0030)"),
        ):
            if kw not in ds:
                raise ValueError(
                    f"{tag} {kw} missing in {ds.get('SOPInstanceUID', '?')}: a map needs the "
                    f"source geometry (PS3.3 C.7.6.2 Image Plane Module)"
                )
        return [
            (
                tuple(map(float, ds.ImagePositionPatient)),
                tuple(map(float, ds.ImageOrientationPatient)),
                tuple(map(float, ds.PixelSpacing)),
                ds.get("SliceThickness"),
            )
        ]
    shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    out = []
    for i, frame in enumerate(ds.PerFrameFunctionalGroupsSequence, start=1):

        def item(seq: str, frame: Dataset = frame, i: int = i) -> Dataset:
            found: Dataset
            if seq in frame:
                found = frame[seq][0]
                return found
            if seq in shared:
                found = shared[seq][0]
                return found
            raise ValueError(
                f"frame {i} of {ds.get('SOPInstanceUID', '?')}: {seq} is in neither the "
                f"per-frame nor the shared functional groups (PS3.3 C.7.6.16.2)"
            )

        pos = item("PlanePositionSequence").ImagePositionPatient
        ori = item("PlaneOrientationSequence").ImageOrientationPatient
        meas = item("PixelMeasuresSequence")
        out.append(
            (
                tuple(map(float, pos)),
                tuple(map(float, ori)),
                tuple(map(float, meas.PixelSpacing)),
                meas.get("SliceThickness"),
            )
        )
    return out


@dataclass(frozen=True)
class MapGeometry:
    """The grid maps live on: the source's frame of reference, orientation, slices and spacing."""

    frame_of_reference_uid: str
    orientation: tuple[float, ...]  # (row x, y, z, column x, y, z) direction cosines
    positions: tuple[tuple[float, ...], ...]  # (x, y, z) mm, one per slice, ascending along the normal
    pixel_spacing: tuple[float, float]  # (between rows, between columns), mm
    rows: int
    columns: int
    slice_thickness: float | None = None

    @property
    def normal(self) -> np.ndarray:
        o = np.asarray(self.orientation, dtype=float)
        return np.cross(o[:3], o[3:])

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.positions), self.rows, self.columns

    @property
    def spacing_between_slices(self) -> float | None:
        if len(self.positions) < 2:
            return None
        d = np.diff(np.asarray(self.positions) @ self.normal)
        return float(np.round(np.median(d), 6))

    @classmethod
    def from_geometry(cls, geometry: Any, rows: int, columns: int) -> MapGeometry:
        """From any object with ``image_orientation``, ``positions``, ``pixel_spacing``,
        ``slice_thickness`` and ``frame_of_reference_uid`` (e.g. ``perfnode.dicom.frames.Geometry``)."""
        if isinstance(geometry, MapGeometry):
            return geometry
        ori = tuple(float(v) for v in np.asarray(geometry.image_orientation).ravel())
        positions = tuple(tuple(float(v) for v in p) for p in np.asarray(geometry.positions).reshape(-1, 3))
        o = np.asarray(ori)
        dist = np.asarray(positions) @ np.cross(o[:3], o[3:])
        if np.any(np.diff(dist) <= 0):
            raise ValueError(
                "slice positions must be distinct and ascending along the slice normal "
                "(row cosine x column cosine), in the z order of the maps"
            )
        if not geometry.frame_of_reference_uid:
            raise ValueError(
                "(0020,0052) FrameOfReferenceUID missing: maps cannot share the source's "
                "frame of reference (PS3.3 C.7.4.1)"
            )
        spacing = [float(v) for v in geometry.pixel_spacing]
        thickness = geometry.slice_thickness
        return cls(
            str(geometry.frame_of_reference_uid),
            ori,
            positions,
            (spacing[0], spacing[1]),
            int(rows),
            int(columns),
            float(thickness) if thickness is not None else None,
        )

    @classmethod
    def from_datasets(cls, datasets: Sequence[Dataset]) -> MapGeometry:
        """The distinct slice positions of classic images or multi-frame objects (all time points)."""
        if not datasets:
            raise ValueError("no source datasets")
        frames = [f for ds in datasets for f in _frame_geometry(ds)]
        first = datasets[0]
        ori = frames[0][1]
        if any(not np.allclose(f[1], ori, atol=1e-4) for f in frames):
            raise ValueError(
                "(0020,0037) ImageOrientationPatient differs between source frames; "
                "maps need one orientation for the whole series"
            )
        spacing = frames[0][2]
        if any(not np.allclose(f[2], spacing, rtol=1e-4) for f in frames):
            raise ValueError("(0028,0030) PixelSpacing differs between source frames")
        for ds in datasets:
            if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
                raise ValueError(
                    f"(0028,0010/0011) Rows/Columns {ds.Rows}x{ds.Columns} differ from "
                    f"{first.Rows}x{first.Columns} in {ds.get('SOPInstanceUID', '?')}"
                )
        for_uid = first.get("FrameOfReferenceUID")
        if not for_uid:
            raise ValueError(
                "(0020,0052) FrameOfReferenceUID missing: maps cannot share the source's "
                "frame of reference (PS3.3 C.7.4.1)"
            )
        o = np.asarray(ori)
        normal = np.cross(o[:3], o[3:])
        pos = np.asarray([f[0] for f in frames])
        dist = pos @ normal
        order = np.argsort(dist, kind="stable")
        unique: list[tuple[float, ...]] = []
        last = None
        for i in order:
            if last is None or abs(dist[i] - last) > _POSITION_TOLERANCE_MM:
                unique.append(tuple(float(v) for v in pos[i]))
                last = dist[i]
        thickness = frames[0][3]
        return cls(
            str(for_uid),
            tuple(float(v) for v in ori),
            tuple(unique),
            (spacing[0], spacing[1]),
            int(first.Rows),
            int(first.Columns),
            float(thickness) if thickness not in (None, "") else None,
        )


def _window(values: np.ndarray) -> tuple[float, float]:
    """Window centre/width covering the 2nd–98th percentile of the finite values."""
    if values.size == 0:
        return 0.5, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [2, 98]))
    width = hi - lo
    if not width > 0:
        width = max(abs(hi) * 1e-3, 1e-6)
    return (lo + hi) / 2, width


def _content_label(q: Quantity) -> str:
    """Content Label (CS): upper case, digits and underscores, no leading/trailing underscore."""
    label = re.sub(r"[^A-Z0-9]+", "_", q.display.upper().replace("*", "STAR")).strip("_")
    return label[:16].rstrip("_") or "MAP"


def _mapping(q: Quantity, finite: np.ndarray) -> hd.pm.RealWorldValueMapping:
    # The range must be finite: NaN voxels (failed fits) lie outside it and map to nothing.
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return hd.pm.RealWorldValueMapping(
        lut_label=q.display[:16],
        lut_explanation=f"{q.code.meaning} ({q.unit.value})"[:64],
        unit=q.unit,
        value_range=(vmin, vmax),
        slope=1.0,
        intercept=0.0,
        quantity_definition=q.code,
    )


_PURPOSE = hd.sr.CodedConcept.from_code(sr_codes.cid7202.SourceImageForImageProcessingOperation)
_DERIVATION = hd.sr.CodedConcept.from_code(sr_codes.DCM.UnspecifiedMethodOfCalculation)
_FRAME_DATA = {0x52009230, 0x7FE00008, 0x7FE00009, 0x7FE00010}  # per-frame groups, pixel data


def _el(tag: int, vr: str, value: Any) -> DataElement:
    """A data element built without re-validating values copied from valid sources (thousands per map)."""
    return DataElement(tag, vr, value, validation_mode=config.IGNORE)


def _instance_ref(ds: Dataset) -> Dataset:
    item = Dataset()
    item.add(_el(0x00081150, "UI", ds[0x00080016].value))  # ReferencedSOPClassUID ← SOPClassUID
    item.add(_el(0x00081155, "UI", ds[0x00080018].value))  # ReferencedSOPInstanceUID ← SOPInstanceUID
    return item


def _source_item(ds: Dataset, frame_number: int | None, preserved: bool = True) -> Dataset:
    item = _instance_ref(ds)
    if frame_number is not None:
        item.add(_el(0x00081160, "IS", str(frame_number)))  # ReferencedFrameNumber
    item.add(_el(0x0040A170, "SQ", [_PURPOSE]))  # PurposeOfReferenceCodeSequence
    # SpatialLocationsPreserved: NO for a slice cut out of a mosaic (the pixel grid is not the source's)
    item.add(_el(0x0028135A, "CS", "YES" if preserved else "NO"))
    return item


def _encoded_once(tag: int, items: list[Dataset]) -> RawDataElement:
    """A sequence encoded once (Explicit VR Little Endian) for reuse in every map of the analysis.

    Writing the same 1200 source references into each map is most of the encoding time; a raw element
    is copied as bytes. Its item is marked Explicit VR Little Endian, so pydicom decodes and re-encodes
    it whenever the object is written in another transfer syntax, and on attribute access.
    """
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, DataElement(tag, "SQ", items))
    data = fp.getvalue()  # tag (4) + "SQ" + 2 reserved + length (4) + items
    return RawDataElement(Tag(tag), "SQ", len(data) - 12, data[12:], 0, False, True)


@dataclass
class _Sources:
    """What every map of one analysis shares: per-slice source references and highdicom's inputs."""

    derivation: list[RawDataElement]  # per slice: the Derivation Image Sequence, encoded once
    proxy: Dataset  # the first source, cut to one frame: highdicom reads patient/study/FoR from it
    referenced_series: list[Dataset]  # Referenced Series Sequence (Common Instance Reference Module)


def _prepare_sources(sources: Sequence[Dataset], geometry: MapGeometry, all_time_points: bool) -> _Sources:
    """Match every source frame to its slice once (highdicom would redo it, slowly, per map)."""
    sources = list(sources)
    if not sources:
        raise ValueError("no source datasets: a parametric map must reference what it was derived from")
    positions = np.asarray(geometry.positions)
    per_slice: list[list[Dataset]] = [[] for _ in geometry.positions]
    for ds in sources:
        multi = "PerFrameFunctionalGroupsSequence" in ds
        for n, (pos, *_rest) in enumerate(_frame_geometry(ds), start=1):
            d = np.linalg.norm(positions - np.asarray(pos), axis=1)
            k = int(np.argmin(d))
            if d[k] <= 1e-2 and (all_time_points or not per_slice[k]):  # frames off the grid: not derivations
                per_slice[k].append(_source_item(ds, n if multi else None))
    derivation = []
    for items in per_slice:
        item = Dataset()
        item.DerivationCodeSequence = [_DERIVATION]
        item.SourceImageSequence = items
        derivation.append(_encoded_once(0x00089124, [item]))
    return _Sources(derivation, _proxy(sources[0], geometry), _referenced_series(sources))


def _referenced_series(sources: Sequence[Dataset]) -> list[Dataset]:
    by_series: dict[str, list[Dataset]] = {}
    for ds in sources:
        by_series.setdefault(str(ds.SeriesInstanceUID), []).append(_instance_ref(ds))
    referenced_series = []
    for uid, refs in by_series.items():
        item = Dataset()
        item.SeriesInstanceUID = uid
        item.ReferencedInstanceSequence = refs
        referenced_series.append(item)
    return referenced_series


_GEOMETRY_TAGS = {0x00200032, 0x00200037, 0x00280030, 0x00180050, 0x00180088, 0x00280010, 0x00280011,
                  0x00280008, 0x52009229}


def _proxy(first: Dataset, geometry: MapGeometry) -> Dataset:
    """A one-frame stand-in of the source for highdicom: the source's patient, study, equipment and frame of
    reference, with the map's grid as its geometry (Enhanced: in the shared functional groups, where
    highdicom looks for it; classic: the Image Plane attributes), whatever layout the source used."""
    proxy = Dataset()
    for elem in first:
        if elem.tag not in _FRAME_DATA and elem.tag not in _GEOMETRY_TAGS and elem.tag.group != 0x0002:
            proxy.add(elem)
    proxy.FrameOfReferenceUID = geometry.frame_of_reference_uid
    proxy.Rows, proxy.Columns = geometry.rows, geometry.columns
    spacing = [float(v) for v in geometry.pixel_spacing]
    if is_multiframe_image(first):
        measures = Dataset()
        measures.PixelSpacing = spacing
        if geometry.slice_thickness is not None:
            measures.SliceThickness = geometry.slice_thickness
        orientation = Dataset()
        orientation.ImageOrientationPatient = list(geometry.orientation)
        shared = Dataset()
        shared.PixelMeasuresSequence = [measures]
        shared.PlaneOrientationSequence = [orientation]
        position = Dataset()
        position.ImagePositionPatient = list(geometry.positions[0])
        frame = Dataset()
        frame.PlanePositionSequence = [position]
        proxy.SharedFunctionalGroupsSequence = [shared]
        proxy.PerFrameFunctionalGroupsSequence = [frame]
        proxy.NumberOfFrames = 1
    else:
        proxy.ImageOrientationPatient = list(geometry.orientation)
        proxy.ImagePositionPatient = list(geometry.positions[0])
        proxy.PixelSpacing = spacing
        if geometry.slice_thickness is not None:
            proxy.SliceThickness = geometry.slice_thickness
    return proxy


@dataclass
class MapSource:
    """The analysed series as the maps reference it: the grid (from the assembled volume) and, per slice,
    the source frames at that slice (every time point), checked against the source headers."""

    geometry: MapGeometry
    #: per slice: (source header, 1-based frame number or None for a single-frame image, location preserved)
    slices: list[list[tuple[Dataset, int | None, bool]]]

    @classmethod
    def from_volume(cls, volume: Any, headers: Sequence[Dataset]) -> MapSource:
        """From an assembled :class:`perfnode.dicom.frames.Volume4D` and the headers it was assembled from.

        Raises :class:`GeometryError` when a source frame contradicts the volume's grid (see the
        module docstring for the tolerances)."""
        rows, cols = (int(v) for v in volume.data.shape[-2:])
        geometry = MapGeometry.from_geometry(volume.geometry, rows, cols)
        by_uid = {str(h.SOPInstanceUID): h for h in headers}
        uids = [str(u) for u in volume.sop_instance_uids]
        missing = [u for u in uids if u not in by_uid]
        if missing:
            raise ValueError(f"(0008,0018) SOPInstanceUID {missing[0]}: assembled but not among the headers "
                             "given")
        nz = geometry.shape[0]
        refs = np.asarray(volume.source_frames).reshape(-1, nz, 2)
        slices: list[list[tuple[Dataset, int | None, bool]]] = [[] for _ in range(nz)]
        wanted: dict[int, dict[int, int]] = {}  # source index → frame number → slice
        for k in range(nz):
            pairs = {(int(u), int(f)) for u, f in refs[:, k] if u >= 0 and f >= 1}
            for u, f in sorted(pairs):
                wanted.setdefault(u, {})[f] = k
        for u, frames_at in sorted(wanted.items()):
            ds = by_uid[uids[u]]
            preserved = _check_frames(ds, geometry, frames_at)
            multi = is_multiframe_image(ds)
            for f, k in sorted(frames_at.items()):
                slices[k].append((ds, f if multi else None, preserved))
        return cls(geometry, slices)

    def prepare(self, headers: Sequence[Dataset], all_time_points: bool = True) -> _Sources:
        derivation = []
        for refs in self.slices:
            item = Dataset()
            item.DerivationCodeSequence = [_DERIVATION]
            item.SourceImageSequence = [_source_item(ds, f, ok) for ds, f, ok in
                                        (refs if all_time_points else refs[:1])]
            derivation.append(_encoded_once(0x00089124, [item]))
        used = {id(ds): ds for refs in self.slices for ds, _, _ in refs}
        sources = list(used.values()) or list(headers)
        return _Sources(derivation, _proxy(headers[0], self.geometry), _referenced_series(sources))


def _frame_planes(ds: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame of ``ds``: orientation (n, 6), position (n, 3), pixel spacing (n, 2); NaN where absent."""
    if 0x52009230 in ds:
        fg = functional_groups(ds)

        def col(path: tuple[str, str], width: int) -> np.ndarray:
            values = [np.full(width, np.nan) if v is None else np.asarray(v, float)
                      for v in fg.column(*path).values]
            per_frame: NDArray[np.float64] = np.stack(values)[fg.column(*path).codes]
            return per_frame

        return (col(("PlaneOrientationSequence", "ImageOrientationPatient"), 6),
                col(("PlanePositionSequence", "ImagePositionPatient"), 3),
                col(("PixelMeasuresSequence", "PixelSpacing"), 2))

    def top(kw: str, width: int) -> np.ndarray:
        v = ds.get(kw)
        return np.full((1, width), np.nan) if v is None else np.asarray(v, float).reshape(1, width)

    return top("ImageOrientationPatient", 6), top("ImagePositionPatient", 3), top("PixelSpacing", 2)


def _check_frames(ds: Dataset, geometry: MapGeometry, frames_at: Mapping[int, int]) -> bool:
    """Check the frames of ``ds`` against the map grid; False when its pixel grid is not the map's (a mosaic
    tile: orientation checked, positions and spacing not comparable)."""
    uid = ds.get("SOPInstanceUID", "?")
    ori, pos, spacing = _frame_planes(ds)
    diff = np.abs(ori - np.asarray(geometry.orientation)).max(axis=1)
    bad = np.flatnonzero(~(diff <= ORIENTATION_TOLERANCE))
    if bad.size:
        n = int(bad[0])
        raise GeometryError(
            f"(0020,0037) ImageOrientationPatient of frame {n + 1} of {uid} is "
            f"{[round(float(v), 6) for v in ori[n]]}, the series' is {list(geometry.orientation)} "
            f"(tolerance {ORIENTATION_TOLERANCE:g}): slices that change orientation mid-series cannot share "
            "one map grid")
    same_grid = (int(ds.get("Rows", 0)), int(ds.get("Columns", 0))) == (geometry.rows, geometry.columns)
    if not same_grid:
        return False
    rel = np.abs(spacing / np.asarray(geometry.pixel_spacing) - 1.0).max(axis=1)
    bad = np.flatnonzero(~(rel <= SPACING_RTOL))
    if bad.size:
        n = int(bad[0])
        raise GeometryError(f"(0028,0030) PixelSpacing of frame {n + 1} of {uid} is {spacing[n].tolist()}, "
                            f"the series' is {list(geometry.pixel_spacing)} (tolerance {SPACING_RTOL:g} "
                            "relative)")
    target = np.asarray(geometry.positions)
    for f, k in frames_at.items():
        d = float(np.linalg.norm(pos[f - 1] - target[k]))
        if not d <= POSITION_TOLERANCE_MM:
            raise GeometryError(
                f"(0020,0032) ImagePositionPatient of frame {f} of {uid} is {pos[f - 1].tolist()}, "
                f"{d:.3g} mm from slice {k + 1} of the assembled volume at {list(target[k])} (tolerance "
                f"{POSITION_TOLERANCE_MM:g} mm)")
    return True


def _add_frame_references(pm: Dataset, derivation: list[RawDataElement]) -> None:
    """Per frame: all source frames at its slice (every time point), whatever order highdicom chose.

    The sequences are pre-encoded bytes, so the object is marked as Explicit VR Little Endian (after
    resolving ambiguous VRs): written so, the bytes are copied; written in another transfer syntax,
    pydicom decodes and re-encodes them.
    """
    correct_ambiguous_vr(pm, True)
    slice_of_frame = np.argsort(frame_order(pm)[0])
    for frame, k in zip(pm.PerFrameFunctionalGroupsSequence, slice_of_frame, strict=True):
        frame[0x00089124] = derivation[k]  # DerivationImageSequence
        frame.set_original_encoding(False, True, frame._character_set)
    pm.set_original_encoding(False, True, pm._character_set)


def build_parametric_maps(
    sources: Sequence[Dataset],
    maps: Mapping[str, np.ndarray],
    *,
    uid_seed: str,
    geometry: MapGeometry | Any | None = None,
    source: MapSource | None = None,
    provenance: Mapping[str, Any] | None = None,
    findings: Sequence[Finding] = (),
    units: Mapping[str, str] | None = None,
    series_number: int | None = None,
    series_description: str | None = None,
    device_serial_number: str = "perfnode",
    content_qualification: str = "RESEARCH",
    reference_all_time_points: bool = True,
) -> list[hd.pm.ParametricMap]:
    """One Parametric Map per quantity in ``maps``, all in one new series of the source's study.

    ``sources``: the analysed series (classic images, or its multi-frame object(s)); ``source``: the
    grid and per-slice references from the assembled volume (:meth:`MapSource.from_volume`, what the
    pipeline uses); else ``geometry``: a :class:`MapGeometry` or ``Volume4D.geometry`` (default: found
    from ``sources``) with references matched by position; ``maps``:
    ``{quantity key or alias: (z, y, x) array}`` in the unit of :mod:`perfnode.dicom.codes`
    (``units``, e.g. ``FitResult.units``, is checked against it when given); ``uid_seed``: a
    string fixed for this analysis (e.g. job id + source Series Instance UID); ``provenance``:
    ``FitResult.provenance`` plus anything else worth recording; ``findings``: QC findings.
    Each frame references every source frame at its slice (all time points); with
    ``reference_all_time_points=False`` only the first one given (smaller, faster to encode).
    """
    if not maps:
        raise ValueError("no maps to encode")
    if units is not None:
        check_units({k: v for k, v in units.items() if k in maps})
    if not sources:
        raise ValueError("no source datasets: a parametric map must reference what it was derived from")
    if source is not None:
        geometry = source.geometry
        shared_sources = source.prepare(sources, reference_all_time_points)
    else:
        if geometry is None:
            geometry = MapGeometry.from_datasets(list(sources))
        elif not isinstance(geometry, MapGeometry):
            geometry = MapGeometry.from_geometry(geometry, int(sources[0].Rows), int(sources[0].Columns))
        shared_sources = _prepare_sources(sources, geometry, reference_all_time_points)
    src = shared_sources.proxy
    series_uid = derive_uid(uid_seed, "pm-series")
    if series_number is None:
        series_number = (int(src.get("SeriesNumber") or 0) % 100000) + 1000
    record = make_provenance(provenance, findings=findings)
    record.setdefault(
        "source",
        {"study_instance_uid": str(src.StudyInstanceUID), "series_instance_uid": str(src.SeriesInstanceUID)},
    )
    line = summary(record)

    orientation = hd.PlaneOrientationSequence(hd.CoordinateSystemNames.PATIENT, list(geometry.orientation))
    positions = [
        hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, list(p)) for p in geometry.positions
    ]
    measures = hd.PixelMeasuresSequence(
        list(geometry.pixel_spacing), geometry.slice_thickness, geometry.spacing_between_slices
    )
    equipment = hd.ContributingEquipment(
        manufacturer=perfnode.SOFTWARE_NAME,
        purpose_of_reference=sr_codes.DCM.ProcessingEquipment,
        manufacturer_model_name=perfnode.SOFTWARE_NAME,
        software_versions=perfnode.__version__,
        contribution_description=line,
    )
    schemes = [
        CodingSchemeIdentificationItem(
            PRIVATE_SCHEME, name="perfnode quantities", responsible_organization="perfnode"
        )
    ]
    description = series_description or f"perfnode maps ({record.get('technique', 'perfusion')})"

    out = []
    seen: set[str] = set()
    for number, (name, values) in enumerate(maps.items(), start=1):
        q = quantity(name)
        if q.key in seen:
            raise ValueError(f"map {name!r}: quantity {q.key!r} given twice")
        seen.add(q.key)
        arr = np.array(values, dtype=np.float32)
        if arr.shape != geometry.shape:
            raise ValueError(
                f"map {name!r} has shape {arr.shape}; the source grid (slices, "
                f"(0028,0010) Rows, (0028,0011) Columns) is {geometry.shape}"
            )
        finite_mask = np.isfinite(arr)
        arr[~finite_mask] = np.nan  # ±inf (and float32 overflow) become NaN: "no value"
        finite = arr[finite_mask]
        centre, width = _window(finite)
        pm = hd.pm.ParametricMap(
            source_images=[shared_sources.proxy],
            pixel_array=arr,
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=derive_uid(uid_seed, "pm", q.key),
            instance_number=number,
            manufacturer=perfnode.SOFTWARE_NAME,
            manufacturer_model_name=perfnode.SOFTWARE_NAME,
            software_versions=perfnode.__version__,
            device_serial_number=device_serial_number,
            contains_recognizable_visual_features=False,
            real_world_value_mappings=[_mapping(q, finite)],
            voi_lut_transformations=[
                hd.VOILUTTransformation(
                    window_center=[centre],
                    window_width=[width],
                    window_explanation=["2-98 percentile"],
                    voi_lut_function="LINEAR_EXACT",
                )
            ],
            content_label=_content_label(q),
            content_description=f"{q.label}"[:64],
            content_qualification=content_qualification,
            plane_orientation=orientation,
            plane_positions=positions,
            pixel_measures=measures,
            contributing_equipment=[equipment],
            coding_schemes=schemes if q.is_private else None,
            series_description=description[:64],
        )
        # Deterministic all through: highdicom draws a random Dimension Organization UID.
        dim_uid = derive_uid(uid_seed, "pm-dimension-organization", q.key)
        for item in (*pm.DimensionOrganizationSequence, *pm.DimensionIndexSequence):
            item.DimensionOrganizationUID = dim_uid
        # Every source instance once, in the Common Instance Reference Module (the per-frame references
        # say which frame came from which; a top-level Source Image Sequence would only repeat them).
        del pm.SourceImageSequence
        pm.ReferencedSeriesSequence = shared_sources.referenced_series
        # General Series: Laterality is Type 2C; a map is as lateral as its source.
        pm.Laterality = src.get("Laterality", "")
        map_record = dict(record)
        value_range = [float(finite.min()), float(finite.max())] if finite.size else None
        map_record["map"] = {
            "key": q.key,
            "code": [q.code.value, q.code.scheme_designator, q.code.meaning],
            "unit": q.unit.value,
            "nan_voxels": int(arr.size - finite.size),
            "value_range": value_range,
        }
        write_provenance(pm, map_record)
        _add_frame_references(pm, shared_sources.derivation)
        out.append(pm)
    return out


def frame_order(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices of a multi-frame object sorted ascending along the slice normal, and the
    distances (mm along the normal) in that order — the ``z`` order of :class:`MapGeometry`."""
    shared = ds.SharedFunctionalGroupsSequence[0]
    o = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(o[:3], o[3:])
    dist = np.array(
        [
            np.dot(np.asarray(f.PlanePositionSequence[0].ImagePositionPatient, dtype=float), normal)
            for f in ds.PerFrameFunctionalGroupsSequence
        ]
    )
    order = np.argsort(dist, kind="stable")
    return order, dist[order]


def map_values(ds: Dataset) -> tuple[Quantity | None, np.ndarray]:
    """The real-world values (z, y, x) of a Parametric Map, ``z`` ascending along the slice normal
    (highdicom may store frames in another order), and its quantity from the code table."""
    pm = ds if isinstance(ds, hd.pm.ParametricMap) else hd.pm.ParametricMap.from_dataset(ds, copy=False)
    mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    code = mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0]
    found = None
    for q in QUANTITIES.values():
        if (q.code.value, q.code.scheme_designator) == (code.CodeValue, code.CodingSchemeDesignator):
            found = q
            if q.display == mapping.LUTLabel:
                break
    arr = np.asarray(pm.pixel_array, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    arr = arr[frame_order(pm)[0]]
    values = arr * np.float32(mapping.RealWorldValueSlope) + np.float32(mapping.RealWorldValueIntercept)
    if "RealWorldValueFirstValueMapped" in mapping:  # an integer map: stored values outside are no value
        lo, hi = int(mapping.RealWorldValueFirstValueMapped), int(mapping.RealWorldValueLastValueMapped)
        values[(arr < lo) | (arr > hi)] = np.nan
    return found, values


#: Integer Parametric Maps: stored value 0 is "no value" (NaN in the float map, outside the mapped
#: range); the finite values map linearly onto 1 … INTEGER_LEVELS + 1.
INTEGER_LEVELS = 65534


def to_integer(ds: Dataset) -> Dataset:
    """A 16-bit unsigned integer copy of a float Parametric Map (for viewers that cannot show Float
    Pixel Data), with the real-world values in its Real World Value Mapping.

    ``stored = round((value - min) / step) + 1`` with ``step = (max - min) / 65534``, so the Real World
    Value Slope is ``step`` and the Intercept ``min - step``; every value is within ``step / 2`` of
    the float map's. NaN voxels get stored value 0, outside the mapped range 1 … 65535 (no value).
    The quantisation step is stated in the LUT Explanation, the Derivation Description and the
    provenance (``map.quantisation``). SOP Instance and Series Instance UIDs derive from the float
    map's (a re-run converts to the same UIDs); the VOI LUT window is converted to stored values.
    """
    if "FloatPixelData" not in ds:
        raise ValueError(f"{ds.get('SOPInstanceUID', '?')}: (7FE0,0008) FloatPixelData missing: "
                         "only a float Parametric Map converts to integer")
    values = np.asarray(ds.pixel_array, dtype=np.float64)
    finite = np.isfinite(values)
    vmin, vmax = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
    step = (vmax - vmin) / INTEGER_LEVELS if vmax > vmin else 1.0
    intercept = vmin - step
    stored = np.zeros(values.shape, dtype=np.uint16)
    stored[finite] = (np.rint((values[finite] - vmin) / step) + 1).astype(np.uint16)

    out = copy.deepcopy(ds)
    for kw in ("FloatPixelData", "DoubleFloatPixelData"):
        if kw in out:
            del out[kw]
    out.BitsAllocated, out.BitsStored, out.HighBit, out.PixelRepresentation = 16, 16, 15, 0
    out.PixelData = stored.tobytes()
    out["PixelData"].VR = "OW"
    out.SOPInstanceUID = derive_uid(str(ds.SOPInstanceUID), "int16")
    out.SeriesInstanceUID = derive_uid(str(ds.SeriesInstanceUID), "int16")
    out.SeriesDescription = f"{ds.get('SeriesDescription', 'perfnode maps')} 16-bit"[:64]
    out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID

    unit = ""
    shared = out.SharedFunctionalGroupsSequence[0]
    for m in shared.RealWorldValueMappingSequence:
        for kw in ("DoubleFloatRealWorldValueFirstValueMapped", "DoubleFloatRealWorldValueLastValueMapped"):
            if kw in m:
                del m[kw]
        m.add(_el(0x00409216, "US", 1))  # Real World Value First Value Mapped
        m.add(_el(0x00409211, "US", int(stored.max()) if finite.any() else 1))  # ... Last Value Mapped
        m.RealWorldValueSlope, m.RealWorldValueIntercept = step, intercept
        units = m.get("MeasurementUnitsCodeSequence")
        unit = str(units[0].CodeValue) if units else ""
        m.LUTExplanation = f"{m.get('LUTExplanation', '')} step {step:.4g}"[:64]
    for voi in shared.get("FrameVOILUTSequence", []):
        voi.WindowCenter = round((float(voi.WindowCenter) - intercept) / step, 3)
        voi.WindowWidth = max(round(float(voi.WindowWidth) / step, 3), 1.0)

    quantisation = {"bits": 16, "stored_no_value": 0, "slope": step, "intercept": intercept,
                    "step": step, "unit": unit, "max_error": step / 2,
                    "float_sop_instance_uid": str(ds.SOPInstanceUID)}
    try:
        from perfnode.dicom.provenance import read_provenance

        record = read_provenance(ds)
    except Exception:  # noqa: BLE001 - a map without our provenance: the RWVM still says it all
        record = {}
    if record:
        record.setdefault("map", {})["quantisation"] = quantisation
        write_provenance(out, record)
    out.DerivationDescription = (f"{ds.get('DerivationDescription', '')} | 16-bit integer copy of the float "
                                 f"map, quantisation step {step:.6g} {unit}")[:1024]
    return out
