"""DCE-MRI forward model: Parker population AIF, extended Tofts, spoiled gradient echo (SPGR) signal.

``C_t = v_p·C_p + K^trans · (C_p ⊛ exp(−k_ep·t))``, ``k_ep = K^trans / v_e``, ``C_p = C_b / (1 − Hct)``;
``R1 = 1/T10 + r1·C_t``; ``S = M0 · sin α · (1 − E1) / (1 − cos α · E1)``, ``E1 = exp(−TR·R1)``.
Pre-contrast variable-flip-angle images (same TR) let a T1 map be fitted.
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
    parker_aif,
    region_map,
    regions,
)

HCT = 0.42
R1_PER_MM_PER_S = 4.5
VFA_FLIP_DEG = (2.0, 5.0, 10.0, 15.0, 20.0)
PROTOCOL = {
    "modality": "MR",
    "te_ms": 1.5,
    "tr_ms": 4.0,
    "flip_deg": 15.0,
    "field_t": 3.0,
    "contrast": "gadoterate",
    "pulse": "SPGR",
    "technique": "dce",
}


def spgr(m0: np.ndarray, r1: np.ndarray, tr_s: float, flip_deg: float) -> np.ndarray:
    """Steady-state spoiled gradient-echo signal."""
    a = np.deg2rad(flip_deg)
    e1 = np.exp(-tr_s * r1)
    return m0 * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1)


def simulate(
    nz: int = 4,
    ny: int = 16,
    nx: int = 16,
    nt: int = 20,
    dt_s: float = 6.0,
    snr: float | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return ``(signal (t, z, y, x), truth)``; truth has ``vfa_signal (flip, z, y, x)`` and the maps."""
    rng = np.random.default_rng(seed)
    t = np.arange(nt) * dt_s
    labels = regions(nz, ny, nx)
    ktrans = region_map(labels, {GREY: 0.02, WHITE: 0.01, LESION: 0.25})  # 1/min
    ve = region_map(labels, {GREY: 0.2, WHITE: 0.15, LESION: 0.4}, default=0.2)
    vp = region_map(labels, {GREY: 0.04, WHITE: 0.02, LESION: 0.08, ARTERY: 1.0 - HCT})
    t10 = region_map(labels, {GREY: 1.6, WHITE: 1.1, LESION: 1.8, ARTERY: 1.65}, default=3.0)  # blood: 3 T
    m0 = region_map(labels, {GREY: 1000.0, WHITE: 900.0, LESION: 1100.0, ARTERY: 1200.0}, default=20.0)
    cb = parker_aif(t, t0_s=min(30.0, t[-1] / 4))
    cp = cb / (1 - HCT)

    kep = ktrans.ravel() / 60.0 / ve.ravel()  # 1/s
    residue = exp_residue(t, np.divide(1.0, kep, out=np.ones_like(kep), where=kep > 0), dt_s)
    ct = vp.ravel()[None] * cp[:, None] + ktrans.ravel()[None] / 60.0 * convolve_residue(
        np.broadcast_to(cp[:, None], residue.shape), residue, dt_s
    )
    ct[:, labels.ravel() == 0] = 0.0
    ct = ct.reshape(nt, nz, ny, nx)
    tr_s = PROTOCOL["tr_ms"] / 1000
    r1 = 1.0 / t10[None] + R1_PER_MM_PER_S * ct
    clean = spgr(m0[None], r1, tr_s, PROTOCOL["flip_deg"])
    ref = float(clean[0][labels > 0].mean())  # SNR of the pre-contrast tissue signal, as for DSC and IVIM
    signal = add_noise(clean, snr, ref, rng)
    vfa = np.stack([spgr(m0, 1.0 / t10, tr_s, fa) for fa in VFA_FLIP_DEG])
    vfa = add_noise(vfa, snr, ref, rng)
    truth = {
        "technique": "dce",
        "times_s": t,
        "labels": labels,
        "ktrans_per_min": ktrans,
        "ve": ve,
        "vp": vp,
        "t10_s": t10,
        "m0": m0,
        "aif_blood_mM": cb,
        "aif_plasma_mM": cp,
        "concentration_mM": ct,
        "hct": HCT,
        "r1_per_mM_per_s": R1_PER_MM_PER_S,
        "tr_s": tr_s,
        "flip_deg": PROTOCOL["flip_deg"],
        "vfa_flip_angles_deg": np.array(VFA_FLIP_DEG),
        "vfa_signal": vfa,
        "snr": snr or 0.0,
        "seed": seed,
    }
    return signal, truth
