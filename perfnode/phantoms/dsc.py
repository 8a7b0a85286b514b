"""DSC-MRI forward model: indicator dilution with a delayed gamma-variate AIF and an exponential residue.

``C_t(t) = (ρ/k_H) · CBF · (C_a(t − δ) ⊛ exp(−t/MTT))`` (residue averaged per sample interval),
``ΔR2*(t) = k · C(t)``,
``S(t) = S0 · exp(−TE · ΔR2*(t))``; ``MTT = CBV / CBF`` (central volume theorem).
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

RHO_G_PER_ML = 1.04
KH = (1 - 0.45) / (1 - 0.25)  # large-vessel / capillary haematocrit correction
K_R2STAR_PER_S_PER_MM = 10.0  # ΔR2* per mM (linear; arterial peak 80 /s, grey-matter peak ≈ 3 /s at TE 30 ms)
PROTOCOL = {
    "modality": "MR",
    "te_ms": 30.0,
    "tr_ms": 1500.0,
    "flip_deg": 90.0,
    "field_t": 3.0,
    "contrast": "gadobutrol",
    "pulse": "GE_EPI",
    "technique": "dsc",
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
    """Return ``(signal (t, z, y, x), truth)``: DSC signal and the maps, AIF and labels that made it."""
    rng = np.random.default_rng(seed)
    t = np.arange(nt) * dt_s
    labels = regions(nz, ny, nx)
    cbf = region_map(labels, {GREY: 60.0, WHITE: 25.0, LESION: 12.0, ARTERY: 0.0})  # ml/100 g/min
    cbv = region_map(labels, {GREY: 4.0, WHITE: 2.0, LESION: 1.5, ARTERY: 0.0})  # ml/100 g
    mtt = np.divide(cbv, cbf, out=np.zeros_like(cbv), where=cbf > 0) * 60.0  # s
    delay = region_map(labels, {GREY: 0.5, WHITE: 1.0, LESION: 3.0})  # s
    aif = gamma_variate(t, t0=min(6.0, t[-1] / 4), peak=8.0, alpha=3.0, beta=1.5)  # mM

    tissue = labels.ravel() != 0
    f_per_s = cbf.ravel()[tissue] / 100.0 / 60.0  # ml/g/s
    residue = exp_residue(t, mtt.ravel()[tissue], dt_s)
    ca = shift(aif, t, delay.ravel()[tissue])
    conc = np.zeros((nt, labels.size))
    conc[:, tissue] = RHO_G_PER_ML / KH * f_per_s * convolve_residue(ca, residue, dt_s)
    conc[:, labels.ravel() == ARTERY] = aif[:, None]
    conc = conc.reshape(nt, nz, ny, nx)

    s0 = region_map(labels, {GREY: 900.0, WHITE: 800.0, LESION: 950.0, ARTERY: 700.0}, default=10.0)
    te_s = PROTOCOL["te_ms"] / 1000
    signal = s0[None] * np.exp(-te_s * K_R2STAR_PER_S_PER_MM * conc)
    signal = add_noise(signal, snr, float(s0[labels > 0].mean()), rng)
    truth = {
        "technique": "dsc",
        "times_s": t,
        "labels": labels,
        "cbf_ml_per_100g_per_min": cbf,
        "cbv_ml_per_100g": cbv,
        "mtt_s": mtt,
        "delay_s": delay,
        "s0": s0,
        "aif_mM": aif,
        "concentration_mM": conc,
        "te_s": te_s,
        "rho_g_per_ml": RHO_G_PER_ML,
        "kh": KH,
        "k_r2star_per_s_per_mM": K_R2STAR_PER_S_PER_MM,
        "snr": snr or 0.0,
        "seed": seed,
    }
    return signal, truth
