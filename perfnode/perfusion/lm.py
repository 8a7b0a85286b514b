"""Batched, bounded Levenberg–Marquardt over many curves at once.

Every voxel is an independent small least-squares problem ``min ||y - f(p)||²`` with ``k``
parameters. Instead of calling ``scipy.optimize.curve_fit`` once per voxel, all voxels take
their LM step together: the Jacobians ``(n, t, k)`` and the ``(n, k, k)`` normal equations
are built and solved with one numpy call per iteration, each voxel keeping its own damping.
Bounds are enforced by projecting every trial step onto the box (a projected LM).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

#: ``model(p, idx)`` -> predicted curves ``(m, t)`` for parameters ``p`` ``(m, k)`` of voxels ``idx``.
Model = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: ``jacobian(p, idx, f)`` -> ``(m, t, k)``; ``f`` is ``model(p, idx)``, already computed.
Jacobian = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class LMResult:
    params: np.ndarray      # (n, k)
    sse: np.ndarray         # (n,) residual sum of squares at ``params``
    iterations: np.ndarray  # (n,) iterations each voxel took
    converged: np.ndarray   # (n,) bool


def fd_jacobian(model: Model, rel_step: float = 1e-6, abs_step: float = 1e-9) -> Jacobian:
    """A forward-difference Jacobian for ``model`` (one extra model call per parameter)."""

    def jac(p: np.ndarray, idx: np.ndarray, f: np.ndarray) -> np.ndarray:
        out = np.empty((*f.shape, p.shape[1]))
        for j in range(p.shape[1]):
            h = rel_step * np.abs(p[:, j]) + abs_step
            q = p.copy()
            q[:, j] += h
            out[:, :, j] = (model(q, idx) - f) / h[:, None]
        return out

    return jac


def levenberg_marquardt(model: Model, y: np.ndarray, p0: np.ndarray, lower: ArrayLike,
                        upper: ArrayLike, jacobian: Jacobian | None = None, max_iter: int = 50,
                        ftol: float = 1e-8, xtol: float = 1e-8, lam0: float = 1e-3,
                        project: Callable[[np.ndarray], np.ndarray] | None = None,
                        stall_window: int = 10, stall_tol: float = 1e-4) -> LMResult:
    """Fit all curves ``y`` ``(n, t)`` from starting values ``p0`` ``(n, k)`` within ``[lower, upper]``.

    ``project`` may add constraints beyond the box (applied after clipping to it). Voxels stop
    iterating individually (converged) once the relative decrease of their SSE in one step is below
    ``ftol``, their relative step below ``xtol``, their SSE fell by less than ``stall_tol`` (relative)
    over the last ``stall_window`` iterations (a fit crawling along a bound or a flat valley: 1e-4 of the
    SSE is a hundredth of one noise variance for a 60-sample curve, nothing a parameter estimate can
    feel), or no step improves it.
    """
    y = np.asarray(y, dtype=np.float64)
    n, k = p0.shape
    lo = np.broadcast_to(np.asarray(lower, dtype=np.float64), (k,))
    hi = np.broadcast_to(np.asarray(upper, dtype=np.float64), (k,))
    jacobian = jacobian or fd_jacobian(model)

    def clip(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, lo, hi)
        return project(p) if project is not None else p

    p = clip(np.asarray(p0, dtype=np.float64).copy())
    all_idx = np.arange(n)
    f = model(p, all_idx)
    sse = np.sum((y - f) ** 2, axis=1)
    lam = np.full(n, lam0)
    iters = np.zeros(n, dtype=np.int64)
    done = ~np.isfinite(sse) | (sse == 0)  # nothing to improve on an exact fit (e.g. an all-zero curve)
    eye = np.eye(k)
    history = np.repeat(sse[:, None], stall_window, axis=1)  # SSE of the last `stall_window` iterations
    for it in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        pa, fa, ya = p[act], f[act], y[act]
        J = jacobian(pa, act, fa)
        r = ya - fa
        Jt = J.transpose(0, 2, 1)
        g = np.matmul(Jt, r[..., None])[..., 0]
        H = np.matmul(Jt, J)
        diag = np.einsum("nkk->nk", H)
        scale = np.maximum(diag, 1e-12 * (diag.max(axis=1, keepdims=True) + 1e-300))
        A = H + (lam[act][:, None, None] * scale[:, :, None]) * eye
        try:
            step = np.linalg.solve(A, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(a, b, rcond=None)[0] for a, b in zip(A, g, strict=True)])
        trial = clip(pa + step)
        ft = model(trial, act)
        sse_t = np.sum((ya - ft) ** 2, axis=1)
        better = np.isfinite(sse_t) & (sse_t < sse[act])
        iters[act] += 1
        acc = act[better]
        rel_drop = (sse[acc] - sse_t[better]) / np.maximum(sse[acc], 1e-300)
        dx = np.abs(trial[better] - pa[better])
        small_step = np.all(dx <= xtol * (np.abs(pa[better]) + xtol), axis=1)
        p[acc], f[acc], sse[acc] = trial[better], ft[better], sse_t[better]
        lam[acc] = np.maximum(lam[acc] / 10.0, 1e-12)
        done[acc[(rel_drop < ftol) | small_step]] = True
        rej = act[~better]
        lam[rej] *= 10.0
        done[rej[lam[rej] > 1e10]] = True
        slot = it % stall_window
        if it >= stall_window:
            then = history[act, slot]
            stalled = (then - sse[act]) <= stall_tol * np.maximum(sse[act], 1e-300)
            done[act[stalled]] = True
        history[act, slot] = sse[act]
    return LMResult(p, sse, iters, done & np.isfinite(sse))


def map_chunks(fn: Callable[[slice], int], slices: list[slice], workers: int | None = None) -> list[int]:
    """Run ``fn`` on every chunk, on up to ``workers`` threads (default: the CPU count, at most 4).

    numpy releases the GIL inside its array loops, so independent voxel chunks fitted on two
    threads use both cores of a small machine.
    """
    n = workers or min(4, os.cpu_count() or 1)
    if n <= 1 or len(slices) <= 1:
        return [fn(s) for s in slices]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(fn, slices))


def chunks(n: int, size: int) -> list[slice]:
    """Voxel index slices of at most ``size`` (bounds the memory of the ``(n, t, k)`` Jacobians)."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def r_squared(y: np.ndarray, sse: np.ndarray) -> np.ndarray:
    """Coefficient of determination of each curve's fit, from its SSE."""
    sst = np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst > 0, 1.0 - sse / sst, np.nan)
