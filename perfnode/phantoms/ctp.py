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
    PENUMBRA,
    REALISTIC,
    VEIN,
    WHITE,
    add_noise,
    convolve_residue,
    exp_residue,
    gamma_variate,
    recirculating,
    region_map,
    regions,
    shift,
    venous_output,
    vessels,
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
    realistic: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return ``(hu (t, z, y, x), truth)``; ``snr`` is the arterial peak enhancement over the noise SD.

    ``realistic``: partial-volume arteries, a later recirculating bolus and a venous region
    (:data:`perfnode.phantoms.common.REALISTIC`), and the lesion made an ischaemic core (CBF 10,
    CBV 1.5) inside a penumbra ring (PENUMBRA: CBF 25, CBV 4.0, delayed 2 s), as a stroke team reads
    it. HU mix linearly by volume fraction.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(nt) * dt_s
    labels, f_art, f_vein = vessels(regions(nz, ny, nx), realistic)
    if realistic:
        core = labels == LESION
        grown = core.copy()
        for _ in range(max(2, ny // 12)):
            grown |= (np.roll(grown, 1, 1) | np.roll(grown, -1, 1)
                      | np.roll(grown, 1, 2) | np.roll(grown, -1, 2))
        labels[grown & ~core & np.isin(labels, [GREY, WHITE]) & (f_art == 0)] = PENUMBRA
    cbf_r = {GREY: 55.0, WHITE: 22.0, LESION: 10.0, PENUMBRA: 25.0}
    cbv_r = {GREY: 4.0, WHITE: 2.2, LESION: 2.0 if not realistic else 1.5, PENUMBRA: 4.0}
    delay_r = {GREY: 0.5, WHITE: 1.0, LESION: 2.5 if not realistic else 3.0, PENUMBRA: 2.0}
    cbf = region_map(labels, cbf_r)
    cbv = region_map(labels, cbv_r)
    mtt = np.divide(cbv, cbf, out=np.zeros_like(cbv), where=cbf > 0) * 60.0
    delay = region_map(labels, delay_r)
    t0 = min(REALISTIC["bolus_s"] if realistic else 5.0, t[-1] / 4)
    aif = gamma_variate(t, t0=t0, peak=350.0, alpha=3.0, beta=1.5)  # ΔHU
    if realistic:
        aif = recirculating(aif, t, t0, 350.0)
    vof = venous_output(aif, t, dt_s)
    around = np.where(np.isin(labels, [ARTERY, VEIN]), GREY, labels)
    base_r = {GREY: 38.0, WHITE: 28.0, LESION: 32.0, PENUMBRA: 34.0}
    baseline = region_map(around, base_r, default=-1000.0)
    baseline = np.where(np.isin(labels, [ARTERY, VEIN]), 40.0, baseline)

    t_cbf = region_map(around, cbf_r)
    t_mtt = np.divide(region_map(around, cbv_r), t_cbf, out=np.zeros_like(t_cbf), where=t_cbf > 0) * 60.0
    tissue = around.ravel() != 0
    f = t_cbf.ravel()[tissue] / 6000.0
    residue = exp_residue(t, t_mtt.ravel()[tissue], dt_s)
    enh_t = np.zeros((nt, labels.size))
    enh_t[:, tissue] = RHO_G_PER_ML / KH * f * convolve_residue(
        shift(aif, t, region_map(around, delay_r).ravel()[tissue]), residue, dt_s)
    enh_t = enh_t.reshape(nt, nz, ny, nx)
    f_t = 1.0 - f_art - f_vein
    enh = f_t * enh_t + f_art * aif[:, None, None, None] + f_vein * vof[:, None, None, None]
    hu = baseline[None] + enh
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
        "vof_hu": vof,
        "artery_fraction": f_art,
        "vein_fraction": f_vein,
        "rho_g_per_ml": RHO_G_PER_ML,
        "kh": KH,
        "snr": snr or 0.0,
        "seed": seed,
        "realistic": realistic,
    }
    return hu, truth
