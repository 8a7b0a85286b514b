"""The shape every perfusion model shares (the dipy pattern).

A model object holds the acquisition; ``model.fit(data, mask=None)`` takes any ``(..., t)``
array (or a ``(t, z, y, x)`` volume with ``time_axis=0``) and returns a :class:`FitResult`
whose maps are reached by name (``fit.cbf``, ``fit["cbf"]``), each in the unit listed in
``fit.units``. Voxels that fail are NaN; ``fit.failures`` counts them by reason. Nothing in
this package imports pydicom.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def as_curves(data: np.ndarray, time_axis: int = -1, mask: np.ndarray | None = None,
              dtype: Any = np.float64) -> tuple[np.ndarray, tuple[int, ...], np.ndarray]:
    """Flatten ``data`` to ``(n_voxels, t)`` curves (float64 unless ``dtype``) of the voxels in ``mask``.

    Returns the curves, the spatial shape, and the flat boolean index of the selected voxels
    (use :func:`to_maps` to put per-voxel results back in place).
    """
    arr = np.moveaxis(np.asarray(data), time_axis, -1)
    spatial = arr.shape[:-1]
    flat = arr.reshape(-1, arr.shape[-1])
    if mask is None:  # no fancy indexing; still never hand out a view of the caller's array
        out = flat.astype(dtype, copy=False)
        return (out.copy() if np.may_share_memory(out, arr) else out), spatial, np.ones(flat.shape[0], bool)
    else:
        m = np.asarray(mask, dtype=bool)
        if m.shape != spatial:
            raise ValueError(f"mask shape {m.shape} does not match data's spatial shape {spatial}")
        sel = m.reshape(-1)
    return flat[sel].astype(dtype, copy=False), spatial, sel


def to_maps(values: np.ndarray, spatial: tuple[int, ...], sel: np.ndarray,
            dtype: Any = np.float32) -> np.ndarray:
    """Scatter per-voxel ``values`` (n_selected, ...) back into a NaN-filled spatial map."""
    values = np.asarray(values)
    out = np.full((sel.size, *values.shape[1:]), np.nan, dtype=dtype)
    out[sel] = values
    return out.reshape((*spatial, *values.shape[1:]))


@dataclass
class FitResult:
    """Named maps with units, a per-voxel fit-quality map, and failure counts by reason."""

    maps: dict[str, np.ndarray]
    units: dict[str, str]
    #: Per-voxel fit quality in [0, 1] where available (e.g. R² of the fitted curve); NaN = failed.
    quality: np.ndarray | None = None
    failures: Counter[str] = field(default_factory=Counter)
    #: What was done and with which parameters: method, constants, AIF, baseline frames, ...
    provenance: dict[str, Any] = field(default_factory=dict)
    #: Per-voxel convergence of an iterative fit (True = converged); None for direct methods.
    converged: np.ndarray | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        return self.maps[name]

    def __getattr__(self, name: str) -> np.ndarray:
        maps: dict[str, np.ndarray] = self.__dict__.get("maps", {})
        if name in maps:
            return maps[name]
        raise AttributeError(name)

    def __contains__(self, name: str) -> bool:
        return name in self.maps
