"""pCASL forward model (Alsop et al. 2015 white paper, single compartment).

``ΔM = CBF · 2α · T1b · M0 · (1 − e^(−τ/T1b)) · e^(−PLD/T1b) / (6000 · λ)`` for arterial transit
time ≤ PLD; control = static tissue signal, label = control − ΔM. Label/control pairs repeated; M0 apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from perfnode.phantoms.common import GREY, LESION, WHITE, add_noise, region_map, regions

LAMBDA = 0.9
ALPHA = 0.85
T1_BLOOD_S = 1.65
PROTOCOL = {
    "modality": "MR",
    "te_ms": 11.0,
    "tr_ms": 4500.0,
    "flip_deg": 90.0,
    "field_t": 3.0,
    "contrast": None,
    "pulse": "PCASL",
    "technique": "asl",
    "label_duration_ms": 1800.0,
}


def delta_m(cbf: np.ndarray, m0: np.ndarray, pld_s: float, tau_s: float) -> np.ndarray:
    """Control − label difference of the white-paper model."""
    return (
        cbf
        * 2
        * ALPHA
        * T1_BLOOD_S
        * m0
        * (1 - np.exp(-tau_s / T1_BLOOD_S))
        * np.exp(-pld_s / T1_BLOOD_S)
        / (6000.0 * LAMBDA)
    )


def simulate(
    nz: int = 4,
    ny: int = 16,
    nx: int = 16,
    n_pairs: int = 10,
    plds_s: tuple[float, ...] = (1.8,),
    snr: float | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """``(signal (pair, pld, context, z, y, x), truth)``; context 0 = CONTROL, 1 = LABEL; M0 in truth."""
    rng = np.random.default_rng(seed)
    labels = regions(nz, ny, nx)
    cbf = region_map(labels, {GREY: 60.0, WHITE: 22.0, LESION: 15.0})
    m0 = region_map(labels, {GREY: 1500.0, WHITE: 1300.0, LESION: 1600.0}, default=30.0)
    tau = PROTOCOL["label_duration_ms"] / 1000
    control = 0.85 * m0
    out = np.empty((n_pairs, len(plds_s), 2, nz, ny, nx))
    for j, pld in enumerate(plds_s):
        out[:, j, 0] = control
        out[:, j, 1] = control - delta_m(cbf, m0, pld, tau)
    out = add_noise(out, snr, float(m0[labels > 0].mean()) * 0.01, rng)
    truth = {
        "technique": "asl",
        "labels": labels,
        "cbf_ml_per_100g_per_min": cbf,
        "m0": m0,
        "m0_signal": add_noise(m0, snr, float(m0[labels > 0].mean()) * 0.01, rng),
        "plds_s": np.array(plds_s),
        "label_duration_s": tau,
        "lambda": LAMBDA,
        "alpha": ALPHA,
        "t1_blood_s": T1_BLOOD_S,
        "times_s": np.arange(n_pairs) * 2 * PROTOCOL["tr_ms"] / 1000,
        "asl_context": ["CONTROL", "LABEL"],
        "snr": snr or 0.0,
        "seed": seed,
    }
    return out, truth
