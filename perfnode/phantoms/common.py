"""Shared pieces of the digital reference objects: tissue regions, input functions, noise, convolution.

Pure numpy; no DICOM. Arrays are ``(t, z, y, x)`` unless stated otherwise.
"""

from __future__ import annotations

import numpy as np

#: Region labels written in the ground truth (``labels``).
BACKGROUND, GREY, WHITE, LESION, ARTERY, VEIN, PENUMBRA = 0, 1, 2, 3, 4, 5, 6
REGION_NAMES = {
    BACKGROUND: "background",
    GREY: "grey matter",
    WHITE: "white matter",
    LESION: "lesion",
    ARTERY: "artery",
    VEIN: "vein (sagittal sinus)",
    PENUMBRA: "penumbra",
}

#: Settings of the "clinical" phantoms (``realistic=True``): what makes automatic AIF selection and
#: deconvolution hard in patients. The arterial voxels hold 85 % artery (a 3 mm MCA branch in a
#: 2 mm voxel is never wholly inside one), their 8 in-plane neighbours 30 % (the partial-volume
#: voxels that fool a naive "highest peak" AIF search); the bolus arrives at 20 s (≥ 10 baseline
#: frames, as the ESR asks for 30 at 1–1.5 s sampling of long series) and recirculates (a second
#: pass of 10 % of the first-pass peak, 10 s later, twice as wide); a sagittal-sinus-like vein at
#: the back of the head carries the venous output function (same area as the AIF: no indicator is
#: lost on the way).
REALISTIC = {"artery_core_fraction": 0.85, "artery_ring_fraction": 0.30, "bolus_s": 20.0,
             "recirculation": 0.10, "recirculation_delay_s": 10.0}


def regions(nz: int, ny: int, nx: int) -> np.ndarray:
    """A head-like label map ``(z, y, x)``: grey rim, white core, a lesion block and an artery voxel group."""
    yy, xx = np.mgrid[0:ny, 0:nx]
    cy, cx = (ny - 1) / 2, (nx - 1) / 2
    r = np.hypot((yy - cy) / (ny / 2), (xx - cx) / (nx / 2))
    plane = np.zeros((ny, nx), np.uint8)
    plane[r < 0.95] = GREY
    plane[r < 0.55] = WHITE
    lesion = (
        (yy >= ny // 2)
        & (yy < ny // 2 + max(2, ny // 6))
        & (xx >= nx // 2)
        & (xx < nx // 2 + max(2, nx // 6))
    )
    plane[lesion & (r < 0.95)] = LESION
    plane[max(1, ny // 8) : max(1, ny // 8) + max(1, ny // 16), nx // 2 - 1 : nx // 2 + 1] = ARTERY
    return np.broadcast_to(plane, (nz, ny, nx)).copy()


def vessels(labels: np.ndarray, realistic: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, artery_fraction, vein_fraction)`` maps ``(z, y, x)``.

    Not realistic: the ARTERY voxels are wholly artery, nothing else. Realistic: see
    :data:`REALISTIC`; a VEIN region (2 voxels wide, at the back of the head on the midline) is added
    to ``labels``; the partial-volume ring keeps its tissue label.
    """
    labels = labels.copy()
    art = (labels == ARTERY).astype(np.float64)
    vein = np.zeros(labels.shape)
    if not realistic:
        return labels, art, vein
    core = labels == ARTERY
    ring = np.zeros_like(core)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ring |= np.roll(np.roll(core, dy, axis=1), dx, axis=2)
    ring &= ~core & (labels > 0)
    art = np.where(core, REALISTIC["artery_core_fraction"],
                   np.where(ring, REALISTIC["artery_ring_fraction"], 0.0))
    _, ny, nx = labels.shape
    head = labels[0] > 0
    rows = np.flatnonzero(head[:, nx // 2])
    y = int(rows.max()) - 1 if rows.size else ny - 2
    labels[:, y, nx // 2 - 1 : nx // 2 + 1] = VEIN
    vein[labels == VEIN] = 1.0
    return labels, art, vein


def recirculating(aif: np.ndarray, t: np.ndarray, t0: float, peak: float, alpha: float = 3.0,
                  beta: float = 1.5) -> np.ndarray:
    """``aif`` plus the realistic second pass (:data:`REALISTIC`)."""
    r = REALISTIC
    return aif + gamma_variate(t, t0 + r["recirculation_delay_s"], r["recirculation"] * peak, alpha, 2 * beta)


def venous_output(aif: np.ndarray, t: np.ndarray, dt_s: float, delay_s: float = 5.0, tau_s: float = 3.0
                  ) -> np.ndarray:
    """The AIF delayed and dispersed by an exponential transit kernel of unit area (area conserved)."""
    kernel = exp_residue(t, np.array([tau_s]), dt_s)[:, 0] / tau_s
    shifted = shift(aif, t, delay_s)[:, 0]
    return convolve_residue(shifted[:, None], kernel[:, None], dt_s)[:, 0]


def region_map(labels: np.ndarray, values: dict[int, float], default: float = 0.0) -> np.ndarray:
    """A parameter map: one value per region label."""
    out = np.full(labels.shape, default, dtype=np.float64)
    for label, value in values.items():
        out[labels == label] = value
    return out


def gamma_variate(t: np.ndarray, t0: float, peak: float, alpha: float = 3.0, beta: float = 1.5) -> np.ndarray:
    """Gamma-variate bolus ``peak · ((t−t0)/(αβ))^α · exp(α − (t−t0)/β)`` (its maximum is ``peak``)."""
    s = np.clip(t - t0, 0, None)
    tmax = alpha * beta
    return peak * (s / tmax) ** alpha * np.exp(alpha - s / beta)


def parker_aif(t_s: np.ndarray, t0_s: float = 10.0) -> np.ndarray:
    """Parker et al. 2006 population arterial blood concentration (mM), bolus arriving at ``t0_s``."""
    t = np.clip((t_s - t0_s) / 60.0, 0, None)  # minutes
    a1, a2, t1, t2, s1, s2 = 0.809, 0.330, 0.17046, 0.365, 0.0563, 0.132
    alpha, beta, s, tau = 1.050, 0.1685, 38.078, 0.483
    g1 = a1 / (s1 * np.sqrt(2 * np.pi)) * np.exp(-((t - t1) ** 2) / (2 * s1**2))
    g2 = a2 / (s2 * np.sqrt(2 * np.pi)) * np.exp(-((t - t2) ** 2) / (2 * s2**2))
    sig = alpha * np.exp(-beta * t) / (1 + np.exp(-s * (t - tau)))
    return np.where(t_s >= t0_s, g1 + g2 + sig, 0.0)


def shift(curve: np.ndarray, t_s: np.ndarray, delay_s: np.ndarray | float) -> np.ndarray:
    """``curve(t − delay)`` by linear interpolation; ``delay`` scalar or per voxel (result ``(t, n)``)."""
    d = np.atleast_1d(np.asarray(delay_s, dtype=float))
    tt = t_s[:, None] - d[None, :]
    return np.interp(tt.ravel(), t_s, curve, left=0.0).reshape(tt.shape)


def convolve_residue(inputs: np.ndarray, residue: np.ndarray, dt: float) -> np.ndarray:
    """Discrete causal convolution per voxel: ``out[t, v] = dt · Σ_k inputs[k, v] · residue[t−k, v]``.

    Vectorised over voxels through the FFT (zero padded so it is a linear, not circular, convolution).
    """
    n = inputs.shape[0]
    size = 2 * n
    f = np.fft.rfft(inputs, size, axis=0) * np.fft.rfft(residue, size, axis=0)
    return dt * np.fft.irfft(f, size, axis=0)[:n]


def exp_residue(t_s: np.ndarray, tau_s: np.ndarray, dt_s: float) -> np.ndarray:
    """``exp(−t/τ)`` averaged over each sampling interval ``(t, n)``, so that ``dt·Σ R = τ`` exactly
    (the discrete convolution then conserves the indicator: central volume theorem holds to rounding)."""
    tau = np.maximum(np.asarray(tau_s, dtype=float), 1e-9)[None, :]
    return tau / dt_s * -np.expm1(-dt_s / tau) * np.exp(-t_s[:, None] / tau)


def add_noise(
    signal: np.ndarray, snr: float | None, reference: float, rng: np.random.Generator, rician: bool = True
) -> np.ndarray:
    """Add noise with standard deviation ``reference / snr`` (Rician magnitude for MR, Gaussian for CT)."""
    if not snr:
        return signal
    sigma = reference / snr
    if rician:
        return np.hypot(signal + rng.normal(0, sigma, signal.shape), rng.normal(0, sigma, signal.shape))
    return signal + rng.normal(0, sigma, signal.shape)
