"""Siemens MOSAIC images (classic MR, Image Type value 5 MOSAIC): one image = every slice of a volume.

Read with nibabel's maintained parser of the Siemens CSA header (``nibabel.nicom``): the number of
slices (NumberOfImagesInMosaic), the slice normal, the position of the first slice (the top-level Image
Position (Patient) is the corner of the whole mosaic), each slice's acquisition time offset
(MosaicRefAcqTimes, ms) and, from the protocol, the sequence file name. Slices are tiled row by row in a
⌈√n⌉ × ⌈√n⌉ grid, slice *k* at ``first + k × spacing × normal`` (as nibabel and dcm2niix place them).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from math import ceil, sqrt
from types import ModuleType
from typing import Any

import numpy as np
from pydicom.dataset import Dataset


class MosaicError(ValueError):
    """A MOSAIC image whose CSA header does not give its slices."""


@dataclass
class Mosaic:
    """The slices of one mosaic image."""

    n: int
    tile_rows: int
    tile_cols: int
    positions: np.ndarray  # (n, 3) mm, slice k
    normal: np.ndarray  # (3,)
    offsets_s: np.ndarray  # (n,) acquisition time of slice k after the image's time, s (0 if unknown)
    sequence: str  # tSequenceFileName of the protocol ("" when absent)

    def tiles(self, image: np.ndarray) -> np.ndarray:
        """``(n, tile_rows, tile_cols)`` slices of one ``(rows, cols)`` mosaic image."""
        m = image.shape[1] // self.tile_cols
        out = np.empty((self.n, self.tile_rows, self.tile_cols), image.dtype)
        for k in range(self.n):
            r, c = divmod(k, m)
            rows = slice(r * self.tile_rows, (r + 1) * self.tile_rows)
            out[k] = image[rows, c * self.tile_cols:(c + 1) * self.tile_cols]
        return out


def is_mosaic(ds: Dataset) -> bool:
    """Is ``ds`` a Siemens MOSAIC image (Image Type contains MOSAIC)?"""
    return "MOSAIC" in [str(v).upper() for v in (ds.get("ImageType") or [])]


def _wrapper(ds: Dataset) -> tuple[Any, ModuleType]:
    """nibabel's DICOM wrapper of ``ds`` (untyped: nibabel.nicom has no annotations) and its CSA reader."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel warns that its DICOM readers are experimental
        from nibabel.nicom import csareader, dicomwrappers

        return dicomwrappers.wrapper_from_data(ds), csareader  # type: ignore[no-untyped-call]


def read(ds: Dataset) -> Mosaic:
    """The slice geometry and timing of a MOSAIC image; :class:`MosaicError` naming what is missing."""
    uid = ds.get("SOPInstanceUID", "?")
    try:
        w, csareader = _wrapper(ds)
        n = int(w.n_mosaic)
        tile_rows, tile_cols, _ = w.image_shape
        normal = np.asarray(w.slice_normal, float)
        first = np.asarray(w.image_position, float)
        spacing = float(w.voxel_sizes[2])
    except Exception as e:  # noqa: BLE001 - nibabel raises many kinds; the message names the header
        raise MosaicError(
            f"{uid}: MOSAIC image whose Siemens CSA header (0029,1010) does not give its slices "
            f"(NumberOfImagesInMosaic, SliceNormalVector): {e}"
        ) from None
    if n < 1 or normal.shape != (3,) or not np.isfinite(first).all():
        raise MosaicError(f"{uid}: CSA header (0029,1010): {n} slices, normal {normal.tolist()}")
    offsets = np.zeros(n)
    try:
        times = csareader.get_csa_header(ds, "image")["tags"]["MosaicRefAcqTimes"]["items"]
        if len(times) >= n:
            offsets = np.asarray(times[:n], float) / 1000.0
    except Exception:  # noqa: BLE001 - slice times are optional: without them, 0
        pass
    sequence = ""
    try:
        protocol = csareader.get_csa_header(ds, "series")["tags"]["MrPhoenixProtocol"]["items"][0]
        if m := re.search(r'tSequenceFileName\s*=\s*"+([^"]*)"+', protocol):
            sequence = m.group(1)
    except Exception:  # noqa: BLE001 - the protocol is optional
        pass
    positions = first + np.arange(n)[:, None] * spacing * normal
    return Mosaic(n, int(tile_rows), int(tile_cols), positions, normal, offsets, sequence)


def mosaic_size(n: int) -> int:
    """Tiles per row of a mosaic of ``n`` slices (Siemens: ⌈√n⌉)."""
    return ceil(sqrt(n))
