"""Model-based ("parametric") deconvolution of indicator-dilution curves, batched over voxels.

Instead of inverting the convolution without a model (SVD, whose truncation flattens the sharp
start of a short residue and so underestimates high flow: Østergaard 1996, Wu 2003), the tissue curve
is fitted with a residue of known shape:

``C(t) = F · ∫ C_a(τ − δ) · exp(−(t − τ)/MTT) dτ``

three parameters per voxel: the flow-scaled peak ``F`` (1/s), the mean transit time ``MTT`` (s) and
the arterial delay ``δ`` (s, = Tmax of this residue). This is the exponential-residue model of
parametric DSC/CT analysis (e.g. Larsson et al., MRM 1990;16:117; Østergaard et al., JCBFM 1999;19:690;
the exponential member of the gamma-residue family of Mouridsen et al., NeuroImage 2006;33:570). CBV
follows as ``F·MTT`` (central volume theorem), so the noise of the whole baseline does not add to it.

The fit is the batched, bounded Levenberg–Marquardt of :mod:`perfnode.perfusion.lm` with the convolution
integrated exactly for a piecewise-linear AIF (:func:`perfnode.perfusion.pk_models.expconv`), started
from the SVD solution; it iterates to a tolerance and flags per voxel whether it converged. When the
true residue is not exponential (e.g. a boxcar-like transit-time distribution) the model is biased:
``benchmarks/accuracy.py`` measures that case too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from perfnode.perfusion import pk_models as pk
from perfnode.perfusion.lm import chunks, levenberg_marquardt, map_chunks

#: Parameter bounds: F (1/s: unbounded above, since a relative AIF scale makes any F possible),
#: MTT (s), delay (s).
LOWER = np.array([0.0, 0.3, -5.0])
UPPER = np.array([np.inf, 40.0, 20.0])


@dataclass
class ParametricFit:
    """Per-voxel parameters and fit statistics of :func:`fit_exponential_residue`."""

    flow: np.ndarray  # F, 1/s
    mtt_s: np.ndarray
    delay_s: np.ndarray
    sse: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray


def predict(times: np.ndarray, aif: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Model curves ``(n, t)`` for parameters ``p`` ``(n, 3)`` = (F, MTT, delay)."""
    shifted = pk.shift_aif(times, aif, p[:, 2])
    curves: NDArray[np.float64] = p[:, 0:1] * pk.expconv(times, shifted, 1.0 / p[:, 1])
    return curves


def fit_exponential_residue(curves: np.ndarray, aif: np.ndarray, times: np.ndarray, start: np.ndarray, *,
                            area: np.ndarray | None = None, max_iter: int = 200, chunk: int = 8192,
                            workers: int | None = None) -> ParametricFit:
    """Fit ``curves`` ``(n, t)`` (baseline-subtracted concentration) against ``aif`` ``(t,)``.

    ``start`` ``(n, 3)``: starting (F, MTT, delay), e.g. from oSVD; clipped to the bounds. ``area``
    ``(n,)``: the area ratio ``∫C/∫C_a`` (= F·MTT, the blood volume) of each curve; when given, F is
    tied to it (``F = area/MTT``) and only MTT and the delay are fitted (less flow overestimation at
    low flow and low noise, but more scatter of flow ratios at low CNR: benchmarks/accuracy.py; the
    DSC and CT models use the untied fit).
    """
    if area is not None:
        return _fit_tied(curves, aif, times, start, np.asarray(area, dtype=np.float64), max_iter, chunk,
                         workers)
    t = np.asarray(times, dtype=np.float64)
    a = np.asarray(aif, dtype=np.float64)
    y = np.asarray(curves, dtype=np.float64)
    n = y.shape[0]
    p0 = np.clip(np.nan_to_num(np.asarray(start, dtype=np.float64), nan=1.0), LOWER, UPPER)
    out = {k: np.empty(n) for k in ("f", "m", "d", "sse", "it")}
    conv = np.zeros(n, bool)

    def model(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return predict(t, a, p)

    def jac(p: np.ndarray, idx: np.ndarray, f: np.ndarray) -> np.ndarray:
        # ∂C/∂F = C/F exactly (saves one convolution); the others by forward differences
        j = np.empty((*f.shape, 3))
        safe = p[:, 0] > 1e-9
        j[:, :, 0] = np.where(safe[:, None], f / np.where(safe, p[:, 0], 1.0)[:, None],
                              predict(t, a, np.column_stack([np.ones(len(p)), p[:, 1:]])))
        for k in (1, 2):
            h = 1e-4 * np.abs(p[:, k]) + 1e-4
            q = p.copy()
            q[:, k] += h
            j[:, :, k] = (predict(t, a, q) - f) / h[:, None]
        return j

    def run(sl: slice) -> int:
        res = levenberg_marquardt(model, y[sl], p0[sl], LOWER, UPPER, jac, max_iter=max_iter,
                                  ftol=1e-7, xtol=1e-7)
        out["f"][sl], out["m"][sl], out["d"][sl] = res.params.T
        out["sse"][sl], out["it"][sl] = res.sse, res.iterations
        conv[sl] = res.converged
        return 0

    map_chunks(run, chunks(n, chunk), workers)
    return ParametricFit(out["f"], out["m"], out["d"], out["sse"], conv, out["it"].astype(int))


def _fit_tied(curves: np.ndarray, aif: np.ndarray, times: np.ndarray, start: np.ndarray, area: np.ndarray,
              max_iter: int, chunk: int, workers: int | None) -> ParametricFit:
    t = np.asarray(times, dtype=np.float64)
    a = np.asarray(aif, dtype=np.float64)
    y = np.asarray(curves, dtype=np.float64)
    n = y.shape[0]
    lo, hi = LOWER[1:], UPPER[1:]
    p0 = np.clip(np.nan_to_num(np.asarray(start, dtype=np.float64)[:, 1:], nan=1.0), lo, hi)
    scale = np.clip(np.nan_to_num(area), 0.0, None)
    out = {k: np.empty(n) for k in ("m", "d", "sse", "it")}
    conv = np.zeros(n, bool)

    def run(sl: slice) -> int:
        w = scale[sl]

        def model(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
            full = np.column_stack([w[idx] / p[:, 0], p])
            return predict(t, a, full)

        def jac(p: np.ndarray, idx: np.ndarray, f: np.ndarray) -> np.ndarray:
            j = np.empty((*f.shape, 2))
            for k in (0, 1):
                h = 1e-4 * np.abs(p[:, k]) + 1e-4
                q = p.copy()
                q[:, k] += h
                j[:, :, k] = (model(q, idx) - f) / h[:, None]
            return j

        res = levenberg_marquardt(model, y[sl], p0[sl], lo, hi, jac, max_iter=max_iter, ftol=1e-7, xtol=1e-7)
        out["m"][sl], out["d"][sl] = res.params.T
        out["sse"][sl], out["it"][sl] = res.sse, res.iterations
        conv[sl] = res.converged
        return 0

    map_chunks(run, chunks(n, chunk), workers)
    return ParametricFit(scale / out["m"], out["m"], out["d"], out["sse"], conv, out["it"].astype(int))
