"""SPGR signal → R1(t) → contrast-agent concentration (Schabel & Parker 2008, eqs. 6–7; T2* neglected).

M0 follows from the pre-contrast signal S0 (mean over the baseline frames) and the pre-contrast
R10; each S(t) is then inverted exactly through the SPGR equation
``S = M0·sin α·(1 − E1)/(1 − cos α·E1)``, ``E1 = exp(−TR·R1)``, and ``C = (R1 − R10)/r1``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from perfnode.perfusion.base import FitResult, as_curves, to_maps


def baseline_frames(spec: int | slice | tuple[int, int] | np.ndarray, n_frames: int) -> np.ndarray:
    """Indices of the baseline frames.

    ``int n`` → frames ``0 … n−1``; ``(start, stop)`` or a slice → ``range(start, stop)`` (the OSIPI
    convention excludes frame 0: ``(1, n)``); an index array is used as given.
    """
    if isinstance(spec, (int, np.integer)):
        idx = np.arange(int(spec))
    elif isinstance(spec, slice):
        idx = np.arange(n_frames)[spec]
    elif isinstance(spec, tuple):
        idx = np.arange(*spec)
    else:
        idx = np.asarray(spec, dtype=np.int64)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n_frames:
        raise ValueError(f"baseline frames {spec!r} select no frame or lie outside 0..{n_frames - 1}")
    return idx


def relative_enhancement(data: np.ndarray, baseline: int | slice | tuple[int, int] | np.ndarray = 3,
                         time_axis: int = -1) -> np.ndarray:
    """``(S(t) − S0)/S0``, S0 the mean over the baseline frames (NaN where S0 ≤ 0); shape of ``data``.

    Feed it to :func:`perfnode.perfusion.dce.semi_quantitative` for signal-based maps (peak
    enhancement as a fraction) when no T1 map is available.
    """
    s = np.moveaxis(np.asarray(data, dtype=np.float64), time_axis, -1)
    s0 = s[..., baseline_frames(baseline, s.shape[-1])].mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(s0 > 0, (s - s0) / s0, np.nan)
    return np.moveaxis(out, -1, time_axis)


def spgr_to_r1(signal: np.ndarray, s0: np.ndarray, r10_per_s: np.ndarray, tr_s: float,
               flip_angle_rad: np.ndarray | float) -> np.ndarray:
    """R1(t) in s⁻¹ from signals ``(n, t)``, baseline signal ``s0`` ``(n,)`` and pre-contrast R10 ``(n,)``.

    Signals the SPGR equation cannot produce (negative, or at or above M0·sin α) give NaN.
    """
    ca, sa = np.cos(flip_angle_rad), np.sin(flip_angle_rad)
    e10 = np.exp(-tr_s * r10_per_s)
    m0 = s0 * (1.0 - ca * e10) / (sa * (1.0 - e10))
    m0 = np.asarray(m0)[..., None]
    ca_, sa_ = (np.asarray(v)[..., None] if np.ndim(v) else v for v in (ca, sa))
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = (m0 * sa_ - signal) / (m0 * sa_ - signal * ca_)
        return np.where((e1 > 0) & (e1 <= 1), -np.log(e1) / tr_s, np.nan)


def spgr_to_concentration(data: np.ndarray, tr_s: float, flip_angle_deg: float,
                          t1_base_s: np.ndarray | float, relaxivity_per_mM_s: float,
                          baseline: int | slice | tuple[int, int] | np.ndarray = (1, 4),
                          mask: np.ndarray | None = None, time_axis: int = -1,
                          b1: np.ndarray | float | None = None) -> FitResult:
    """Concentration (mM) of every voxel of ``data`` (any ``(..., t)``; or set ``time_axis``).

    ``t1_base_s`` is a pre-contrast T1 map (or scalar) in seconds, e.g. ``VFAModel(...).fit(...).t1_s``;
    ``baseline`` selects the frames averaged into S0 (see :func:`baseline_frames`); ``b1`` scales
    the flip angle per voxel. Returns maps ``concentration_mM`` (..., t) and ``r1_per_s`` (..., t).
    """
    if tr_s > 1.0:
        raise ValueError(f"repetition time {tr_s} looks like milliseconds; give it in seconds")
    s, spatial, sel = as_curves(data, time_axis, mask)
    idx = baseline_frames(baseline, s.shape[1])
    s0 = s[:, idx].mean(axis=1)
    t1 = np.broadcast_to(np.asarray(t1_base_s, dtype=np.float64), spatial).reshape(-1)[sel]
    alpha = np.deg2rad(flip_angle_deg)
    if b1 is not None:
        alpha = alpha * np.broadcast_to(np.asarray(b1, dtype=np.float64), spatial).reshape(-1)[sel]
    with np.errstate(divide="ignore", invalid="ignore"):
        r10 = 1.0 / t1
        r1 = spgr_to_r1(s, s0, r10, tr_s, alpha)
        conc = (r1 - r10[:, None]) / relaxivity_per_mM_s
    failures: Counter[str] = Counter()
    bad_t1 = ~(np.isfinite(t1) & (t1 > 0))
    bad_s0 = ~(s0 > 0)
    failures["no valid pre-contrast T1"] = int(bad_t1.sum())
    failures["baseline signal not positive"] = int((bad_s0 & ~bad_t1).sum())
    sat = ~np.isfinite(conc) & ~(bad_t1 | bad_s0)[:, None]
    failures["frames with signal beyond the SPGR limit (NaN)"] = int(sat.sum())
    conc[bad_t1 | bad_s0] = np.nan
    r1[bad_t1 | bad_s0] = np.nan
    quality = np.where(bad_t1 | bad_s0, np.nan, np.mean(np.isfinite(conc), axis=1))
    return FitResult(
        maps={"concentration_mM": to_maps(conc, spatial, sel, np.float64),
              "r1_per_s": to_maps(r1, spatial, sel, np.float64)},
        units={"concentration_mM": "mM", "r1_per_s": "s-1"},
        quality=to_maps(quality, spatial, sel, np.float64),
        failures=Counter({k: v for k, v in failures.items() if v}),
        provenance={"model": "SPGR signal to concentration (Schabel & Parker 2008)", "tr_s": tr_s,
                    "flip_angle_deg": flip_angle_deg, "relaxivity_per_mM_s": relaxivity_per_mM_s,
                    "baseline_frames": idx.tolist(), "b1_corrected": b1 is not None},
    )
