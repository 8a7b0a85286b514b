"""CT perfusion forward model: the DSC indicator-dilution model with enhancement in Hounsfield units.

``ΔHU_t(t) = (ρ/k_H) · CBF · (ΔHU_a(t − δ) ⊛ exp(−t/MTT))``, image = baseline HU + ΔHU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from perfnode.phantoms.common import (
    ARTERY,
    GREY,
    LESION,
    WHITE,
    add_noise,
    convolve_residue,
    exp_residue,
    gamma_variate,
    region_map,
    regions,
    shift,
)
from perfnode.phantoms.dsc import KH, RHO_G_PER_ML

PROTOCOL = {
    "modality": "CT",
    "kvp": 80.0,
    "tube_current_ma": 150,
    "exposure_time_ms": 500,
    "contrast": "iodine",
    "technique": "ctp",
}


def simulate(
    nz: int = 4,
    ny: int = 16,
    nx: int = 16,
    nt: int = 20,
    dt_s: float = 1.5,
    snr: float | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return ``(hu (t, z, y, x), truth)``; ``snr`` is the arterial peak enhancement over the noise SD."""
    rng = np.random.default_rng(seed)
    t = np.arange(nt) * dt_s
    labels = regions(nz, ny, nx)
    cbf = region_map(labels, {GREY: 55.0, WHITE: 22.0, LESION: 10.0})
    cbv = region_map(labels, {GREY: 4.0, WHITE: 2.2, LESION: 2.0})
    mtt = np.divide(cbv, cbf, out=np.zeros_like(cbv), where=cbf > 0) * 60.0
    delay = region_map(labels, {GREY: 0.5, WHITE: 1.0, LESION: 2.5})
    aif = gamma_variate(t, t0=min(5.0, t[-1] / 4), peak=350.0, alpha=3.0, beta=1.5)  # ΔHU
    baseline = region_map(labels, {GREY: 38.0, WHITE: 28.0, LESION: 32.0, ARTERY: 40.0}, default=-1000.0)

    tissue = np.isin(labels.ravel(), [GREY, WHITE, LESION])
    f = cbf.ravel()[tissue] / 6000.0
    residue = exp_residue(t, mtt.ravel()[tissue], dt_s)
    enh = np.zeros((nt, labels.size))
    enh[:, tissue] = (
        RHO_G_PER_ML / KH * f * convolve_residue(shift(aif, t, delay.ravel()[tissue]), residue, dt_s)
    )
    enh[:, labels.ravel() == ARTERY] = aif[:, None]
    hu = baseline[None] + enh.reshape(nt, nz, ny, nx)
    hu = add_noise(hu, snr, 350.0, rng, rician=False)
    truth = {
        "technique": "ctp",
        "times_s": t,
        "labels": labels,
        "cbf_ml_per_100g_per_min": cbf,
        "cbv_ml_per_100g": cbv,
        "mtt_s": mtt,
        "delay_s": delay,
        "baseline_hu": baseline,
        "aif_hu": aif,
        "rho_g_per_ml": RHO_G_PER_ML,
        "kh": KH,
        "snr": snr or 0.0,
        "seed": seed,
    }
    return hu, truth
