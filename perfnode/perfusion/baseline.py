"""Bolus arrival and pre-contrast baseline detection, vectorised over curves.

Curves are "enhancement-like": the bolus makes them rise (concentration, ΔR2*, HU). For DSC signal,
which drops, pass ``-signal``. The rule is the same for one curve or a million:

1. the peak is the maximum after ``skip`` frames;
2. the baseline level is the median of the frames from ``skip`` up to ``min(max_baseline, peak/2)``;
3. the bolus arrives at the first frame of the last run of frames before the peak that stay above
   ``baseline + fraction · (peak − baseline)``; the baseline is every frame from ``skip`` to two
   frames before arrival (one frame of margin against partial-frame arrival).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Baseline:
    """Per-curve bolus arrival index and the baseline frames ``[start, stop)`` (arrays of shape (n,))."""

    arrival: np.ndarray
    start: int
    stop: np.ndarray
    peak_index: np.ndarray

    @property
    def frames(self) -> tuple[int, int]:
        """Baseline frames common to all curves: ``[start, min(stop))``."""
        return self.start, int(np.min(self.stop))


def detect_bolus(curves: np.ndarray, skip: int = 1, fraction: float = 0.1, max_baseline: int = 30,
                 min_baseline: int = 2, level: np.ndarray | float | None = None) -> Baseline:
    """Bolus arrival for curves ``(n, t)`` (or one curve ``(t,)``) that rise with the bolus.

    ``skip`` frames are ignored at the start (steady-state build-up of the magnetisation). A known
    baseline ``level`` per curve (e.g. 0 after baseline subtraction) replaces step 2.
    """
    c = np.atleast_2d(np.asarray(curves))
    if not np.issubdtype(c.dtype, np.floating):
        c = c.astype(np.float64)
    n, t = c.shape
    if t < skip + min_baseline + 2:
        raise ValueError(f"a curve of {t} frames is too short for a baseline of {min_baseline} after "
                         f"skipping {skip}")
    body = c[:, skip:]
    if not np.isfinite(body).all():
        body = np.where(np.isfinite(body), body, -np.inf)
    peak_rel = np.argmax(body, axis=1)
    peak_idx = peak_rel + skip
    # baseline level from the early frames (at most half the way to the peak)
    cols = np.arange(t)
    if level is None:
        early_end = np.clip(np.minimum(max_baseline, (peak_idx + skip) // 2), skip + min_baseline, t)
        early = (cols >= skip) & (cols < early_end[:, None])
        base = np.nanmedian(np.where(early, c, np.nan), axis=1)
    else:
        base = np.broadcast_to(np.asarray(level, dtype=np.float64), (n,))
    thr = base + fraction * (c[np.arange(n), peak_idx] - base)
    # last frame before the peak at or below the threshold; arrival is the frame after it
    below = c <= thr[:, None]
    below &= cols < peak_idx[:, None]
    below[:, :skip] = False
    rev = below[:, ::-1]
    has = rev.any(axis=1)
    last_below = t - 1 - np.argmax(rev, axis=1)
    arrival = np.where(has, last_below + 1, skip)
    stop = np.clip(arrival - 1, skip + min_baseline, t)
    return Baseline(arrival=arrival, start=skip, stop=stop, peak_index=peak_idx)



def contrast_to_noise(data: np.ndarray, mask: np.ndarray, baseline: tuple[int, int], falls: bool,
                      percentile: float = 50.0) -> float:
    """``percentile`` (default the median) over ``mask`` of |bolus peak change| / baseline SD of a
    ``(t, z, y, x)`` series, the peak taken on [1, 2, 1]/4-smoothed curves after the baseline frames
    ``[start, stop)``."""
    arr = np.asarray(data, dtype=np.float64)
    v = arr[:, np.asarray(mask, bool)]
    start, stop = baseline
    if v.shape[1] == 0 or stop - start < 3:
        return float("nan")
    base = v[start:stop]
    s0, sd = base.mean(axis=0), base.std(axis=0, ddof=1)
    sm = v.copy()
    sm[1:-1] = 0.25 * v[:-2] + 0.5 * v[1:-1] + 0.25 * v[2:]
    change = (s0 - sm[stop:].min(axis=0)) if falls else (sm[stop:].max(axis=0) - s0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cnr = np.where(sd > 0, change / sd, np.inf)
    return float(np.nanpercentile(cnr, percentile))
