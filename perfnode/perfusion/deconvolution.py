"""Model-free deconvolution of indicator-dilution curves by truncated SVD, batched over voxels.

``C_tissue(t) = F · (C_a ⊗ R)(t)``: given the arterial input ``C_a`` and many tissue curves, recover
the flow-scaled residue ``k(t) = F·R(t)`` of every voxel. The AIF matrix is decomposed once; every
voxel is then one row of a matrix product, so a whole volume costs a few BLAS calls.

Methods
-------
``ssvd``
    Standard SVD (Østergaard et al., MRM 1996) on the lower-triangular convolution matrix
    (see :func:`convolution_matrix`), singular values below ``threshold · s_max`` dropped (default 0.2).
    Underestimates flow when the tissue bolus arrives later than the AIF (delay-sensitive).
``csvd``
    Block-circulant SVD (Wu et al., MRM 2003;50:164): AIF and tissue curves zero-padded to
    ``L = 2N``, circulant matrix ``D[i, j] ≈ Δt · C_a[(i − j) mod L]``; insensitive to a delay of the
    tissue curve (the delay becomes a circular shift of ``k``). Default threshold 0.1.
``osvd``
    Oscillation-index cSVD (Wu 2003): per voxel, the smallest truncation threshold whose residue has
    an oscillation index ``OI = 1/(L·k_max) · Σ_{i=2}^{L−1} |k_i − 2k_{i−1} + k_{i−2}|`` at or below
    ``oi_threshold`` (Wu 2003: 0.095), chosen from :data:`OSVD_THRESHOLDS`. By default the list is
    searched by bisection per voxel (4 evaluations for 11 thresholds, all voxels at once), which
    assumes, as Wu's iteration does, that OI grows as the threshold falls; ``search="scan"`` tries
    every threshold.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

Method = Literal["ssvd", "csvd", "osvd"]
METHODS: tuple[str, ...] = ("ssvd", "csvd", "osvd")
DEFAULT_THRESHOLD: dict[str, float] = {"ssvd": 0.2, "csvd": 0.1, "osvd": 0.1}
#: Wu et al. MRM 2003;50:164–174, oscillation-index threshold used for oSVD.
WU_OI_THRESHOLD = 0.095
#: Truncation thresholds (fraction of the largest singular value) scanned by oSVD, high to low.
OSVD_THRESHOLDS: tuple[float, ...] = (0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.075, 0.05, 0.03, 0.02, 0.01)
#: Arrays in the solver's working precision (``dtype``: float32 by default, or float64).
_Floats = NDArray[np.floating[Any]]
_Complex = NDArray[np.complexfloating[Any, Any]]


def convolution_matrix(aif: np.ndarray, dt: float, circulant: bool = False) -> np.ndarray:
    """The discrete convolution operator of ``aif`` (N samples, spacing ``dt``).

    Both AIF and residue are taken as linear between samples (Sourbron et al., MRM 2007 "Volterra"
    discretisation): lower-triangular ``(N, N)`` with
    ``A[i, m] = dt/6 · (a[i−m−1] + 4·a[i−m] + a[i−m+1])`` inside and the trapezoid end weights at
    ``m = 0`` and ``m = i``; or block-circulant ``(2N, 2N)`` on the zero-padded AIF with the same
    (1, 4, 1)/6 stencil taken periodically.
    """
    a = np.asarray(aif, dtype=np.float64)
    n = a.size
    if circulant:
        a = np.concatenate([a, np.zeros(n)])
        n = a.size
        smooth = (np.roll(a, 1) + 4.0 * a + np.roll(a, -1)) / 6.0
        lag = np.subtract.outer(np.arange(n), np.arange(n)) % n
        circ: NDArray[np.float64] = dt * smooth[lag]
        return circ
    pad = np.concatenate([[0.0], a, [0.0]])  # pad[k + 1] = a[k]
    i, m = np.indices((n, n))
    lag = i - m
    low = np.clip(lag, 0, n - 1)
    before, here, after = pad[low], pad[low + 1], pad[np.clip(low + 2, 0, n + 1)]
    first = (m >= 1).astype(float)  # the interval ending at t_m exists
    last = (m <= i - 1).astype(float)  # the interval starting at t_m exists
    out = (2.0 * here + after) * first + (before + 2.0 * here) * last
    return np.where(lag >= 0, dt / 6.0 * out, 0.0)


def oscillation_index(k: np.ndarray) -> np.ndarray:
    """Wu 2003 oscillation index of residues ``k`` (..., L); NaN where ``max k <= 0``."""
    k = np.asarray(k)
    length = k.shape[-1]
    second = np.abs(k[..., 2:] - 2.0 * k[..., 1:-1] + k[..., :-2]).sum(axis=-1)
    kmax = k.max(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(kmax > 0, second / (length * kmax), np.nan)


@dataclass
class Deconvolution:
    """Flow-scaled residues ``k = F·R`` (n, L) in 1/s, the threshold used per voxel, and the fit."""

    residue: np.ndarray
    threshold: np.ndarray
    #: R² of the least-squares fit ``A @ k ≈ C`` (1 − residual / total sum of squares), from the
    #: projections on the kept singular vectors: ``‖C − A k‖² = ‖C‖² − Σ_kept (uᵢᵀC)²``.
    r2: np.ndarray
    method: str
    dt: float
    circulant: bool


class SvdDeconvolver:
    """Truncated-SVD deconvolution against one AIF; the decomposition is computed once.

    sSVD uses ``numpy.linalg.svd`` of the lower-triangular matrix. For the block-circulant methods
    the SVD is the discrete Fourier transform: a circulant matrix is diagonalised by the DFT, its
    singular values are ``|DFT(c)|`` of its first column ``c`` and truncating singular values means
    dropping the frequencies with ``|ĉ(ω)| < threshold · max|ĉ|`` (the pairs ω, −ω share a singular
    value and go together). The result is that of the SVD to rounding, at O(L log L) per voxel.
    """

    def __init__(self, aif: np.ndarray, dt: float, method: Method = "osvd", threshold: float | None = None,
                 oi_threshold: float = WU_OI_THRESHOLD, thresholds: tuple[float, ...] = OSVD_THRESHOLDS,
                 dtype: type = np.float32, search: Literal["bisect", "scan"] = "bisect") -> None:
        if method not in METHODS:
            raise ValueError(f"deconvolution method {method!r} is not one of {METHODS}")
        aif = np.asarray(aif, dtype=np.float64)
        if aif.ndim != 1 or aif.size < 4 or not np.all(np.isfinite(aif)):
            raise ValueError("AIF must be a finite 1-D curve of at least 4 samples")
        if not dt > 0:
            raise ValueError(f"sampling interval must be > 0 s, got {dt}")
        if search not in ("bisect", "scan"):
            raise ValueError(f"oSVD threshold search {search!r} is not 'bisect' or 'scan'")
        self.method, self.dt, self.n = method, float(dt), aif.size
        self.circulant = method != "ssvd"
        self.threshold = DEFAULT_THRESHOLD[method] if threshold is None else float(threshold)
        self.oi_threshold = float(oi_threshold)
        self.thresholds = np.array(sorted(thresholds, reverse=True), dtype=np.float64)
        self.search, self.dtype = search, dtype
        self.matrix = convolution_matrix(aif, self.dt, circulant=self.circulant)
        self.length = self.matrix.shape[0]
        if self.circulant:
            spectrum = np.fft.rfft(self.matrix[:, 0])  # eigenvalues ĉ(ω) of the circulant matrix
            self.singular = np.abs(spectrum)
            self.s_max = float(self.singular.max())
            with np.errstate(divide="ignore", invalid="ignore"):
                inverse = np.where(self.singular > 0, 1.0 / spectrum, 0.0)
                self.inverse: _Complex = inverse.astype(_complex(dtype))
            # Parseval weights of the one-sided spectrum: ‖x‖² = Σ w·|x̂|² / L
            w = np.full(self.singular.size, 2.0)
            w[0] = 1.0
            if self.length % 2 == 0:
                w[-1] = 1.0
            self.weights = w
        else:
            with threadpool_limits(limits=1, user_api="blas"):  # see __call__
                u, s, vt = np.linalg.svd(self.matrix)
            self.s = s
            self.ut: _Floats = u.astype(dtype)
            self.vt_scaled: _Floats = (vt / np.where(s > 0, s, np.inf)[:, None]).astype(dtype)

    def reconvolve(self, residue: np.ndarray) -> np.ndarray:
        """``A @ k`` for residues (n, L), cut to the N data samples."""
        full: NDArray[np.float64] = np.asarray(residue, dtype=np.float64) @ self.matrix.T
        return full[:, : self.n]

    def __call__(self, curves: np.ndarray, chunk: int = 8192, threads: int | None = None) -> Deconvolution:
        """Deconvolve tissue curves (n, N), in chunks of ``chunk`` voxels (cache-sized working set).

        Chunks run on ``threads`` threads (default: the CPUs this process may use, at most 4); numpy's
        FFT and ufunc loops release the GIL, so the chunks really run in parallel. BLAS is held to one
        thread meanwhile: its threads would compete with ours, and OpenBLAS's spinning threads make a
        small SVD or product 10–100× slower on a machine shared with other processes.
        """
        curves = np.asarray(curves)
        if curves.ndim != 2 or curves.shape[1] != self.n:
            raise ValueError(f"tissue curves must be (n_voxels, {self.n}), got {curves.shape}")
        n = curves.shape[0]
        residue: _Floats = np.empty((n, self.length), dtype=self.dtype)
        thr = np.empty(n, dtype=np.float64)
        r2 = np.empty(n, dtype=np.float64)
        solve = self._solve_fft if self.circulant else self._solve_svd

        def work(start: int) -> None:
            stop = min(start + chunk, n)
            block: _Floats = curves[start:stop].astype(self.dtype)
            thr[start:stop], resid = solve(block, residue[start:stop])
            total = ((block - block.mean(axis=1, keepdims=True)).astype(np.float64) ** 2).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                r2[start:stop] = 1.0 - resid / total

        starts = range(0, n, chunk)
        if threads is None:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            threads = min(4, cpus)
        threads = max(1, threads)
        with threadpool_limits(limits=1, user_api="blas"):
            if threads == 1 or len(starts) == 1:
                for start in starts:
                    work(start)
            else:
                with ThreadPoolExecutor(max_workers=threads) as pool:
                    list(pool.map(work, starts))
        return Deconvolution(residue, thr, r2, self.method, self.dt, self.circulant)

    def _solve_svd(self, block: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = int(np.count_nonzero(self.s >= self.threshold * self.s[0]))
        proj = block @ self.ut  # uᵢᵀC
        np.matmul(proj[:, :k], self.vt_scaled[:k], out=out)
        p2 = proj.astype(np.float64) ** 2
        resid = p2[:, k:].sum(axis=1)  # ‖C − A k‖² = Σ_dropped (uᵢᵀC)²
        return np.full(block.shape[0], self.threshold), resid

    def _kept(self, thr: np.ndarray) -> np.ndarray:
        """Per-voxel kept frequencies (m, F) for per-voxel thresholds ``thr`` (m,)."""
        return self.singular[None, :] >= (thr * self.s_max)[:, None]

    def _residue(self, coef: np.ndarray, thr: np.ndarray) -> np.ndarray:
        return np.fft.irfft(coef * self._kept(thr), self.length, axis=1)

    def _oi_ok(self, k: np.ndarray) -> np.ndarray:
        # OI ≤ limit  ⇔  Σ|second difference| ≤ limit · L · max(k)
        second = np.abs(np.diff(k, 2, axis=1)).sum(axis=1)
        ok: NDArray[np.bool_] = second <= self.oi_threshold * self.length * k.max(axis=1)
        return ok

    def _solve_fft(self, block: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = block.shape[0]
        spec = np.fft.rfft(block, self.length, axis=1)  # zero-padded to L = 2N
        coef = spec * self.inverse
        if self.method == "csvd":
            thr = np.full(m, self.threshold)
        elif self.search == "scan":  # every threshold, high to low; keep the lowest with OI ≤ limit
            thr = np.full(m, self.thresholds[0])
            for t in self.thresholds[1:]:
                ok = self._oi_ok(self._residue(coef, np.full(m, t)))
                thr[ok] = t
        else:  # bisection over the threshold list, assuming OI grows as the threshold falls
            lo = np.zeros(m, dtype=np.int64)  # index of a threshold known to pass (the highest always does)
            hi = np.full(m, self.thresholds.size, dtype=np.int64)  # first index known to fail
            while np.any(hi - lo > 1):
                mid = (lo + hi) // 2
                active = hi - lo > 1
                ok = self._oi_ok(self._residue(coef, self.thresholds[np.minimum(mid, hi - 1)]))
                lo = np.where(active & ok, mid, lo)
                hi = np.where(active & ~ok, mid, hi)
            thr = self.thresholds[lo]
        kept = self._kept(thr)
        out[:] = np.fft.irfft(coef * kept, self.length, axis=1)
        power = self.weights * (spec.real.astype(np.float64) ** 2 + spec.imag.astype(np.float64) ** 2)
        resid = (power * ~kept).sum(axis=1) / self.length  # Parseval: energy of the dropped frequencies
        return thr, resid


def _complex(dtype: type) -> type:
    return np.complex64 if np.dtype(dtype) == np.float32 else np.complex128


def residue_peak(residue: np.ndarray, dt: float, n_samples: int, circulant: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Peak height (CBF·R max, 1/s) and its time Tmax (s) of each residue, with parabolic refinement.

    For circulant residues an index in the second half of the padded axis is a negative delay.
    """
    length = residue.shape[-1]
    idx = np.argmax(residue, axis=-1)
    rows = np.arange(residue.shape[0])
    peak = residue[rows, idx]
    left = residue[rows, (idx - 1) % length]
    right = residue[rows, (idx + 1) % length]
    if not circulant:
        left = np.where(idx == 0, peak, left)
        right = np.where(idx == length - 1, peak, right)
    denom = left - 2.0 * peak + right
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(denom < 0, 0.5 * (left - right) / denom, 0.0)
    frac = np.clip(frac, -0.5, 0.5)
    pos = idx + frac
    if circulant:
        pos = np.where(pos >= n_samples, pos - length, pos)
    return peak, pos * dt
