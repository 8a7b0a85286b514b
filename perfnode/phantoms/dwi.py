"""DWI forward model: ``S(b) = S0 · e^(−b·ADC)``, isotropic; b = 0 once, b = 1000 s/mm² in 3 directions."""

from __future__ import annotations

from typing import Any

import numpy as np

from perfnode.phantoms.common import GREY, LESION, WHITE, add_noise, region_map, regions

B_HIGH = 1000.0
DIRECTIONS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
PROTOCOL = {
    "modality": "MR",
    "te_ms": 80.0,
    "tr_ms": 5000.0,
    "flip_deg": 90.0,
    "field_t": 3.0,
    "contrast": None,
    "pulse": "SE_EPI_DWI",
    "technique": "dwi",
}


def acquisitions() -> tuple[np.ndarray, np.ndarray]:
    """``(b (n,), direction (n, 3))``: b = 0 (direction 0), then b = 1000 s/mm² in each direction."""
    return np.array([0.0] + [B_HIGH] * len(DIRECTIONS)), np.array([(0.0, 0.0, 0.0), *DIRECTIONS])


def simulate(
    nz: int = 4, ny: int = 16, nx: int = 16, snr: float | None = None, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return ``(signal (n, z, y, x), truth)`` for the acquisitions of ``acquisitions()``."""
    rng = np.random.default_rng(seed)
    labels = regions(nz, ny, nx)
    adc = region_map(labels, {GREY: 0.8e-3, WHITE: 0.7e-3, LESION: 1.6e-3})  # mm²/s
    s0 = region_map(labels, {GREY: 1000.0, WHITE: 900.0, LESION: 1200.0}, default=15.0)
    b, dirs = acquisitions()
    signal = s0[None] * np.exp(-b[:, None, None, None] * adc[None])
    signal = add_noise(signal, snr, float(s0[labels > 0].mean()), rng)
    truth = {
        "technique": "dwi",
        "labels": labels,
        "adc_mm2_per_s": adc,
        "s0": s0,
        "b_values_s_per_mm2": b,
        "directions": dirs,
        "snr": snr or 0.0,
        "seed": seed,
    }
    return signal, truth
