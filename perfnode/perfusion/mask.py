"""The one foreground mask of the code base: which voxels are the object (head, organ), not air.

Every analysis, quality measure and report picture uses :func:`foreground`, so that "the voxels
that were fitted" and "the voxels whose quality was judged" are the same set.

- **MR** (any signal-like series): the per-voxel temporal *median* (insensitive to the bolus dip or
  rise and to single spikes) above ``fraction`` (default 20 %) of the robust maximum, the 99th
  percentile over voxels (a few bright vessels or fat do not raise the threshold), the usual
  "percentage of the robust range" threshold (FSL ``fslmaths -thrp``). 10 % is not enough at
  clinical noise: at SNR 10 the Rician background level is ≈ 1.25 σ ≈ 12 % of the tissue signal.
- **CT**: the temporal median in Hounsfield units between −300 HU (not air) and 150 HU (not bone):
  soft tissue, vessels included (their median over the series is their pre-contrast level).
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from numpy.typing import NDArray

#: Default MR threshold: fraction of the 99th percentile of the temporal median.
MR_FRACTION = 0.20
#: Soft-tissue Hounsfield range for CT (air below, bone above).
CT_RANGE_HU = (-300.0, 150.0)

Modality = Literal["MR", "CT"]


def foreground(data: np.ndarray, modality: Modality = "MR", *, time_axis: int | None = 0,
               fraction: float = MR_FRACTION) -> np.ndarray:
    """Boolean mask of the object in ``data``: ``(t, ...)`` with ``time_axis=0`` (default), or a single
    image ``(...)`` with ``time_axis=None``. See the module docstring for the rule."""
    arr = np.asarray(data)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN voxels: NaN level, not foreground
        level = arr if time_axis is None else np.nanmedian(arr, axis=time_axis)
    with np.errstate(invalid="ignore"):
        if str(modality).upper() == "CT":
            return (level > CT_RANGE_HU[0]) & (level < CT_RANGE_HU[1])
        finite = level[np.isfinite(level)]
        if finite.size == 0:
            return np.zeros(level.shape, bool)
        top = float(np.percentile(finite, 99))
        if not top > 0:
            positive: NDArray[np.bool_] = np.isfinite(level) & (level > 0)
            return positive
        above: NDArray[np.bool_] = level > fraction * top
        return above


def describe(modality: Modality = "MR", fraction: float = MR_FRACTION) -> str:
    """The rule in words, for provenance."""
    if str(modality).upper() == "CT":
        return f"temporal median between {CT_RANGE_HU[0]:g} and {CT_RANGE_HU[1]:g} HU"
    return f"temporal median signal > {fraction:.0%} of its 99th percentile over voxels"
