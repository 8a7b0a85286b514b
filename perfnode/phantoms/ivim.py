"""IVIM forward model: ``S(b) = S0 · (f · e^(−b·D*) + (1 − f) · e^(−b·D))``, isotropic, several directions."""

from __future__ import annotations

from typing import Any

import numpy as np

from perfnode.phantoms.common import GREY, LESION, WHITE, add_noise, region_map, regions

B_VALUES = (0.0, 10.0, 20.0, 50.0, 100.0, 200.0, 400.0, 800.0)
DIRECTIONS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
PROTOCOL = {
    "modality": "MR",
    "te_ms": 70.0,
    "tr_ms": 4000.0,
    "flip_deg": 90.0,
    "field_t": 1.5,
    "contrast": None,
    "pulse": "SE_EPI_DWI",
    "technique": "ivim",
}


def acquisitions() -> tuple[np.ndarray, np.ndarray]:
    """``(b (n,), direction (n, 3))``: b = 0 once (direction 0), every other b in every direction."""
    bs, dirs = [0.0], [(0.0, 0.0, 0.0)]
    for b in B_VALUES[1:]:
        for d in DIRECTIONS:
            bs.append(b)
            dirs.append(d)
    return np.array(bs), np.array(dirs)


def simulate(
    nz: int = 4, ny: int = 16, nx: int = 16, snr: float | None = None, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return ``(signal (n, z, y, x), truth)`` for the acquisitions of ``acquisitions()``."""
    rng = np.random.default_rng(seed)
    labels = regions(nz, ny, nx)
    d = region_map(labels, {GREY: 0.8e-3, WHITE: 0.7e-3, LESION: 1.5e-3})  # mm²/s
    dstar = region_map(labels, {GREY: 10e-3, WHITE: 8e-3, LESION: 20e-3})
    f = region_map(labels, {GREY: 0.08, WHITE: 0.05, LESION: 0.15})
    s0 = region_map(labels, {GREY: 1000.0, WHITE: 900.0, LESION: 1200.0}, default=15.0)
    b, dirs = acquisitions()
    bb = b[:, None, None, None]
    signal = s0[None] * (f[None] * np.exp(-bb * dstar[None]) + (1 - f[None]) * np.exp(-bb * d[None]))
    signal = add_noise(signal, snr, float(s0[labels > 0].mean()), rng)
    truth = {
        "technique": "ivim",
        "labels": labels,
        "d_mm2_per_s": d,
        "dstar_mm2_per_s": dstar,
        "f": f,
        "s0": s0,
        "b_values_s_per_mm2": b,
        "directions": dirs,
        "snr": snr or 0.0,
        "seed": seed,
    }
    return signal, truth
