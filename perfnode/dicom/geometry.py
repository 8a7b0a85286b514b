"""Sorting frames in space: one orientation, slices as distinct positions along the normal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset

if TYPE_CHECKING:
    from perfnode.dicom.frame_table import _Table

POSITION_DECIMALS = 3  # mm: positions closer than 1 µm are the same slice


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


def codes(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Integer code of each value in the sorted list of its distinct values."""
    uniq = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    lookup = {v: i for i, v in enumerate(uniq)}
    return np.array([lookup[v] for v in values], dtype=np.int64), uniq


def distinct(values: list[Any]) -> list[Any]:
    """The distinct objects of ``values`` (by identity: frames sharing a value share the object)."""
    return list({id(v): v for v in values}.values())


def median(values: np.ndarray) -> float:
    """``np.median`` (the same value), without the ``numpy.ma`` import its NaN check costs on first use."""
    d = np.sort(values)
    if np.isnan(d).any():
        return float(np.median(d))
    mid = len(d) // 2
    return float(d[mid]) if len(d) % 2 else float((d[mid - 1] + d[mid]) / 2)


def slices(frames: _Table, ref: Dataset) -> tuple[Geometry, np.ndarray, list[float]]:
    """The geometry, each frame's slice code and the slices' distances along the normal (mm)."""
    from perfnode.dicom.frame_table import AssemblyError

    orientations = {tuple(round(v, 4) for v in o) for o in distinct(frames.orientation)}
    if len(orientations) > 1:
        raise AssemblyError(
            f"(0020,0037) ImageOrientationPatient differs between frames: {sorted(orientations)}"
        )
    ori = np.array(frames.orientation[0])
    normal = np.cross(ori[:3], ori[3:])
    pos = frames.position
    dist = np.round(pos @ normal, POSITION_DECIMALS)
    z_code, z_values = codes(dist.tolist())
    order = np.argsort(z_code, kind="stable")
    positions = pos[order[np.searchsorted(z_code[order], np.arange(len(z_values)))]]
    pm = frames.pixel_measures or ref
    pixel_spacing, thickness = pm.get("PixelSpacing"), pm.get("SliceThickness")
    if pixel_spacing is None:
        raise AssemblyError("(0028,0030) PixelSpacing missing (PS3.3 C.7.6.16.2.1)")
    spacing = median(np.diff(z_values)) if len(z_values) > 1 else 0.0
    geometry = Geometry(
        ori,
        positions,
        np.array([float(v) for v in pixel_spacing]),
        spacing,
        float(thickness) if thickness is not None else None,
        str(ref.get("FrameOfReferenceUID", "")),
    )
    return geometry, z_code, z_values
