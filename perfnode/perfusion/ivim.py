"""Diffusion / IVIM: ADC (mono-exponential) and IVIM (bi-exponential), vectorised over voxels.

IVIM signal: ``S(b)/S0 = f·exp(−b·D*) + (1 − f)·exp(−b·D)`` (b in s/mm², D and D* in mm²/s).

- ``method="segmented"`` (ESR recommendation, Table 2): signals normalised to S0 (mean at the
  lowest b); D and f from a log-linear fit of the b > ``b_threshold`` signals (f = 1 − intercept);
  then D* from the full equation over all b-values with D and f fixed (grid search + batched
  Levenberg–Marquardt in one parameter);
- ``method="full"``: all four parameters (S0, f, D, D*) by bounded batched Levenberg–Marquardt,
  started from the segmented solution.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from numpy.typing import ArrayLike

from perfnode.perfusion.base import FitResult, as_curves, to_maps
from perfnode.perfusion.lm import chunks, levenberg_marquardt, map_chunks, r_squared

#: Default bounds on the normalised signal (S0 relative to the lowest-b mean), as in the OSIPI IVIM tests.
DEFAULT_BOUNDS = {"s0": (0.7, 1.3), "f": (0.0, 1.0), "d": (0.0, 0.005), "dstar": (0.005, 0.2)}
UNITS = {"d_mm2_per_s": "mm2/s", "f": "1", "dstar_mm2_per_s": "mm2/s", "s0": "a.u."}


def _loglinear(b: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted (w = S²) straight-line fit of ln S against b per voxel; returns (slope, intercept)."""
    y = np.log(np.maximum(s, 1e-12))
    w = np.maximum(s, 0.0) ** 2
    sw = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        bm = (w * b).sum(axis=1) / sw
        ym = (w * y).sum(axis=1) / sw
        db = b - bm[:, None]
        slope = (w * db * (y - ym[:, None])).sum(axis=1) / (w * db**2).sum(axis=1)
    return slope, ym - slope * bm


def _normalise(s: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s0 = s[:, b == b.min()].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return s / s0[:, None], s0


class ADCModel:
    """Mono-exponential ADC: ``ADCModel(bvalues).fit(dwi)`` → ``adc_mm2_per_s``, ``s0``."""

    def __init__(self, bvalues: ArrayLike, b_min: float = 0.0, b_max: float = np.inf) -> None:
        self.bvalues = np.asarray(bvalues, dtype=np.float64).ravel()
        self.use = (self.bvalues >= b_min) & (self.bvalues <= b_max)
        if np.unique(self.bvalues[self.use]).size < 2:
            raise ValueError("ADC needs at least two distinct b-values in the chosen range")

    def fit(self, data: np.ndarray, mask: np.ndarray | None = None, axis: int = -1, *,
            time_axis: int | None = None) -> FitResult:
        """Fit signals whose b-value axis is ``axis`` (``time_axis`` is accepted as its alias)."""
        axis = axis if time_axis is None else time_axis
        s, spatial, sel = as_curves(data, axis, mask)
        if s.shape[1] != self.bvalues.size:
            raise ValueError(f"data has {s.shape[1]} b-values along axis {axis}, "
                             f"model has {self.bvalues.size}")
        b, su = self.bvalues[self.use], s[:, self.use]
        slope, icpt = _loglinear(b, su)
        ok = np.all(su > 0, axis=1) & np.isfinite(slope)
        adc, s0 = np.where(ok, -slope, np.nan), np.where(ok, np.exp(icpt), np.nan)
        pred = s0[:, None] * np.exp(-b * adc[:, None])
        q = np.where(ok, r_squared(su, np.sum((su - pred) ** 2, axis=1)), np.nan)
        fails = int((~ok).sum())
        return FitResult(maps={"adc_mm2_per_s": to_maps(adc, spatial, sel, np.float64),
                               "s0": to_maps(s0, spatial, sel, np.float64)},
                         units={"adc_mm2_per_s": "mm2/s", "s0": "a.u."},
                         quality=to_maps(q, spatial, sel, np.float64),
                         failures=Counter({"non-positive signal": fails} if fails else {}),
                         provenance={"model": "mono-exponential ADC", "method": "weighted log-linear",
                                     "bvalues": b.tolist()})


class IVIMModel:
    """IVIM model: ``IVIMModel(bvalues, method="segmented"|"full").fit(dwi)``.

    Maps: ``d_mm2_per_s``, ``f``, ``dstar_mm2_per_s``, ``s0`` (signal units). ``bounds`` overrides
    entries of :data:`DEFAULT_BOUNDS` (``s0`` relative to the lowest-b signal).
    """

    def __init__(self, bvalues: ArrayLike, method: str = "segmented", b_threshold: float = 200.0,
                 bounds: dict[str, tuple[float, float]] | None = None, max_iter: int = 50,
                 chunk_voxels: int = 32768, workers: int | None = None) -> None:
        if method not in ("segmented", "full"):
            raise ValueError(f"unknown IVIM method {method!r}; choose 'segmented' or 'full'")
        self.bvalues = np.asarray(bvalues, dtype=np.float64).ravel()
        self.high = self.bvalues > b_threshold
        if np.unique(self.bvalues[self.high]).size < 2:
            raise ValueError(f"IVIM needs at least two distinct b-values above {b_threshold} s/mm²")
        if np.sum(self.bvalues <= b_threshold) < 2:
            raise ValueError(f"IVIM needs at least two b-values at or below {b_threshold} s/mm²")
        self.method, self.b_threshold = method, b_threshold
        self.bounds = {**DEFAULT_BOUNDS, **(bounds or {})}
        self.max_iter, self.chunk_voxels, self.workers = max_iter, chunk_voxels, workers

    def fit(self, data: np.ndarray, mask: np.ndarray | None = None, axis: int = -1, *,
            time_axis: int | None = None) -> FitResult:
        """Fit signals whose b-value axis is ``axis`` (``time_axis`` is accepted as its alias)."""
        axis = axis if time_axis is None else time_axis
        s, spatial, sel = as_curves(data, axis, mask)
        if s.shape[1] != self.bvalues.size:
            raise ValueError(f"data has {s.shape[1]} b-values along axis {axis}, "
                             f"model has {self.bvalues.size}")
        out = np.full((s.shape[0], 4), np.nan)
        sse = np.full(s.shape[0], np.nan)
        y_all, s0_all = _normalise(s, self.bvalues)
        ok = np.isfinite(y_all).all(axis=1) & (s0_all > 0)
        idx = np.flatnonzero(ok)

        def run(sl: slice) -> int:
            ii = idx[sl]
            out[ii], sse[ii] = self._fit_chunk(y_all[ii])
            return 0

        map_chunks(run, chunks(idx.size, self.chunk_voxels), self.workers)
        quality = r_squared(np.where(ok[:, None], y_all, 0.0), sse)
        quality[~ok] = np.nan
        maps = {"s0": out[:, 0] * s0_all, "f": out[:, 1], "d_mm2_per_s": out[:, 2],
                "dstar_mm2_per_s": out[:, 3]}
        bad = int((~ok).sum())
        return FitResult(
            maps={k: to_maps(v, spatial, sel, np.float64) for k, v in maps.items()}, units=UNITS,
            quality=to_maps(quality, spatial, sel, np.float64),
            failures=Counter({"no positive signal at the lowest b-value": bad} if bad else {}),
            provenance={"model": "IVIM bi-exponential", "method": self.method,
                        "b_threshold": self.b_threshold,
                        "bvalues": self.bvalues.tolist(), "bounds": self.bounds,
                        "normalisation": "mean signal at the lowest b-value"})

    def _fit_chunk(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, bd = self.bvalues, self.bounds
        slope, icpt = _loglinear(b[self.high], y[:, self.high])
        d = np.clip(np.nan_to_num(-slope, nan=bd["d"][0]), *bd["d"])
        f = np.clip(np.nan_to_num(1.0 - np.exp(icpt), nan=bd["f"][0]), *bd["f"])
        slow = (1 - f)[:, None] * np.exp(-b * d[:, None])
        resid = y - slow  # = f·exp(−b·D*)
        # D*: SSE(D*) = Σr² − 2f·Σr·e + f²·Σe² on a log grid (one matmul), a parabola through the
        # best grid point and its neighbours (in log D*), then a few 1-D Levenberg–Marquardt steps
        grid = np.geomspace(*bd["dstar"], 64)
        e = np.exp(-np.outer(grid, b))                                  # (G, b)
        sse_g = -2 * f[:, None] * (resid @ e.T) + (f * f)[:, None] * np.sum(e * e, axis=1)
        j = np.clip(np.argmin(sse_g, axis=1), 1, grid.size - 2)
        rows = np.arange(y.shape[0])
        s_m, s_0, s_p = sse_g[rows, j - 1], sse_g[rows, j], sse_g[rows, j + 1]
        den = s_m - 2 * s_0 + s_p
        with np.errstate(divide="ignore", invalid="ignore"):
            off = np.where(den > 0, 0.5 * (s_m - s_p) / den, 0.0)
        h = np.log(grid[1] / grid[0])
        start = np.clip(grid[j] * np.exp(np.clip(off, -1, 1) * h), *bd["dstar"])

        def model1(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
            signal: np.ndarray = slow[idx] + f[idx, None] * np.exp(-b * p[:, :1])
            return signal

        def jac1(p: np.ndarray, idx: np.ndarray, fx: np.ndarray) -> np.ndarray:
            d_dstar: np.ndarray = (-b * f[idx, None] * np.exp(-b * p[:, :1]))[..., None]
            return d_dstar

        r = levenberg_marquardt(model1, y, start[:, None], [bd["dstar"][0]], [bd["dstar"][1]], jac1,
                                max_iter=5, ftol=1e-8)
        s0 = np.ones(y.shape[0])
        p = np.column_stack([np.clip(s0, *bd["s0"]), f, d, r.params[:, 0]])
        if self.method == "segmented":
            return p, r.sse

        def model(q: np.ndarray, idx: np.ndarray) -> np.ndarray:
            signal: np.ndarray = q[:, :1] * (q[:, 1:2] * np.exp(-b * q[:, 3:4])
                                             + (1 - q[:, 1:2]) * np.exp(-b * q[:, 2:3]))
            return signal

        def jac(q: np.ndarray, idx: np.ndarray, fx: np.ndarray) -> np.ndarray:
            es, ef = np.exp(-b * q[:, 2:3]), np.exp(-b * q[:, 3:4])
            s0_, f_ = q[:, :1], q[:, 1:2]
            return np.stack([f_ * ef + (1 - f_) * es, s0_ * (ef - es), -b * s0_ * (1 - f_) * es,
                             -b * s0_ * f_ * ef], axis=-1)

        lo = [bd["s0"][0], bd["f"][0], bd["d"][0], bd["dstar"][0]]
        hi = [bd["s0"][1], bd["f"][1], bd["d"][1], bd["dstar"][1]]
        full = levenberg_marquardt(model, y, p, lo, hi, jac, self.max_iter)
        return full.params, full.sse
