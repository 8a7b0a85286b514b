"""Automatic multi-voxel arterial input function (AIF) selection, for any bolus-tracking technique.

``select_aif(curves, times)`` takes baseline-subtracted concentration-like curves ``(n, t)`` (DSC
ΔR2*, DCE concentration, CT ΔHU) and returns the mean of the best few arterial curves with their
row indices. The rules, in order (each rejection is counted by reason):

1. **invalid**: non-finite samples, a non-positive peak, or a peak in the first/last frame;
2. **excluded**: curves the caller flags (e.g. DSC voxels whose signal fell to the noise floor);
3. **low peak**: only curves with a peak in the top ``1 − peak_quantile`` are candidates (arteries
   have the highest concentration; partial-volume arteries have a lower one);
4. **saturated**: a flat top — the frames within ``plateau_tol`` of the peak span more than
   ``max_plateau_fraction`` of the full width at half maximum (clipped, signal-saturated arteries);
5. **partial volume**: a late tail (mean of the last quarter) above ``max_tail_ratio`` of the peak,
   or a width more than ``max_width_factor`` times the candidates' median width;
6. ranking by ``peak / (FWHM · time-to-peak)`` — high, narrow and early — and the best ``n_voxels``
   are averaged, leaving out any whose peak is below ``min_peak_fraction`` of the best one's (so that
   a volume with fewer arterial voxels than ``n_voxels`` does not dilute its AIF with tissue).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class AifSelection:
    """The selected AIF and how it was found."""

    curve: np.ndarray
    #: Row indices (into the curves given to :func:`select_aif`) of the averaged voxels, best first.
    indices: np.ndarray
    scores: np.ndarray
    rejected: Counter = field(default_factory=Counter)
    criteria: dict[str, Any] = field(default_factory=dict)


def curve_features(curves: np.ndarray, times: np.ndarray, plateau_tol: float = 0.05
                   ) -> dict[str, np.ndarray]:
    """Peak, time to peak (s, from the first frame), FWHM (s), plateau width (s), tail ratio."""
    c = np.asarray(curves, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    dt = np.gradient(t)  # per-frame width, works for non-uniform sampling
    finite = np.all(np.isfinite(c), axis=1)
    c0 = np.where(np.isfinite(c), c, 0.0)
    idx = np.argmax(c0, axis=1)
    peak = c0[np.arange(c.shape[0]), idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = c0 / peak[:, None]
    fwhm = ((rel >= 0.5) * dt).sum(axis=1)
    plateau = ((rel >= 1.0 - plateau_tol) * dt).sum(axis=1)
    q = max(1, c.shape[1] // 4)
    tail = c0[:, -q:].mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tail_ratio = tail / peak
    return {"finite": finite, "peak": peak, "peak_index": idx, "ttp": t[idx] - t[0], "fwhm": fwhm,
            "plateau": plateau, "tail_ratio": tail_ratio}


def select_aif(curves: np.ndarray, times: np.ndarray, n_voxels: int = 5, *,
               exclude: np.ndarray | None = None, peak_quantile: float = 0.9, plateau_tol: float = 0.05,
               max_plateau_fraction: float = 0.5, max_tail_ratio: float = 0.35,
               max_width_factor: float = 1.5, min_peak_fraction: float = 0.5) -> AifSelection:
    """Pick the ``n_voxels`` most arterial curves of ``curves`` (n, t) sampled at ``times`` (s).

    Raises ``ValueError`` only when no curve at all qualifies (nothing to deconvolve against).
    """
    c = np.asarray(curves)
    t = np.asarray(times, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != t.size:
        raise ValueError(f"curves must be (n, {t.size}) to match times, got {c.shape}")
    rejected: Counter = Counter()
    n_t = c.shape[1]
    # cheap checks on every curve; the shape features only on the high-peak candidates
    finite = np.all(np.isfinite(c), axis=1)
    idx = np.argmax(np.where(finite[:, None], c, -np.inf), axis=1)
    peak = c[np.arange(c.shape[0]), idx]
    ok = finite & (peak > 0) & (idx > 0) & (idx < n_t - 1)
    rejected["invalid"] = int((~ok).sum())
    if exclude is not None:
        ex = np.asarray(exclude, dtype=bool) & ok
        rejected["excluded"] = int(ex.sum())
        ok &= ~ex
    if not ok.any():
        raise ValueError("no curve qualifies as an arterial input (all invalid or excluded)")
    cutoff = np.quantile(peak[ok], peak_quantile)
    low = ok & (peak < cutoff)
    rejected["low peak"] = int(low.sum())
    cand = np.flatnonzero(ok & ~low)
    f = curve_features(c[cand], t, plateau_tol)
    with np.errstate(invalid="ignore", divide="ignore"):
        sat = (f["plateau"] > max_plateau_fraction * f["fwhm"]) & (f["plateau"] > 2 * np.min(np.diff(t)))
    rejected["saturated"] = int(sat.sum())
    if sat.all():
        raise ValueError("no curve qualifies as an arterial input (all high-peak curves are saturated)")
    keep = ~sat
    med_width = np.median(f["fwhm"][keep])
    pv = keep & ((f["tail_ratio"] > max_tail_ratio) | (f["fwhm"] > max_width_factor * med_width))
    if (keep & ~pv).any():
        rejected["partial volume"] = int(pv.sum())
        keep &= ~pv
    cand = cand[keep]
    f = {k: v[keep] for k, v in f.items()}
    step = float(np.median(np.diff(t)))
    score = f["peak"] / ((f["fwhm"] + step) * (f["ttp"] + step))
    order = np.argsort(-score)[:n_voxels]
    weak = f["peak"][order] < min_peak_fraction * f["peak"][order[0]]
    rejected["low peak"] += int(weak.sum())
    order = order[~weak]
    chosen = cand[order]
    criteria = {"n_voxels": n_voxels, "peak_quantile": peak_quantile, "plateau_tol": plateau_tol,
                "max_plateau_fraction": max_plateau_fraction, "max_tail_ratio": max_tail_ratio,
                "max_width_factor": max_width_factor, "min_peak_fraction": min_peak_fraction,
                "score": "peak / ((FWHM + dt) * (TTP + dt))"}
    return AifSelection(curve=c[chosen].astype(np.float64).mean(axis=0), indices=chosen, scores=score[order],
                        rejected=+rejected, criteria=criteria)
