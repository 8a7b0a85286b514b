"""Automatic multi-voxel arterial input function (AIF) selection, for any bolus-tracking technique.

``select_aif(curves, times)`` takes baseline-subtracted concentration-like curves ``(n, t)`` (DSC
ΔR2*, DCE concentration, CT ΔHU) and returns the mean of the most arterial curves with their row
indices. It follows the cluster analysis of Mouridsen et al. (MRM 2006;55:524, "Automatic selection
of arterial input function using cluster analysis"), on curves denoised by a [1, 2, 1]/4 running mean
(features only; the AIF is the mean of the raw curves). Each rejection is counted by reason:

1. **invalid**: non-finite samples, a non-positive peak, or a peak in the first/last frame (truncated);
2. **excluded**: curves the caller flags (e.g. DSC voxels whose signal reaches the noise floor);
3. **low area**: only curves whose area is in the top ``1 − area_quantile`` are candidates
   (Mouridsen: the 90th percentile: arteries carry the most indicator);
4. **noisy**: of those, the ``rough_fraction`` with the lowest contrast-to-noise ratio, denoised peak
   over a robust noise SD (median absolute third difference), and never one with CNR ≥ 20 (Mouridsen
   drops the 25 % with the
   largest roughness ``∫C″²``, which at high SNR ranks the sharp arterial curves roughest; noise-free
   curves are never dropped here);
5. **saturated**: a flat top — the frames within ``plateau_tol`` of the peak span more than
   ``max_plateau_fraction`` of the full width at half maximum (clipped, signal-saturated arteries);
6. **not the arterial cluster**: k-means (k = ``n_clusters``) on the denoised curves, keeping the
   cluster whose centroid is highest, narrowest and earliest (``peak / (FWHM · first moment)``, the
   moment counted from the earliest bolus arrival among the candidates;
   Mouridsen keeps the smallest first moment alone, which in DSC can prefer the partial-volume
   voxels around an artery, whose peak the signal non-linearity does not flatten), twice, as
   Mouridsen does (only with at least 10 candidates per cluster);
7. the kept curves are ranked by the same score — high, narrow and early —, any arriving more than
   max(2 frames, 2 s) after the best one dropped (**late (venous)**), and the
   best ``n_voxels`` averaged, leaving out any whose peak is below ``min_peak_fraction`` of the best
   one's (a volume with fewer arterial voxels than ``n_voxels`` does not dilute its AIF).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass
class AifSelection:
    """The selected AIF and how it was found."""

    curve: np.ndarray
    #: Row indices (into the curves given to :func:`select_aif`) of the averaged voxels, best first.
    indices: np.ndarray
    scores: np.ndarray
    rejected: Counter[str] = field(default_factory=Counter)
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


def denoise(curves: np.ndarray) -> np.ndarray:
    """[1, 2, 1]/4 running mean along time (end samples kept): features, not the AIF itself."""
    c = np.asarray(curves, dtype=np.float64)
    out = c.copy()
    out[:, 1:-1] = 0.25 * c[:, :-2] + 0.5 * c[:, 1:-1] + 0.25 * c[:, 2:]
    return out


def first_moment(curves: np.ndarray, times: np.ndarray) -> np.ndarray:
    """``Σ t·C⁺ / Σ C⁺`` per curve (s from the first frame), on the positive part."""
    pos = np.clip(curves, 0.0, None)
    t = np.asarray(times, dtype=np.float64) - times[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        moment: NDArray[np.float64] = (pos @ t) / pos.sum(axis=1)
    return moment


def arrival(curves: np.ndarray, times: np.ndarray, fraction: float = 0.2) -> np.ndarray:
    """Time (s, from the first frame) at which each curve first reaches ``fraction`` of its peak."""
    c = np.asarray(curves)
    first = np.argmax(c >= fraction * c.max(axis=1, keepdims=True), axis=1)
    onset: NDArray[np.float64] = times[first] - times[0]
    return onset


def arterial_score(curves: np.ndarray, times: np.ndarray, t_ref: float) -> np.ndarray:
    """``peak / ((FWHM + dt)·(first moment − t_ref + dt))``: high, narrow, early curves score highest.

    ``t_ref`` (s from the first frame) is the earliest bolus arrival among the candidates, so that the
    first moment counts from the bolus, not from the start of the series: a vein, a few seconds
    later than the arteries, then scores clearly lower even when its signal is higher.
    """
    f = curve_features(curves, times)
    step = float(np.median(np.diff(times)))
    m1 = first_moment(curves, times) - t_ref
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = np.where(np.isfinite(m1), np.maximum(m1, 0.0), np.inf)
        score = f["peak"] / ((f["fwhm"] + step) * (m1 + step))
    return np.where(np.isfinite(score), score, -np.inf)


def _best_cluster(curves: np.ndarray, times: np.ndarray, k: int, seed: int, t_ref: float) -> np.ndarray:
    """Indices of the k-means cluster whose centroid is the most arterial (:func:`arterial_score`)."""
    from scipy.cluster.vq import kmeans2

    if curves.shape[0] <= k:
        return np.arange(curves.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty cluster is harmless here
        centroids, label = kmeans2(curves, k, minit="++", seed=seed)
    present = np.unique(label)
    score = arterial_score(centroids[present], times, t_ref)
    return np.flatnonzero(label == present[int(np.argmax(score))])


def select_aif(curves: np.ndarray, times: np.ndarray, n_voxels: int = 5, *,
               exclude: np.ndarray | None = None, area_quantile: float = 0.9, rough_fraction: float = 0.25,
               n_clusters: int = 5, passes: int = 2, plateau_tol: float = 0.05,
               max_plateau_fraction: float = 0.5, min_peak_fraction: float = 0.5, seed: int = 0
               ) -> AifSelection:
    """Pick the ``n_voxels`` most arterial curves of ``curves`` (n, t) sampled at ``times`` (s).

    Raises ``ValueError`` only when no curve at all qualifies (nothing to deconvolve against).
    """
    c = np.asarray(curves)
    t = np.asarray(times, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != t.size:
        raise ValueError(f"curves must be (n, {t.size}) to match times, got {c.shape}")
    rejected: Counter[str] = Counter()
    n_t = c.shape[1]
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
    rows = np.flatnonzero(ok)
    smooth = denoise(c[rows])
    w = np.gradient(t)
    area = np.clip(smooth, 0.0, None) @ w
    cut = np.quantile(area, area_quantile) if rows.size > 20 else -np.inf
    keep = area >= cut
    rejected["low area"] = int((~keep).sum())
    rows, smooth = rows[keep], smooth[keep]
    if rows.size > 8:
        # noise: robust SD from third differences (var = 20 σ² for white noise; a smooth bolus or tail
        # has next to none, and a sharp bolus bends only a few frames)
        noise = 1.4826 * np.median(np.abs(np.diff(c[rows], 3, axis=1)), axis=1) / np.sqrt(20.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            cnr = np.where(noise > 0, smooth.max(axis=1) / noise, np.inf)
        noisy = cnr < min(float(np.quantile(cnr, rough_fraction)), 20.0)  # CNR ≥ 20 is never noise
        rejected["noisy"] = int(noisy.sum())
        rows, smooth = rows[~noisy], smooth[~noisy]
    f = curve_features(smooth, t, plateau_tol)
    with np.errstate(invalid="ignore", divide="ignore"):
        sat = (f["plateau"] > max_plateau_fraction * f["fwhm"]) & (f["plateau"] > 2 * np.min(np.diff(t)))
    rejected["saturated"] = int(sat.sum())
    if sat.all():
        raise ValueError("no curve qualifies as an arterial input (all high-area curves are saturated)")
    rows, smooth = rows[~sat], smooth[~sat]
    t_ref = float(np.percentile(arrival(smooth, t), 2))
    for p in range(passes):
        if rows.size < max(2 * n_voxels, 10 * n_clusters):
            break  # too few candidates for a meaningful clustering: the ranking alone decides
        chosen = _best_cluster(smooth, t, n_clusters, seed + p, t_ref)
        if chosen.size < (n_voxels if p > 0 else min(n_voxels, 3)):
            break  # too small a cluster to average: keep the previous candidates (the ranking decides)
        rejected["not the arterial cluster"] += int(rows.size - chosen.size)
        rows, smooth = rows[chosen], smooth[chosen]
    f = curve_features(smooth, t, plateau_tol)
    score = arterial_score(smooth, t, t_ref)
    ranked = np.argsort(-score)
    arrive = arrival(smooth, t)
    step = float(np.median(np.diff(t)))
    late = arrive[ranked] > arrive[ranked[0]] + max(2 * step, 2.0)  # a vein, seconds behind the artery
    rejected["late (venous)"] += int(late[: n_voxels + int(late.sum())].sum())
    order = ranked[~late][:n_voxels]
    weak = f["peak"][order] < min_peak_fraction * f["peak"][order[0]]
    rejected["low peak"] += int(weak.sum())
    order = order[~weak]
    chosen = rows[order]
    criteria = {"method": "cluster analysis (Mouridsen et al., MRM 2006;55:524) on [1,2,1]/4-smoothed curves",
                "n_voxels": n_voxels, "area_quantile": area_quantile, "rough_fraction": rough_fraction,
                "n_clusters": n_clusters, "passes": passes, "plateau_tol": plateau_tol,
                "max_plateau_fraction": max_plateau_fraction, "min_peak_fraction": min_peak_fraction,
                "score": "peak / ((FWHM + dt) * (first moment - earliest arrival + dt))",
                "earliest_arrival_s": t_ref}
    return AifSelection(curve=c[chosen].astype(np.float64).mean(axis=0), indices=chosen, scores=score[order],
                        rejected=+rejected, criteria=criteria)


@dataclass
class VofSelection:
    """The venous output function and how it scales the AIF."""

    curve: np.ndarray
    indices: np.ndarray
    scale: float


def select_vof(curves: np.ndarray, times: np.ndarray, aif: np.ndarray, n_voxels: int = 20,
               min_delay_s: float = 2.0, max_scale: float = 3.0, core_fraction: float = 0.8
               ) -> VofSelection | None:
    """A venous output function (a sagittal-sinus-like vessel) for partial-volume correction of the AIF.

    Candidates: the curves with the largest area (at least half the largest area of any curve: a large
    vein carries all the indicator, tissue a few per cent of it) that arrive at least ``min_delay_s``
    after the AIF; of those, every curve whose area is at least ``core_fraction`` of the largest (the
    vein's core, not its partial-volume rim) is averaged, at most ``n_voxels``. Averaging the whole core
    rather than the few largest keeps the noise from choosing: at SNR 20–30 the 5 largest of a 8-voxel
    sinus were those whose noise added area, and the scale came out 5–10 % high. The AIF is scaled by
    ``area(VOF)/area(AIF)`` (trapezoid areas of the curves as given, baseline-subtracted: no clipping,
    which would add the positive half of the baseline noise) when that is between 1 (partial volume only
    ever lowers the arterial area) and ``max_scale``. Returns ``None`` when no vein-like curve exists.
    """
    c = np.asarray(curves, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    ok = np.all(np.isfinite(c), axis=1)
    if not ok.any():
        return None
    smooth = denoise(np.where(ok[:, None], c, 0.0))
    w = np.gradient(t)
    area = np.clip(smooth, 0.0, None) @ w
    a_aif = float(np.clip(aif, 0.0, None) @ w)
    t_aif = float(arrival(np.asarray(aif, dtype=np.float64)[None], t)[0])
    late = arrival(smooth, t) >= t_aif + min_delay_s
    big = ok & late & (area >= 0.5 * area[ok].max()) & (area >= 0.5 * a_aif)
    rows = np.flatnonzero(big)
    if rows.size == 0 or a_aif <= 0:
        return None
    rows = rows[np.argsort(-area[rows])]
    rows = rows[area[rows] >= core_fraction * area[rows[0]]][:n_voxels]
    vof = c[rows].mean(axis=0)
    a_aif_raw = float(np.trapezoid(np.asarray(aif, dtype=np.float64), t))
    if a_aif_raw <= 0:
        return None
    scale = float(np.trapezoid(vof, t)) / a_aif_raw
    if not 1.0 <= scale <= max_scale:
        return None
    return VofSelection(vof, rows, scale)
