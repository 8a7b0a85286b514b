"""Indicator-dilution simulations for the DSC/CT tests (generated in the test, never committed).

Gamma-variate AIF (Wu/Mouridsen: α = 3, β = 1.5 s), exponential residue R(t) = exp(−t/MTT),
``C_tissue = CBF · (C_a ⊗ R)`` computed on a 0.05 s grid and sampled at the frame times, so the
discretisation of the simulation is much finer than that of the analysis.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

FINE_DT = 0.05


def gamma_variate(t: np.ndarray, t0: float = 10.0, alpha: float = 3.0, beta: float = 1.5,
                  peak: float = 80.0) -> np.ndarray:
    """Gamma variate with its maximum ``peak`` at ``t0 + alpha·beta``."""
    s = np.clip(t - t0, 0.0, None)
    g = s**alpha * np.exp(-s / beta)
    return peak * g / ((alpha * beta) ** alpha * np.exp(-alpha))


def tissue_curves(times: np.ndarray, cbf: np.ndarray, cbv: np.ndarray, delay: np.ndarray | float = 0.0,
                  residue: str = "exponential", **aif_kw: float) -> tuple[np.ndarray, np.ndarray]:
    """AIF at ``times`` and tissue curves (n, t) for CBF (ml/100 ml/min), CBV (ml/100 ml), delay (s)."""
    cbf = np.atleast_1d(np.asarray(cbf, dtype=float))
    cbv = np.broadcast_to(np.asarray(cbv, dtype=float), cbf.shape)
    delay = np.broadcast_to(np.asarray(delay, dtype=float), cbf.shape)
    fine = np.arange(0.0, times[-1] + 40.0, FINE_DT)
    mtt = 60.0 * cbv / cbf
    if residue == "exponential":
        r = np.exp(-fine[None, :] / mtt[:, None])
    else:  # gamma-distributed transit times, shape 3, mean MTT
        from scipy.stats import gamma
        r = gamma.sf(fine[None, :], 3.0, scale=mtt[:, None] / 3.0)
    ca = gamma_variate(fine[None, :] - delay[:, None], **aif_kw)
    c = cbf[:, None] / 6000.0 * fftconvolve(ca, r, axes=1)[:, : fine.size] * FINE_DT
    out = np.stack([np.interp(times, fine, ci) for ci in c])
    return gamma_variate(times, **aif_kw), out


def to_signal(delta_r2s: np.ndarray, te_s: float, s0: float = 1000.0, snr: float | None = None,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """DSC signal S0·exp(−TE·ΔR2*) with Gaussian noise of SD S0/snr."""
    s = s0 * np.exp(-te_s * delta_r2s)
    if snr:
        rng = rng or np.random.default_rng(0)
        s = s + rng.normal(0.0, s0 / snr, s.shape)
    return s
