"""Slice timing: every slice of a 2-D multi-slice series is acquired at its own time within a time point.

A DSC or CT series sampled every 1.5 s with 20 interleaved slices acquires slice ``z`` of time point
``k`` up to 1.4 s after the first. Analysed on one time axis, curves of late slices look early by that
much: bolus arrival, TTP and Tmax shift slice by slice (issue 14: −0.375 s per slice) and an AIF taken
from one slice is compared with tissue of another at the wrong time.

:func:`correct_slice_timing` resamples every slice's curves from their own acquisition times onto the
common time axis (the start of each time point), by linear interpolation (vectorised: one weight table
per slice, applied to all of its voxels; before a slice's first sample the first value is held — the
pre-bolus baseline).
"""

from __future__ import annotations

import numpy as np


def slice_offsets(frame_times_s: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """Per-slice acquisition offset (s) after the start of its time point, ``(z,)``."""
    ft = np.asarray(frame_times_s, dtype=np.float64)
    return np.nanmedian(ft - np.asarray(times_s, dtype=np.float64)[:, None], axis=0)


def needs_correction(frame_times_s: np.ndarray | None, times_s: np.ndarray, rtol: float = 0.05) -> bool:
    """True when slices are acquired more than ``rtol`` of a time step apart."""
    if frame_times_s is None:
        return False
    ft = np.asarray(frame_times_s, dtype=np.float64)
    t = np.asarray(times_s, dtype=np.float64)
    if ft.ndim != 2 or ft.shape[0] != t.size or t.size < 2 or not np.isfinite(ft).all():
        return False
    spread = np.ptp(slice_offsets(ft, t))
    return bool(spread > rtol * float(np.median(np.diff(t))))


def correct_slice_timing(data: np.ndarray, frame_times_s: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """``data`` ``(t, z, y, x)`` acquired at ``frame_times_s`` ``(t, z)`` → its curves at ``times_s``."""
    arr = np.asarray(data)
    ft = np.asarray(frame_times_s, dtype=np.float64)
    target = np.asarray(times_s, dtype=np.float64)
    nt, nz = arr.shape[:2]
    if ft.shape != (nt, nz) or target.shape != (nt,):
        raise ValueError(f"frame times {ft.shape} and times {target.shape} do not match data {arr.shape[:2]}")
    out = np.empty(arr.shape, dtype=np.result_type(arr.dtype, np.float32))
    for z in range(nz):
        src = ft[:, z]
        i = np.clip(np.searchsorted(src, target, side="right") - 1, 0, nt - 2)
        w = np.clip((target - src[i]) / (src[i + 1] - src[i]), 0.0, 1.0)[:, None, None]
        out[:, z] = arr[i, z] * (1.0 - w) + arr[i + 1, z] * w
    return out
