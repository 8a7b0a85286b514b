"""Variable-flip-angle (VFA) T1 / R1 mapping from spoiled gradient-echo (SPGR) signals.

Steady-state SPGR signal: ``S(α) = M0·sin α·(1 − E1)/(1 − cos α·E1)``, ``E1 = exp(−TR·R1)``.
Three methods, all vectorised over voxels:

- ``"linear"``: DESPOT1 (Deoni 2003), ``S/sin α = E1·S/tan α + M0(1 − E1)``, a straight-line
  fit per voxel through all angles;
- ``"two_angle"``: the same line through the first and last flip angle only;
- ``"nonlinear"``: least squares on the signal equation itself (batched Levenberg–Marquardt
  started from the linear solution).

An optional B1 map (actual/nominal flip angle as a fraction, 1 = nominal) scales the angles
voxel by voxel.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from numpy.typing import ArrayLike

from perfnode.perfusion.base import FitResult, as_curves, to_maps
from perfnode.perfusion.lm import levenberg_marquardt, r_squared

METHODS = ("nonlinear", "linear", "two_angle")


def spgr_signal(m0: np.ndarray | float, r1_per_s: np.ndarray | float, flip_angle_rad: np.ndarray | float,
                tr_s: float) -> np.ndarray:
    """SPGR steady-state signal (T2* decay neglected); broadcasts over all arguments."""
    e1 = np.exp(-tr_s * np.asarray(r1_per_s, dtype=np.float64))
    sa, ca = np.sin(flip_angle_rad), np.cos(flip_angle_rad)
    return np.asarray(m0) * sa * (1.0 - e1) / (1.0 - ca * e1)


def _despot1(s: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel straight-line fit of S/sin α against S/tan α; returns (E1, M0)."""
    y = s / np.sin(alpha)
    x = s / np.tan(alpha)
    xm, ym = x.mean(axis=1, keepdims=True), y.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.sum((x - xm) * (y - ym), axis=1) / np.sum((x - xm) ** 2, axis=1)
        m0 = (ym[:, 0] - e1 * xm[:, 0]) / (1.0 - e1)
    return e1, m0


class VFAModel:
    """VFA T1 model: ``VFAModel(flip_angles_deg, tr_s, method).fit(signals, b1=...)``.

    Maps: ``r1_per_s`` (s⁻¹), ``t1_s`` (s), ``m0`` (a.u., signal units).
    """

    def __init__(self, flip_angles_deg: ArrayLike, tr_s: float, method: str = "nonlinear",
                 r1_bounds_per_s: tuple[float, float] = (1e-3, 1e3)) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown VFA method {method!r}; choose one of {METHODS}")
        self.flip_angles_deg = np.asarray(flip_angles_deg, dtype=np.float64).ravel()
        if self.flip_angles_deg.size < 2:
            raise ValueError("VFA T1 mapping needs at least two flip angles")
        if not tr_s > 0:
            raise ValueError(f"repetition time must be > 0 s, got {tr_s}")
        if tr_s > 1.0:
            raise ValueError(f"repetition time {tr_s} looks like milliseconds; give it in seconds")
        self.tr_s = float(tr_s)
        self.method = method
        self.r1_bounds = r1_bounds_per_s

    def fit(self, data: np.ndarray, mask: np.ndarray | None = None, b1: np.ndarray | float | None = None,
            axis: int = -1, *, time_axis: int | None = None) -> FitResult:
        """Fit signals whose flip-angle axis is ``axis`` (alias ``time_axis``); ``b1``: relative B1."""
        axis = axis if time_axis is None else time_axis
        s, spatial, sel = as_curves(data, axis, mask)
        if s.shape[1] != self.flip_angles_deg.size:
            raise ValueError(f"data has {s.shape[1]} flip angles along axis {axis}, "
                             f"model has {self.flip_angles_deg.size}")
        alpha = np.deg2rad(self.flip_angles_deg)[None, :]
        if b1 is not None:
            b1v = np.broadcast_to(np.asarray(b1, dtype=np.float64), spatial).reshape(-1)[sel]
            alpha = alpha * b1v[:, None]
        alpha = np.broadcast_to(alpha, s.shape)
        failures: Counter[str] = Counter()
        if self.method == "two_angle":
            e1, m0 = _despot1(s[:, [0, -1]], alpha[:, [0, -1]])
        else:
            e1, m0 = _despot1(s, alpha)
        bad_lin = ~((e1 > 0) & (e1 < 1) & np.isfinite(m0))
        quality = np.full(s.shape[0], np.nan)
        if self.method == "nonlinear":
            r1_0 = np.where(bad_lin, 1.0, -np.log(np.clip(e1, 1e-12, 1 - 1e-12)) / self.tr_s)
            r1_0 = np.clip(r1_0, *self.r1_bounds)
            m0_0 = np.where(bad_lin | (m0 <= 0), np.max(s, axis=1) * 5.0, m0)
            r1, m0, sse, ok = self._nonlinear(s, alpha, m0_0, r1_0)
            quality = r_squared(s, sse)
            bad = ~ok | (m0 <= 0)
            failures["no convergence or non-positive M0"] = int(bad.sum())
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                r1 = -np.log(np.where(bad_lin, np.nan, e1)) / self.tr_s
            pred = spgr_signal(m0[:, None], r1[:, None], alpha, self.tr_s)
            quality = r_squared(s, np.sum((s - pred) ** 2, axis=1))
            bad = bad_lin
            failures["E1 outside (0, 1) in the linear fit"] = int(bad.sum())
        bad |= ~np.isfinite(r1)
        r1 = np.where(bad, np.nan, r1)
        m0 = np.where(bad, np.nan, m0)
        quality = np.where(bad, np.nan, quality)
        failures = Counter({k: v for k, v in failures.items() if v})
        with np.errstate(divide="ignore"):
            t1 = 1.0 / r1
        maps = {"r1_per_s": to_maps(r1, spatial, sel, np.float64),
                "t1_s": to_maps(t1, spatial, sel, np.float64),
                "m0": to_maps(m0, spatial, sel, np.float64)}
        return FitResult(maps=maps, units={"r1_per_s": "s-1", "t1_s": "s", "m0": "a.u."},
                         quality=to_maps(quality, spatial, sel, np.float64), failures=failures,
                         provenance={"model": "SPGR variable flip angle", "method": self.method,
                                     "flip_angles_deg": self.flip_angles_deg.tolist(), "tr_s": self.tr_s,
                                     "b1_corrected": b1 is not None})

    def _nonlinear(self, s: np.ndarray, alpha: np.ndarray, m0_0: np.ndarray, r1_0: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        tr = self.tr_s
        sa, ca = np.sin(alpha), np.cos(alpha)

        def model(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
            e1 = np.exp(-tr * p[:, 1:2])
            signal: np.ndarray = p[:, 0:1] * sa[idx] * (1 - e1) / (1 - ca[idx] * e1)
            return signal

        def jac(p: np.ndarray, idx: np.ndarray, f: np.ndarray) -> np.ndarray:
            e1 = np.exp(-tr * p[:, 1:2])
            den = 1 - ca[idx] * e1
            d_m0 = sa[idx] * (1 - e1) / den
            d_e1 = p[:, 0:1] * sa[idx] * (ca[idx] - 1) / den ** 2
            return np.stack([d_m0, d_e1 * (-tr * e1)], axis=-1)

        res = levenberg_marquardt(model, s, np.column_stack([m0_0, r1_0]),
                                  lower=[0.0, self.r1_bounds[0]], upper=[np.inf, self.r1_bounds[1]],
                                  jacobian=jac, max_iter=100)
        return res.params[:, 1], res.params[:, 0], res.sse, res.converged
