"""Tracer-kinetic forward models for DCE-MRI, vectorised over voxels.

Conventions: time ``t`` in **minutes** (1-D, increasing, need not be uniform); plasma AIF ``cp``
in mM, shape ``(t,)`` shared or ``(n, t)`` per voxel (e.g. after a per-voxel delay); rate
constants in min⁻¹; volume fractions dimensionless; ``fp`` here as a rate in min⁻¹ (ml/ml/min;
×100 gives ml/100ml/min). Every model returns tissue concentration ``(n, t)`` in mM.

Convolutions with exponentials integrate a piecewise-linear AIF exactly, by the recursion
``F(tᵢ) = e^{−kΔt}·F(tᵢ₋₁) + ∫_{tᵢ₋₁}^{tᵢ} cp(τ)e^{−k(tᵢ−τ)}dτ`` (the last term in closed form), so
no upsampling is needed and the cost is one multiply-add per sample and voxel. The models are
checked against ODE solutions and fine-grid convolutions (tests/perfusion/test_dce.py).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _phi(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """φ1(x) = (1 − e⁻ˣ)/x and φ2(x) = (x − 1 + e⁻ˣ)/x², with series near 0."""
    small = x < 1e-3
    xs = np.where(small, 1.0, x)
    em1 = -np.expm1(-xs)
    phi1 = np.where(small, 1 - x / 2 + x * x / 6, em1 / xs)
    phi2 = np.where(small, 0.5 - x / 6 + x * x / 24, (xs - em1) / (xs * xs))
    return phi1, phi2


#: Below this many (curves × samples) :func:`expconv` convolves by FFT instead of its recursion.
FFT_BELOW = 32768


def expconv(t: np.ndarray, cp: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``∫₀ᵗ cp(τ)·exp(−k(t−τ)) dτ`` for each rate ``k`` ``(n,)`` (min⁻¹ ≥ 0); returns ``(n, t)``."""
    t = np.asarray(t, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64).reshape(-1, 1)
    cp = np.atleast_2d(cp)
    dt = np.diff(t)[None, :]
    if np.allclose(dt, dt[0, 0], rtol=1e-9, atol=0):  # uniform grid: one decay factor per voxel
        dt = dt[:, :1]
    x = k * dt
    e = np.exp(-x)
    phi1, phi2 = _phi(x)
    # work time-major (t, n) so that every step of the recursion touches contiguous memory
    b = (dt * (phi1 - phi2)).T * cp[:, :-1].T + (dt * phi2).T * cp[:, 1:].T
    if e.shape[1] == 1 and k.shape[0] * t.size <= FFT_BELOW:
        # few curves (the last voxels of a batched fit): the recursion's Python loop costs more than
        # its arithmetic; the same sum as a convolution with e^m by FFT:
        # out[i] = Σ_{j<i} e^{i−1−j} b[j]
        m = t.size - 1
        size = 1 << int(np.ceil(np.log2(2 * m)))
        g = np.exp(-x * np.arange(m)[None, :])  # (n, m)
        full = np.fft.irfft(np.fft.rfft(b.T, size, axis=1) * np.fft.rfft(g, size, axis=1), size, axis=1)
        out = np.zeros((k.shape[0], t.size))
        out[:, 1:] = full[:, :m]
        return out
    e = np.ascontiguousarray(e.T)
    step_e = (lambda i: e[0]) if e.shape[0] == 1 else (lambda i: e[i])
    out = np.empty((t.size, b.shape[1]))
    out[0] = 0.0
    for i in range(t.size - 1):
        np.multiply(step_e(i), out[i], out=out[i + 1])
        out[i + 1] += b[i]
    return out.T


def cumtrapz(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Cumulative trapezoid integral along the last axis, starting at 0 at ``t[0]``."""
    y = np.asarray(y, dtype=np.float64)
    inc = 0.5 * (y[..., 1:] + y[..., :-1]) * np.diff(t)
    return np.concatenate([np.zeros((*y.shape[:-1], 1)), np.cumsum(inc, axis=-1)], axis=-1)


def shift_aif(t: np.ndarray, cp: np.ndarray, delay: np.ndarray) -> np.ndarray:
    """``cp(t − delay)`` per voxel by linear interpolation (zero before the first sample): ``(n, t)``."""
    delay = np.asarray(delay, dtype=np.float64).reshape(-1, 1)
    ts = t[None, :] - delay
    i = np.clip(np.searchsorted(t, ts, side="right") - 1, 0, t.size - 2)
    w = (ts - t[i]) / (t[i + 1] - t[i])
    out = cp[i] * (1 - w) + cp[i + 1] * w
    out = np.where(ts < t[0], 0.0, out)
    return np.where(ts > t[-1], cp[-1], out)


def tofts(t: np.ndarray, cp: np.ndarray, ktrans: ArrayLike, kep: ArrayLike) -> np.ndarray:
    """Standard Tofts: ``Ktrans·(cp ⊛ e^{−kep t})``."""
    out: NDArray[np.float64] = np.asarray(ktrans).reshape(-1, 1) * expconv(t, cp, np.asarray(kep))
    return out


def extended_tofts(t: np.ndarray, cp: np.ndarray, ktrans: ArrayLike, kep: ArrayLike, vp: ArrayLike
                   ) -> np.ndarray:
    """Extended Tofts: ``vp·cp + Ktrans·(cp ⊛ e^{−kep t})``."""
    out: NDArray[np.float64] = np.asarray(vp).reshape(-1, 1) * np.atleast_2d(cp) + tofts(t, cp, ktrans, kep)
    return out


def patlak(t: np.ndarray, cp: np.ndarray, ps: ArrayLike, vp: ArrayLike) -> np.ndarray:
    """Patlak: ``vp·cp + PS·∫cp``."""
    cp = np.atleast_2d(cp)
    out: NDArray[np.float64] = (np.asarray(vp).reshape(-1, 1) * cp
                                + np.asarray(ps).reshape(-1, 1) * cumtrapz(cp, t))
    return out


def two_cxm_rates(fp: np.ndarray, ps: np.ndarray, vp: np.ndarray, ve: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigen-rates K± (min⁻¹) and weight E₋ of the 2CXM impulse response (Sourbron & Buckley 2011)."""
    kp, ke, kb = (fp + ps) / vp, ps / ve, fp / vp
    root = np.sqrt(np.maximum((kp + ke) ** 2 - 4 * ke * kb, 0.0))
    k_plus, k_minus = 0.5 * (kp + ke + root), 0.5 * (kp + ke - root)
    with np.errstate(divide="ignore", invalid="ignore"):
        e_minus = np.where(k_plus > k_minus, (k_plus - kb) / (k_plus - k_minus), 0.0)
    return k_plus, k_minus, e_minus


def two_cxm(t: np.ndarray, cp: np.ndarray, fp: ArrayLike, ps: ArrayLike, vp: ArrayLike, ve: ArrayLike
            ) -> np.ndarray:
    """Two-compartment exchange: ``Fp·cp ⊛ [(1−E₋)e^{−K₊t} + E₋e^{−K₋t}]``."""
    fp, ps, vp, ve = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (fp, ps, vp, ve))
    k_plus, k_minus, e_minus = two_cxm_rates(fp, ps, vp, ve)
    out: NDArray[np.float64] = fp[:, None] * ((1 - e_minus)[:, None] * expconv(t, cp, k_plus)
                                              + e_minus[:, None] * expconv(t, cp, k_minus))
    return out


def two_cum(t: np.ndarray, cp: np.ndarray, fp: ArrayLike, ps: ArrayLike, vp: ArrayLike) -> np.ndarray:
    """Two-compartment uptake (no back-flux): ``Fp·[(1−E)·cp ⊛ e^{−t/Tp} + E·∫cp]``, Tp = vp/(Fp+PS)."""
    fp, ps, vp = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (fp, ps, vp))
    e = ps / (fp + ps)
    out: NDArray[np.float64] = fp[:, None] * ((1 - e)[:, None] * expconv(t, cp, (fp + ps) / vp)
                                              + e[:, None] * cumtrapz(np.atleast_2d(cp), t))
    return out
