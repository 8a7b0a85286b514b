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

RHO_G_PER_ML = 1.04
KH = (1 - 0.45) / (1 - 0.25)  # large-vessel / capillary haematocrit correction
K_R2STAR_PER_S_PER_MM = 10.0  # ΔR2* per mM (linear; arterial peak 80 /s, grey-matter peak ≈ 3 /s at TE 30 ms)
#: Realistic phantoms: tissue ΔR2* per mM three times that of blood, the order measured in vivo (the
#: ESR's "differences in relaxivity between tissue and blood"; Kjølby et al., MRM 2006;56:187), so that
#: grey matter's signal drops ≈ 25 % at the bolus peak, as clinical DSC at 0.1 mmol/kg does.
K_TISSUE_REALISTIC = 30.0
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
    realistic: bool = False,
    slice_order: str | None = None,
    bolus_s: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return ``(signal (t, z, y, x), truth)``: DSC signal and the maps, AIF and labels that made it.

    ``slice_order="interleaved"``: slice ``z`` of time point ``k`` is acquired at ``t_k + r(z)·dt/nz``
    (``r`` the slice's rank in the order 0, 2, 4, …, 1, 3, …); ``truth["frame_times_s"]`` ``(t, z)`` holds
    the times. Without it every slice is acquired at ``t_k``.

    ``realistic``: partial-volume arterial voxels, a later and recirculating bolus and a venous
    region (:data:`perfnode.phantoms.common.REALISTIC`). Voxel signals mix by volume fraction:
    ``S = f_a·S_artery + f_v·S_vein + (1 − f_a − f_v)·S_tissue`` (the tissue around a vessel is grey
    matter), which is what makes a partial-volume AIF non-linearly distorted in DSC.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(nt) * dt_s
    t0 = min(REALISTIC["bolus_s"] if realistic else 6.0, t[-1] / 4)
    if slice_order is not None:
        if slice_order != "interleaved":
            raise ValueError(f"slice_order {slice_order!r}: only 'interleaved' is simulated")
        rank = np.argsort(np.r_[np.arange(0, nz, 2), np.arange(1, nz, 2)])  # rank of slice z in the order
        fine, truth = simulate(nz, ny, nx, nt * nz, dt_s / nz, None, seed, realistic, None, bolus_s=t0)
        pick = np.arange(nt)[:, None] * nz + rank[None, :]  # (t, z) fine-grid index of each frame
        signal = np.take_along_axis(fine, pick[:, :, None, None], axis=0)
        truth["frame_times_s"] = pick * (dt_s / nz)
        truth["times_s"] = t
        truth["slice_order"] = slice_order
        ref = float(truth["s0"][truth["labels"] > 0].mean())
        return add_noise(signal, snr, ref, rng), {**truth, "snr": snr or 0.0}
    labels, f_art, f_vein = vessels(regions(nz, ny, nx), realistic)
    cbf = region_map(labels, {GREY: 60.0, WHITE: 25.0, LESION: 12.0, ARTERY: 0.0})  # ml/100 g/min
    cbv = region_map(labels, {GREY: 4.0, WHITE: 2.0, LESION: 1.5, ARTERY: 0.0})  # ml/100 g
    mtt = np.divide(cbv, cbf, out=np.zeros_like(cbv), where=cbf > 0) * 60.0  # s
    delay = region_map(labels, {GREY: 0.5, WHITE: 1.0, LESION: 3.0})  # s
    t0 = bolus_s if bolus_s is not None else t0
    aif = gamma_variate(t, t0=t0, peak=8.0, alpha=3.0, beta=1.5)  # mM
    if realistic:
        aif = recirculating(aif, t, t0, 8.0)
    vof = venous_output(aif, t, dt_s)

    # tissue curves everywhere in the head (around a vessel: grey matter)
    around = np.where(np.isin(labels, [ARTERY, VEIN]), GREY, labels)
    t_cbf = region_map(around, {GREY: 60.0, WHITE: 25.0, LESION: 12.0})
    t_mtt = np.divide(region_map(around, {GREY: 4.0, WHITE: 2.0, LESION: 1.5}), t_cbf,
                      out=np.zeros_like(t_cbf), where=t_cbf > 0) * 60.0
    t_delay = region_map(around, {GREY: 0.5, WHITE: 1.0, LESION: 3.0})
    tissue = around.ravel() != 0
    f_per_s = t_cbf.ravel()[tissue] / 100.0 / 60.0  # ml/g/s
    residue = exp_residue(t, t_mtt.ravel()[tissue], dt_s)
    ca = shift(aif, t, t_delay.ravel()[tissue])
    c_tissue = np.zeros((nt, labels.size))
    c_tissue[:, tissue] = RHO_G_PER_ML / KH * f_per_s * convolve_residue(ca, residue, dt_s)
    c_tissue = c_tissue.reshape(nt, nz, ny, nx)

    te_s = PROTOCOL["te_ms"] / 1000
    s0_tissue = region_map(around, {GREY: 900.0, WHITE: 800.0, LESION: 950.0}, default=10.0)
    s0_blood = 700.0
    f_t = 1.0 - f_art - f_vein
    k_tissue = K_TISSUE_REALISTIC if realistic else K_R2STAR_PER_S_PER_MM
    signal = (f_t * s0_tissue * np.exp(-te_s * k_tissue * c_tissue)
              + f_art * s0_blood * np.exp(-te_s * K_R2STAR_PER_S_PER_MM * aif)[:, None, None, None]
              + f_vein * s0_blood * np.exp(-te_s * K_R2STAR_PER_S_PER_MM * vof)[:, None, None, None])
    s0 = f_t * s0_tissue + (f_art + f_vein) * s0_blood
    conc = f_t * c_tissue + f_art * aif[:, None, None, None] + f_vein * vof[:, None, None, None]
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
        "vof_mM": vof,
        "artery_fraction": f_art,
        "vein_fraction": f_vein,
        "concentration_mM": conc,
        "te_s": te_s,
        "rho_g_per_ml": RHO_G_PER_ML,
        "kh": KH,
        "k_r2star_per_s_per_mM": K_R2STAR_PER_S_PER_MM,
        "k_r2star_tissue_per_s_per_mM": k_tissue,
        "snr": snr or 0.0,
        "seed": seed,
        "realistic": realistic,
        "frame_times_s": np.repeat(t[:, None], nz, axis=1),
    }
    return signal, truth
