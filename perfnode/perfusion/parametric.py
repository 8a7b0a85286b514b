"""Model-based ("parametric") deconvolution of indicator-dilution curves, batched over voxels.

Instead of inverting the convolution without a model (SVD, whose truncation flattens the sharp
start of a short residue and so underestimates high flow: Østergaard 1996, Wu 2003), the tissue curve
is fitted with a residue of known shape:

``C(t) = F · ∫ C_a(τ − δ) · R(t − τ) dτ``

three parameters per voxel: the flow ``F`` (1/s, the residue's height at 0), the mean transit time
``MTT`` (s) and the arterial delay ``δ`` (s, = Tmax). ``R`` is the survival function of a gamma
transit-time distribution of integer shape ``k`` (Mouridsen et al., NeuroImage 2006;33:570):
``R(t) = e^{−t/β} Σ_{j<k} (t/β)^j / j!`` with ``β = MTT/k``; ``k = 1`` is the exponential residue of
parametric DSC/CT analysis (Larsson et al., MRM 1990;16:117; Østergaard et al., JCBFM 1999;19:690),
larger ``k`` are narrower transit-time distributions (``k → ∞``: a boxcar, plug flow). The exponential
is the realistic one for normal brain (capillary transit-time heterogeneity CTH ≈ MTT: Jespersen &
Østergaard, JCBFM 2012;32:264). CBV follows as ``F·MTT`` (central volume theorem).

The convolution is integrated exactly for a piecewise-linear input (:func:`perfnode.perfusion.pk_models.
expconv`; ``k`` chained exponential convolutions: an Erlang density is ``k`` exponentials in series)
on a grid :data:`UPSAMPLE` times finer than the frames, the AIF interpolated by a cubic spline: a bolus
only 3–4 frames wide is not piecewise linear, and at 1.5 s sampling the coarse model overestimated CBF
by 9 % at CBF 80 ml/100 ml/min even without noise (the fine grid: 1–2 %, benchmarks/accuracy.py).
The fit is the batched, bounded Levenberg–Marquardt of :mod:`perfnode.perfusion.lm`, started from the
SVD solution; it iterates to a tolerance and flags per voxel whether it converged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.interpolate import CubicSpline

from perfnode.perfusion import pk_models as pk
from perfnode.perfusion.lm import chunks, levenberg_marquardt, map_chunks

#: Parameter bounds: F (1/s: unbounded above, since a relative AIF scale makes any F possible),
#: MTT (s), delay (s).
LOWER = np.array([0.0, 0.3, -5.0])
UPPER = np.array([np.inf, 40.0, 20.0])
#: Sub-steps per frame interval of the grid the model is computed on.
UPSAMPLE = 4
#: Gamma shapes tried by :func:`select_shape` (1: exponential; 5: already close to plug flow at the
#: sampling of DSC/CT).
SHAPES: tuple[int, ...] = (1, 2, 3, 5)


@dataclass
class ParametricFit:
    """Per-voxel parameters and fit statistics of :func:`fit_residue`."""

    flow: np.ndarray  # F, 1/s
    mtt_s: np.ndarray
    delay_s: np.ndarray
    sse: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    shape: int = 1


def fine_grid(times: np.ndarray, aif: np.ndarray, upsample: int = UPSAMPLE
              ) -> tuple[np.ndarray, np.ndarray, slice]:
    """``(fine times, AIF on them (cubic spline), slice taking the frames back)``."""
    t = np.asarray(times, dtype=np.float64)
    a = np.asarray(aif, dtype=np.float64)
    if upsample <= 1 or t.size < 4:
        return t, a, slice(None)
    idx = np.arange((t.size - 1) * upsample + 1) / upsample
    tf = np.interp(idx, np.arange(t.size), t)  # each interval cut in `upsample` (non-uniform kept)
    return tf, CubicSpline(t, a)(tf), slice(None, None, upsample)


def _convolve(tf: np.ndarray, af: np.ndarray, p: np.ndarray, shape: int) -> np.ndarray:
    """``∫ af(τ − δ)·R(t − τ) dτ`` on the fine grid for ``p`` = (·, MTT, δ): ``(n, fine t)``."""
    shifted = pk.shift_aif(tf, af, p[:, 2])
    rate = shape / p[:, 1]  # 1/β
    h = pk.expconv(tf, shifted, rate)
    total = h
    for _ in range(1, shape):  # h_j = (1/β)·(h_{j−1} ⊛ e^{−t/β}): the next Erlang term of R
        h = pk.expconv(tf, h, rate) * rate[:, None]
        total = total + h
    return total


def predict(times: np.ndarray, aif: np.ndarray, p: np.ndarray, shape: int = 1) -> np.ndarray:
    """Model curves ``(n, t)`` for parameters ``p`` ``(n, 3)`` = (F, MTT, delay), gamma shape ``shape``."""
    tf, af, take = fine_grid(times, aif)
    unit = _convolve(tf, af, np.asarray(p, dtype=np.float64), shape)[:, take]
    curves: NDArray[np.float64] = p[:, 0:1] * unit
    return curves


def _difference_columns(model: Callable[[np.ndarray, np.ndarray], np.ndarray], p: np.ndarray,
                        idx: np.ndarray, f: np.ndarray, j: np.ndarray, columns: tuple[int, ...]) -> None:
    """Fill Jacobian columns ``columns`` of ``j`` by forward differences of ``model`` at ``p`` (``f``)."""
    for k in columns:
        h = 1e-4 * np.abs(p[:, k]) + 1e-4
        q = p.copy()
        q[:, k] += h
        j[:, :, k] = (model(q, idx) - f) / h[:, None]


def fit_exponential_residue(curves: np.ndarray, aif: np.ndarray, times: np.ndarray, start: np.ndarray, *,
                            area: np.ndarray | None = None, max_iter: int = 200, chunk: int = 8192,
                            workers: int | None = None) -> ParametricFit:
    """:func:`fit_residue` with the exponential residue (shape 1)."""
    return fit_residue(curves, aif, times, start, shape=1, area=area, max_iter=max_iter, chunk=chunk,
                       workers=workers)


def fit_residue(curves: np.ndarray, aif: np.ndarray, times: np.ndarray, start: np.ndarray, *,
                shape: int = 1, area: np.ndarray | None = None, max_iter: int = 200, chunk: int = 8192,
                workers: int | None = None) -> ParametricFit:
    """Fit ``curves`` ``(n, t)`` (baseline-subtracted concentration) against ``aif`` ``(t,)``.

    ``start`` ``(n, 3)``: starting (F, MTT, delay), e.g. from oSVD; clipped to the bounds. ``shape``:
    the gamma shape of the residue (1 = exponential). ``area`` ``(n,)``: the area ratio ``∫C/∫C_a``
    (= F·MTT, the blood volume) of each curve; when given, F is tied to it (``F = area/MTT``) and only
    MTT and the delay are fitted: the volume, linear in the data, carries no noise-driven bias, and at
    low contrast-to-noise the flow of slow, low-volume tissue (an ischaemic core) is less overestimated
    (the CT perfusion jobs: tests/perfusion/test_ctp_stroke.py); at high flow and low CNR it scatters
    more (benchmarks/accuracy.py).
    """
    if shape < 1:
        raise ValueError(f"gamma residue shape must be a positive integer, got {shape}")
    t = np.asarray(times, dtype=np.float64)
    tf, af, take = fine_grid(t, np.asarray(aif, dtype=np.float64))
    y = np.asarray(curves, dtype=np.float64)
    n = y.shape[0]
    p0 = np.clip(np.nan_to_num(np.asarray(start, dtype=np.float64), nan=1.0), LOWER, UPPER)
    tied = area is not None
    scale = np.clip(np.nan_to_num(np.asarray(area, dtype=np.float64)), 0.0, None) if tied else None
    out = {k: np.empty(n) for k in ("f", "m", "d", "sse", "it")}
    conv = np.zeros(n, bool)

    def unit(p: np.ndarray) -> np.ndarray:  # the model for F = 1
        curves: NDArray[np.float64] = _convolve(tf, af, p, shape)[:, take]
        return curves

    def run(sl: slice) -> int:
        if scale is not None:
            w = scale[sl]

            def model(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
                full = np.column_stack([w[idx] / p[:, 0], p])
                curves: NDArray[np.float64] = full[:, 0:1] * unit(full)
                return curves

            def jac(p: np.ndarray, idx: np.ndarray, f: np.ndarray) -> np.ndarray:
                j = np.empty((*f.shape, 2))
                _difference_columns(model, p, idx, f, j, (0, 1))
                return j

            res = levenberg_marquardt(model, y[sl], p0[sl, 1:], LOWER[1:], UPPER[1:], jac,
                                      max_iter=max_iter, ftol=1e-7, xtol=1e-7)
            out["m"][sl], out["d"][sl] = res.params.T
            with np.errstate(divide="ignore", invalid="ignore"):
                out["f"][sl] = w / res.params[:, 0]
        else:
            def model(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
                curves: NDArray[np.float64] = p[:, 0:1] * unit(p)
                return curves

            def jac(p: np.ndarray, idx: np.ndarray, f: np.ndarray) -> np.ndarray:
                # ∂C/∂F = C/F exactly (saves one convolution); the others by forward differences
                j = np.empty((*f.shape, 3))
                safe = p[:, 0] > 1e-9
                j[:, :, 0] = np.where(safe[:, None], f / np.where(safe, p[:, 0], 1.0)[:, None],
                                      unit(p) if not safe.all() else 0.0)
                _difference_columns(model, p, idx, f, j, (1, 2))
                return j

            res = levenberg_marquardt(model, y[sl], p0[sl], LOWER, UPPER, jac, max_iter=max_iter,
                                      ftol=1e-7, xtol=1e-7)
            out["f"][sl], out["m"][sl], out["d"][sl] = res.params.T
        out["sse"][sl], out["it"][sl] = res.sse, res.iterations
        conv[sl] = res.converged
        return 0

    map_chunks(run, chunks(n, chunk), workers)
    return ParametricFit(out["f"], out["m"], out["d"], out["sse"], conv, out["it"].astype(int), shape)


def select_shape(curves: np.ndarray, aif: np.ndarray, times: np.ndarray, start: np.ndarray, *,
                 shapes: tuple[int, ...] = SHAPES, sample: int = 1500) -> tuple[int, dict[int, float]]:
    """The gamma shape that fits a sample of ``curves`` best, and each shape's score.

    One voxel cannot tell the shapes apart at clinical noise (its best shape is nearly random), a
    thousand can: the score of a shape is the mean over the sampled voxels of
    ``log(SSE_shape / min over shapes SSE)`` (0 for a shape best everywhere; independent of each voxel's
    noise level). The sample: up to ``sample`` curves, evenly spread, among those whose area lies
    between the median and the 95th percentile (tissue with good contrast-to-noise, not the vessels).
    """
    y = np.asarray(curves, dtype=np.float64)
    n = y.shape[0]
    if n == 0:
        return shapes[0], {}
    area = np.nan_to_num(y.sum(axis=1), nan=-np.inf)
    order = np.argsort(area)
    band = order[n // 2: max(n // 2 + 1, int(0.95 * n))]
    pick = band[np.linspace(0, band.size - 1, min(sample, band.size)).astype(int)]
    sse = np.stack([fit_residue(y[pick], aif, times, np.asarray(start)[pick], shape=k).sse for k in shapes])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.log(np.maximum(sse, 1e-300) / np.maximum(sse.min(axis=0), 1e-300))
    ok = np.all(np.isfinite(rel), axis=0)
    scores = {k: float(np.mean(rel[i, ok])) if ok.any() else float("inf") for i, k in enumerate(shapes)}
    return min(scores, key=lambda k: scores[k]), scores
