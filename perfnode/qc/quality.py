"""Data-quality measures on the arrays (vectorised numpy), returned as facts for the quality rules.

Each measure becomes a :class:`~perfnode.qc.facts.Fact`; its threshold lives in the technique's
rule file (``[[quality]]`` entries), so a site can tighten or relax it without touching code.
Arrays are ``(t, ...)``: time first, then space (``(t, z, y, x)`` or ``(t, y, x)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import fft

from perfnode.perfusion.baseline import detect_bolus
from perfnode.perfusion.mask import Modality, foreground
from perfnode.qc.facts import Fact, Facts


def _robust_sd(x: np.ndarray) -> float:
    """Noise SD of a short series from its first differences (insensitive to slow drifts)."""
    d = np.diff(np.asarray(x, dtype=np.float64))
    if d.size < 2:
        return float("nan")
    return float(np.median(np.abs(d - np.median(d))) * 1.4826 / np.sqrt(2))


def bolus_facts(
    data: np.ndarray, times_s: np.ndarray, falls: bool, mask: np.ndarray | None = None, skip: int = 1,
    modality: Modality = "MR",
) -> Facts:
    """Bolus contrast-to-noise, arrival time and number of baseline dynamics from the mean curve.

    ``falls``: the signal drops with the bolus (DSC); otherwise it rises (DCE, CT).
    """
    arr = np.asarray(data, dtype=np.float64)
    m = foreground(arr, modality) if mask is None else np.asarray(mask, bool)
    curve = arr[:, m].mean(axis=1)
    enh = -curve if falls else curve
    try:
        b = detect_bolus(enh, skip=skip)
    except ValueError:
        return {}
    arrival, peak = int(b.arrival[0]), int(b.peak_index[0])
    base_frames = enh[skip : max(int(b.stop[0]), skip + 2)]
    base = float(np.median(base_frames))
    sd = _robust_sd(base_frames)
    amp = float(enh[peak] - base)
    cnr = amp / sd if sd > 0 else (float("inf") if amp > 0 else 0.0)
    n = len(curve)
    f: Facts = {"bolus_cnr": Fact(cnr, "", f"mean curve of {int(m.sum())} voxels, peak at time point {peak}")}
    if cnr >= 5 and 0 < arrival < n:
        t = np.asarray(times_s, dtype=float)
        f["bolus_arrival_time_s"] = Fact(float(t[arrival] - t[0]), "s", "measured from the mean curve")
        f["baseline_dynamics"] = Fact(arrival, "", f"measured: bolus arrives at time point {arrival}")
        f["_baseline_stop"] = Fact(int(b.stop[0]), "", "internal")
    return f


def baseline_tsnr(data: np.ndarray, start: int, stop: int, mask: np.ndarray | None = None,
                  modality: Modality = "MR") -> Fact | None:
    """Median over the object of mean/SD across the baseline dynamics ``[start, stop)``."""
    if stop - start < 3:
        return None
    arr = np.asarray(data, dtype=np.float64)[start:stop]
    m = foreground(arr, modality) if mask is None else np.asarray(mask, bool)
    v = arr[:, m]
    sd = v.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tsnr = np.where(sd > 0, v.mean(axis=0) / sd, np.inf)
    return Fact(float(np.median(tsnr)), "", f"{stop - start} baseline dynamics, {int(m.sum())} voxels")


def time_step_facts(times_s: Sequence[float] | np.ndarray) -> Facts:
    """Jitter of the time steps (whole missing steps excluded) and the number of missing time points."""
    t = np.asarray(times_s, dtype=float)
    if t.size < 3:
        return {}
    dt = np.diff(t)
    med = float(np.median(dt))
    if med <= 0:
        return {"time_step_irregularity": Fact(float("inf"), "", "time points not increasing")}
    ratio = dt / med
    steps = np.maximum(np.rint(ratio), 1)
    jitter = float(np.max(np.abs(ratio - steps)))
    missing = int(np.sum(steps - 1))
    worst = int(np.argmax(np.abs(ratio - steps)))
    where = f"median step {med:.3g} s; worst step {dt[worst]:.3g} s after time point {worst}"
    f = {
        "time_step_irregularity": Fact(jitter, "", where),
        "missing_frames": Fact(
            missing,
            "",
            f"gaps of {', '.join(f'{d:.3g}' for d in dt[steps > 1])} s"
            if missing
            else f"{t.size} time points, median step {med:.3g} s",
        ),
    }
    if np.any(dt <= 0):
        f["time_step_irregularity"] = Fact(float("inf"), "", "time points repeat or go backwards")
    return f


def aif_facts(aif: np.ndarray, times_s: np.ndarray, aif_signal: np.ndarray | None = None) -> Facts:
    """Peak height over noise, width, truncation, clipping of an AIF (concentration-like, rising)."""
    c = np.asarray(aif, dtype=np.float64).ravel()
    t = np.asarray(times_s, dtype=np.float64).ravel()
    f: Facts = {}
    if c.size < 5 or not np.all(np.isfinite(c)):
        return f
    b = detect_bolus(c, skip=0, min_baseline=1) if c.size >= 4 else None
    peak = int(np.argmax(c))
    stop = int(b.stop[0]) if b is not None else 1
    base_frames = c[: max(stop, 1)]
    base = float(np.median(base_frames))
    amp = float(c[peak] - base)
    sd = float(np.std(base_frames, ddof=1)) if base_frames.size >= 3 else float("nan")
    if np.isfinite(sd):
        f["aif_peak_snr"] = Fact(
            amp / sd if sd > 0 else float("inf"),
            "",
            f"peak {amp:.4g} over baseline SD of {base_frames.size} points",
        )
    n = c.size
    f["aif_peak_at_end"] = Fact(peak >= n - 2, "", f"peak at time point {peak} of {n}")
    f["aif_tail_fraction"] = Fact(
        float((c[-1] - base) / amp) if amp > 0 else float("nan"),
        "",
        f"last point {c[-1]:.4g}, peak {c[peak]:.4g}",
    )
    f["aif_flat_top_samples"] = Fact(
        int(np.sum(c >= c[peak] - 0.005 * amp)), "", "samples within 0.5 % of peak"
    )
    half = base + amp / 2
    above = c >= half
    lo = peak
    while lo > 0 and above[lo - 1]:
        lo -= 1
    hi = peak
    while hi < n - 1 and above[hi + 1]:
        hi += 1
    if lo > 0 and hi < n - 1 and amp > 0:
        t_lo = np.interp(half, [c[lo - 1], c[lo]], [t[lo - 1], t[lo]])
        t_hi = np.interp(half, [c[hi + 1], c[hi]], [t[hi + 1], t[hi]])
        fwhm = float(t_hi - t_lo)
        dt = float(np.median(np.diff(t)))
        f["aif_fwhm_s"] = Fact(fwhm, "s", "interpolated half-maximum crossings")
        f["aif_fwhm_frames"] = Fact(fwhm / dt, "", f"{fwhm:.3g} s at {dt:.3g} s per time point")
    if aif_signal is not None:
        s = np.asarray(aif_signal, dtype=np.float64).ravel()
        s0 = float(np.median(s[: max(stop, 1)]))
        if s0 > 0:
            f["aif_signal_min_fraction"] = Fact(
                float(s.min() / s0), "", f"lowest AIF signal {s.min():.4g} vs baseline {s0:.4g}"
            )
    return f


def _subpixel(r: np.ndarray, idx: tuple[int, ...], tie: float = 1e-3) -> np.ndarray:
    """Parabolic refinement of a correlation peak along each axis (periodic); an axis along which the
    correlation is flat (curvature below ``tie`` of the peak) is not refined."""
    out = np.array(idx, dtype=float)
    for ax, n in enumerate(r.shape):
        if n < 3:
            continue
        im, ip = list(idx), list(idx)
        im[ax] = (idx[ax] - 1) % n
        ip[ax] = (idx[ax] + 1) % n
        a, b, c = float(r[tuple(im)]), float(r[idx]), float(r[tuple(ip)])
        den = a - 2 * b + c
        if den < -tie * abs(b):
            out[ax] += float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    return out


def displacements(data: np.ndarray, reference: int | None = None, min_size: int = 8,
                  tie: float = 1e-3, baseline: tuple[int, int] | None = None) -> np.ndarray:
    """Shift (voxels, per spatial axis) of every time point against a reference image, by cross-correlation.

    Returns ``(t, ndim)``. The reference is the mean of the pre-bolus ``baseline`` frames
    ``[start, stop)`` (default: frames 1–3; the first frame is often not yet in steady state), i.e. the
    head before the contrast arrived and before later motion, or time point ``reference``. Axes shorter than
    ``min_size`` (a few thick slices) are averaged out and get no shift. One FFT per time point
    (vectorised over voxels); frames are centred and scaled first, so the global intensity change of a
    bolus does not move the peak. The search is limited to a quarter of each axis (no wrap-around), and
    a peak that beats the zero shift by less than ``tie`` (relative correlation) counts as no motion: an
    image with no structure along an axis (the same slice repeated, a uniform region) correlates
    equally well at every shift along it and must not read as motion (issue 14: 164.7 mm "motion"
    on a motionless DSC series).
    """
    arr = np.asarray(data, dtype=np.float32)
    spatial = arr.shape[1:]
    used = tuple(ax for ax, n in enumerate(spatial) if n >= min_size)
    small = tuple(ax + 1 for ax, n in enumerate(spatial) if n < min_size)
    proj = arr.mean(axis=small) if small else arr
    shape = proj.shape[1:]
    axes = tuple(range(len(shape)))
    if reference is not None:
        ref_img = proj[min(reference, arr.shape[0] - 1)]
    else:
        b0, b1 = baseline if baseline is not None else (1, 4)
        b0 = min(b0, arr.shape[0] - 1)
        ref_img = proj[b0:max(b1, b0 + 1)].mean(axis=0)

    def spectrum(frame: np.ndarray) -> np.ndarray:
        x = frame - frame.mean()
        return fft.fftn(x / (np.linalg.norm(x) + 1e-12), axes=axes)

    f_ref = np.conj(spectrum(ref_img))
    n = np.array(shape, dtype=float)
    # shifts beyond a quarter of an axis are not motion of a head in a scanner: excluded from the search
    lag = np.meshgrid(*[np.minimum(np.arange(k), k - np.arange(k)) for k in shape], indexing="ij")
    allowed = np.all([lg <= max(1, k // 4) for lg, k in zip(lag, shape, strict=True)], axis=0)
    shifts = np.zeros((arr.shape[0], len(spatial)))
    size = np.sqrt(sum(lg.astype(float) ** 2 for lg in lag))  # |shift| of every lag
    for i in range(arr.shape[0]):
        r = fft.ifftn(spectrum(proj[i]) * f_ref, axes=axes).real
        masked = np.where(allowed, r, -np.inf)
        best = float(masked.max())
        # of the lags within `tie` of the best correlation, the smallest shift: a flat direction is no motion
        near = masked >= best - tie * abs(best)
        idx = np.unravel_index(int(np.argmin(np.where(near, size, np.inf))), r.shape)
        s = _subpixel(r, tuple(int(x) for x in idx))
        shifts[i, list(used)] = np.where(s > n / 2, s - n, s)
    return shifts


def motion_facts(data: np.ndarray, spacing_mm: Sequence[float] | None = None,
                 reference: int | None = None, baseline: tuple[int, int] | None = None) -> Facts:
    """Largest displacement (mm) of any time point against the reference (default: the mean baseline)."""
    arr = np.asarray(data)
    if arr.shape[0] < 2 or arr.ndim < 3 or max(arr.shape[1:]) < 8:
        return {}
    sh = displacements(arr, reference, baseline=baseline)
    sp = np.ones(sh.shape[1]) if spacing_mm is None else np.asarray(spacing_mm, float)[-sh.shape[1] :]
    mm = np.linalg.norm(sh * sp, axis=1)
    worst = int(np.argmax(mm))
    unit = "mm" if spacing_mm is not None else "voxels"
    return {
        "motion_max_mm": Fact(
            float(mm[worst]),
            unit,
            f"cross-correlation; time point {worst} vs "
            + ("the mean pre-bolus image" if reference is None else f"time point {reference}"),
        )
    }


def fit_failure_fact(fit: Any, mask: np.ndarray | None = None) -> Fact | None:
    """Fraction of fitted voxels whose fit failed.

    With ``mask``: NaN voxels of the fit-quality map (else of the most complete map) inside it.
    Without: ``failed / (failed + succeeded)``, from ``FitResult.failures`` and the finite voxels.
    """
    if fit is None:
        return None
    maps = [np.asarray(m) for m in (getattr(fit, "maps", {}) or {}).values()]
    q = getattr(fit, "quality", None)
    if q is not None:
        maps = [np.asarray(q)]
    if not maps:
        return None
    if mask is not None:
        inside = np.asarray(mask, bool)
        nan = min(int(np.sum(~np.isfinite(m[inside]))) for m in maps)
        return Fact(nan / max(int(inside.sum()), 1), "", f"{nan} of {int(inside.sum())} voxels in the mask")
    failed = int(sum(fit.failures.values())) if getattr(fit, "failures", None) else 0
    ok = max(int(np.sum(np.isfinite(m))) for m in maps)
    total = ok + failed
    if total == 0:
        return None
    reasons = ", ".join(f"{k}: {v}" for k, v in fit.failures.most_common(3)) if failed else "none"
    return Fact(failed / total, "", f"{failed} of {total} fitted voxels failed ({reasons})")


def measure(
    data: np.ndarray | None = None,
    times_s: np.ndarray | None = None,
    *,
    falls: bool = False,
    spacing_mm: Sequence[float] | None = None,
    aif: np.ndarray | None = None,
    aif_signal: np.ndarray | None = None,
    fit: Any = None,
    mask: np.ndarray | None = None,
    dynamic: bool = True,
    modality: Modality = "MR",
) -> Facts:
    """Every data-quality fact that the given arrays allow.

    ``dynamic``: the series is a bolus passage (DSC, DCE, CT perfusion); bolus and baseline
    measures are only taken then.
    """
    f: Facts = {}
    if times_s is not None:
        f.update(time_step_facts(times_s))
    if data is not None:
        arr = np.asarray(data)
        base: tuple[int, int] | None = None
        if dynamic and times_s is not None and arr.shape[0] == len(times_s):
            f.update(bolus_facts(arr, np.asarray(times_s), falls, mask, modality=modality))
            stop = f.pop("_baseline_stop", None)
            if stop is not None:
                base = (1, max(int(stop.value), 2))
                tsnr = baseline_tsnr(arr, 1, int(stop.value), mask, modality)
                if tsnr is not None:
                    f["baseline_tsnr"] = tsnr
        f.update(motion_facts(arr, spacing_mm, baseline=base))
    if aif is not None and times_s is not None:
        f.update(aif_facts(aif, np.asarray(times_s), aif_signal))
    ff = fit_failure_fact(fit, mask)
    if ff is not None:
        f["fit_failure_fraction"] = ff
    return f
