"""DSC-MRI perfusion: signal → ΔR2*, AIF, SVD deconvolution, CBF/CBV/MTT/Tmax/TTP, leakage correction.

``DscModel(times_s, te_s).fit(volume)`` with a ``(t, z, y, x)`` volume (``time_axis=0``) or any
``(..., t)`` array. Quantities and units (indicator-dilution theory, Østergaard 1996):

* ``ΔR2*(t) = −ln(S(t)/S0) / TE`` (1/s), ``S0`` = mean of the detected pre-bolus baseline frames;
  ΔR2* is taken as proportional to concentration with the same constant in tissue and artery
  (``data_kind="concentration"`` takes ΔR2*/concentration curves and subtracts their baseline mean);
* ``cbf`` (ml/100 g/min) ``= k_H/ρ · max_t k(t) · 6000`` where ``k = CBF·R`` is the deconvolved
  residue (1/s), ``k_H = (1 − Hct_large)/(1 − Hct_small)`` (defaults 0.45 and 0.25 → 0.733) and
  ``ρ`` the brain tissue density (default 1.04 g/ml); set both to neutral values
  (``hematocrit_large=hematocrit_small=0``, ``density_g_per_ml=1``) to get ml/100 ml units;
* ``cbv`` (ml/100 g) ``= k_H/ρ · 100 · ∫C_tissue / ∫C_aif`` (trapezoid rule);
* ``mtt_s = 60 · cbv / cbf`` (central volume theorem); ``tmax_s`` the time of the residue peak
  (bolus delay between AIF and tissue); ``ttp_s`` time to the peak of ΔR2* and ``bat_s`` bolus arrival,
  both from the first frame;
* ``rcbv``/``rcbf``: divided by their mean over a reference region mask (e.g. contralateral
  normal-appearing white matter), when one is given;
* leakage correction (Boxerman, Schmainda & Weisskoff, AJNR 2006): each voxel's ΔR2* is fitted as
  ``K1·ΔR2*_ref(t) − K2·∫_0^t ΔR2*_ref`` against the mean curve of a non-enhancing reference (by default
  all fitted voxels), ``k2_per_s`` is the map of K2 and the corrected curve
  ``ΔR2* + K2·∫ΔR2*_ref`` gives ``cbv`` (``cbv_uncorrected`` is kept) and the other maps.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import NDArray
from scipy.integrate import cumulative_trapezoid, trapezoid
from scipy.interpolate import interp1d
from threadpoolctl import threadpool_limits

from .aif import select_aif
from .base import FitResult, as_curves, to_maps
from .baseline import detect_bolus
from .deconvolution import WU_OI_THRESHOLD, SvdDeconvolver, residue_peak
from .deconvolution import Method as SvdMethod

#: Model-based methods (:mod:`perfnode.perfusion.parametric`), started from oSVD: ``parametric``
#: (exponential residue), ``parametric-tied`` (the same with F = CBV/MTT), ``gamma`` (gamma residue,
#: its shape chosen over the volume).
PARAMETRIC: tuple[str, ...] = ("parametric", "parametric-tied", "gamma")
#: Every deconvolution method by name.
METHODS: tuple[str, ...] = ("ssvd", "csvd", "osvd", *PARAMETRIC)
Method = Literal["ssvd", "csvd", "osvd", "parametric", "parametric-tied", "gamma"]

UNITS: dict[str, str] = {
    "cbf": "ml/100g/min", "cbv": "ml/100g", "cbv_uncorrected": "ml/100g", "mtt_s": "s", "tmax_s": "s",
    "ttp_s": "s", "bat_s": "s", "k2_per_s": "1/s", "rcbv": "1", "rcbf": "1", "osvd_threshold": "1",
}


def hematocrit_factor(hematocrit_large: float, hematocrit_small: float) -> float:
    """``k_H = (1 − Hct_large)/(1 − Hct_small)``: large-vessel vs capillary haematocrit."""
    return (1.0 - hematocrit_large) / (1.0 - hematocrit_small)


def signal_to_delta_r2s(signal: np.ndarray, te_s: float, start: int, stop: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """ΔR2* (1/s) of signal curves (n, t) against the mean of baseline frames ``[start, stop)``.

    Returns ΔR2* and a boolean ``valid`` per curve (positive, finite signal throughout).
    """
    if not te_s > 0:
        raise ValueError(f"(0018,0081) EchoTime must be > 0, got {te_s * 1000:g} ms")
    s = np.asarray(signal)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    s0 = s[:, start:stop].mean(axis=1)
    valid = (s.min(axis=1) > 0) & (s0 > 0)  # also False for NaN (comparisons with NaN are False)
    valid &= np.isfinite(s.max(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        dr2 = np.divide(s, s0[:, None])
        np.log(dr2, out=dr2)
        dr2 *= -1.0 / te_s
    dr2[~valid] = np.nan
    return dr2, valid


def trapezoid_weights(times: np.ndarray) -> np.ndarray:
    """Weights ``w`` with ``curves @ w`` = trapezoid-rule integral over ``times`` (one BLAS call)."""
    t = np.asarray(times, dtype=np.float64)
    w = np.zeros_like(t)
    d = np.diff(t) / 2.0
    w[:-1] += d
    w[1:] += d
    return w


def uniform_grid(curves: np.ndarray, times: np.ndarray, rtol: float = 0.01
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """Curves on a uniform time grid (linear interpolation if sampling varies by more than ``rtol``)."""
    t = np.asarray(times, dtype=np.float64)
    steps = np.diff(t)
    if np.any(steps <= 0):
        raise ValueError("frame times must increase strictly")
    dt = float(np.median(steps))
    if np.all(np.abs(steps - dt) <= rtol * dt):
        return curves, t, dt
    dt = float(steps.min())
    grid = np.arange(t[0], t[-1] + 1e-9 * dt, dt)
    return interp1d(t, curves, axis=-1, assume_sorted=True)(grid), grid, dt


def leakage_correct(curves: np.ndarray, reference: np.ndarray, times: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxerman–Schmainda–Weisskoff: fit ``K1·ref − K2·∫ref`` per curve by linear least squares.

    Returns the corrected curves, K1 and K2 (1/s when ``times`` are in s).
    """
    ref = np.asarray(reference, dtype=np.float64)
    iref = cumulative_trapezoid(ref, times, initial=0.0)
    basis = np.stack([ref, -iref])  # (2, t)
    gram = basis @ basis.T
    coef = np.linalg.solve(gram, basis @ np.nan_to_num(curves).T).T  # (n, 2)
    k1, k2 = coef[:, 0], coef[:, 1]
    return curves + k2[:, None] * iref, k1, k2


def indicator_dilution_fit(conc: np.ndarray, times: np.ndarray, valid: np.ndarray, *,
                           method: Method,
                           threshold: float | None, oi_threshold: float, kh_over_rho: float,
                           aif: np.ndarray | None = None, aif_rows: np.ndarray | None = None,
                           aif_exclude: np.ndarray | None = None, n_aif_voxels: int = 5,
                           leakage_reference: np.ndarray | None = None,
                           baseline: tuple[int, int] | None = None, dtype: type = np.float32
                           ) -> tuple[dict[str, np.ndarray], np.ndarray, Counter[str], dict[str, Any]]:
    """Shared DSC/CT core on baseline-subtracted concentration curves ``conc`` (n, t).

    ``valid`` flags usable curves; the AIF is given, averaged over ``aif_rows``, or selected
    automatically among valid rows. ``baseline`` frames ``[start, stop)`` give each curve's pre-bolus
    level for the arrival time (default: estimated per curve).
    Returns per-row maps, R² quality, failure counts, provenance.
    """
    n = conc.shape[0]
    failures: Counter[str] = Counter()
    valid = valid & np.all(np.isfinite(conc), axis=1)
    failures["non-finite or non-positive data"] = int(n - valid.sum())
    maps: dict[str, np.ndarray] = {}
    prov: dict[str, Any] = {"method": method, "oi_threshold": oi_threshold if method == "osvd" else None,
                            "kh_over_rho": kh_over_rho}
    work = np.where(valid[:, None], conc, 0.0)

    # bolus arrival and time to peak per voxel
    t = np.asarray(times, dtype=np.float64)
    w_int = trapezoid_weights(t).astype(work.dtype)
    level = None if baseline is None else work[:, baseline[0]:baseline[1]].mean(axis=1)
    bolus = detect_bolus(work, skip=0 if baseline is None else baseline[0], level=level)
    maps["bat_s"] = t[np.clip(bolus.arrival, 0, t.size - 1)] - t[0]
    maps["ttp_s"] = t[np.argmax(work, axis=1)] - t[0]

    # AIF
    if aif is not None:
        aif_curve = np.asarray(aif, dtype=np.float64)
        if aif_curve.shape != (t.size,):
            raise ValueError(f"AIF must have {t.size} samples like the data, got {aif_curve.shape}")
        prov["aif_source"] = "user"
        aif_idx = np.array([], dtype=int)
    elif aif_rows is not None and len(aif_rows):
        aif_idx = np.asarray(aif_rows)
        aif_idx = aif_idx[valid[aif_idx]]
        if aif_idx.size == 0:
            raise ValueError("no valid curve inside the AIF mask")
        aif_curve = conc[aif_idx].mean(axis=0)
        prov["aif_source"] = "mask"
    else:
        rows = np.flatnonzero(valid)
        exclude = None if aif_exclude is None else aif_exclude[rows]
        sel = select_aif(conc[rows], t, n_aif_voxels, exclude=exclude)
        aif_idx = rows[sel.indices]
        aif_curve = sel.curve
        prov.update(aif_source="automatic", aif_rejected=dict(sel.rejected), aif_criteria=sel.criteria)
    if not trapezoid(aif_curve, t) > 0:
        raise ValueError("the arterial input function has no positive area: nothing to deconvolve against")
    prov["aif_rows"] = aif_idx
    prov["aif_curve"] = aif_curve
    prov["times_s"] = t

    # leakage correction (before deconvolution so that all maps use the corrected curve)
    if leakage_reference is not None:
        ref_rows = np.asarray(leakage_reference) & valid
        ref_rows[aif_idx] = False  # arteries are not the non-enhancing tissue reference
        if not ref_rows.any():
            ref_rows = valid
        reference = conc[ref_rows].mean(axis=0)
        corrected, _k1, k2 = leakage_correct(work, reference, t)
        with np.errstate(invalid="ignore", divide="ignore"):
            maps["cbv_uncorrected"] = kh_over_rho * 100.0 * (work @ w_int) / trapezoid(aif_curve, t)
        maps["k2_per_s"] = k2
        work = corrected
        prov["leakage_correction"] = "Boxerman-Schmainda-Weisskoff 2006"
        prov["leakage_reference_curve"] = reference

    # deconvolution on a uniform grid
    uc, ut, dt = uniform_grid(work, t)
    ua = uniform_grid(aif_curve[None], t)[0][0]
    if method not in METHODS:
        raise ValueError(f"deconvolution method {method!r} is not one of {METHODS}")
    svd_method = cast(SvdMethod, "osvd" if method in PARAMETRIC else method)
    solver = SvdDeconvolver(ua, dt, method=svd_method, threshold=threshold, oi_threshold=oi_threshold,
                            dtype=dtype)
    deconv = solver(uc)
    peak, tmax = residue_peak(deconv.residue, dt, ua.size, deconv.circulant)
    prov.update(dt_s=dt, svd_threshold=None if svd_method == "osvd" else solver.threshold,
                osvd_thresholds=solver.thresholds if svd_method == "osvd" else None)
    if svd_method == "osvd":
        maps["osvd_threshold"] = deconv.threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        area_ratio = (work @ w_int) / trapezoid(aif_curve, t)
        cbf = kh_over_rho * peak.astype(np.float64) * 6000.0
        cbv = kh_over_rho * 100.0 * area_ratio
        mtt = 60.0 * cbv / cbf
        quality = np.clip(deconv.r2, 0.0, 1.0)
    converged = None
    if method in PARAMETRIC:
        from .parametric import fit_residue, select_shape

        rows = np.flatnonzero(valid)
        with np.errstate(invalid="ignore", divide="ignore"):
            start = np.column_stack([np.maximum(peak[rows], 1e-4),
                                     np.clip(area_ratio[rows] / peak[rows], 0.5, 20), tmax[rows]])
        shape, scores = 1, None
        if method == "gamma":
            shape, scores = select_shape(work[rows], aif_curve, t, start)
        pf = fit_residue(work[rows], aif_curve, t, start, shape=shape,
                         area=area_ratio[rows] if method == "parametric-tied" else None)
        cbf = np.full(n, np.nan)
        cbv = np.full(n, np.nan)
        mtt = np.full(n, np.nan)
        tmax = np.full(n, np.nan)
        quality = np.full(n, np.nan)
        converged = np.zeros(n, bool)
        cbf[rows] = kh_over_rho * pf.flow * 6000.0
        cbv[rows] = kh_over_rho * 100.0 * pf.flow * pf.mtt_s
        mtt[rows], tmax[rows], converged[rows] = pf.mtt_s, pf.delay_s, pf.converged
        sst = ((work[rows] - work[rows].mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            quality[rows] = np.clip(1.0 - pf.sse / sst, 0.0, 1.0)
        quality[rows] = np.where(pf.converged, quality[rows], 0.0)  # 0 = did not converge
        failures["fit did not converge"] = int((~pf.converged).sum())
        residue = "exponential" if shape == 1 else f"gamma (shape {shape})"
        if method == "gamma":
            residue += (", shape chosen over the volume among "
                        + ", ".join(f"{k} (score {v:.3g})" for k, v in (scores or {}).items()))
        tie = ", flow tied to the area ratio (F = CBV/MTT)" if method == "parametric-tied" else ""
        prov.update(residue_model=f"{residue} residue with arterial delay{tie} (parametric, start: oSVD)",
                    residue_shape=shape,
                    iterations_median=float(np.median(pf.iterations)) if rows.size else 0.0)
    prov["converged"] = converged
    bad_flow = valid & ~(cbf > 0)
    failures["no positive residue"] = int(bad_flow.sum())
    ok = valid & ~bad_flow
    maps.update(cbf=cbf, cbv=cbv, mtt_s=mtt, tmax_s=tmax)
    for name, value in maps.items():
        maps[name] = np.where(ok, value, np.nan)
    quality = np.where(ok, quality, np.nan)
    return maps, quality, +failures, prov


def _relative(maps: dict[str, np.ndarray], spatial: tuple[int, ...], sel: np.ndarray,
              reference_mask: np.ndarray | None, prov: dict[str, Any]) -> None:
    if reference_mask is None:
        return
    ref = np.asarray(reference_mask, dtype=bool).reshape(-1)
    if ref.size != sel.size:
        raise ValueError(f"reference mask shape does not match the data's spatial shape {spatial}")
    rows = ref[sel]
    for name in ("cbv", "cbf"):
        level = np.nanmean(maps[name][rows]) if rows.any() else np.nan
        maps["r" + name] = maps[name] / level
        prov[f"reference_{name}"] = float(level)


def flat_indices(rows: np.ndarray, spatial: tuple[int, ...], sel: np.ndarray) -> list[tuple[int, ...]]:
    """Spatial index tuples of selected rows (e.g. the AIF voxels) for provenance."""
    flat = np.flatnonzero(sel)[np.asarray(rows, dtype=int)]
    if not spatial:
        return [() for _ in flat]
    return [tuple(int(v) for v in ix) for ix in zip(*np.unravel_index(flat, spatial), strict=True)]


class DscModel:
    """DSC-MRI acquisition and analysis settings; :meth:`fit` computes all maps of a volume at once."""

    def __init__(self, times_s: np.ndarray, te_s: float, *,
                 method: Method = "osvd",
                 threshold: float | None = None, oi_threshold: float = WU_OI_THRESHOLD,
                 hematocrit_large: float = 0.45, hematocrit_small: float = 0.25,
                 density_g_per_ml: float = 1.04, n_aif_voxels: int = 5, aif: np.ndarray | None = None,
                 leakage_correction: bool = False, skip_frames: int = 1, data_kind: Literal[
                     "signal", "concentration"] = "signal", saturation_fraction: float = 0.05,
                 dtype: type = np.float32) -> None:
        self.times = np.asarray(times_s, dtype=np.float64)
        if self.times.ndim != 1 or self.times.size < 8:
            raise ValueError("frame times must be a 1-D array of at least 8 frames")
        self.te_s = float(te_s)
        self.method, self.threshold, self.oi_threshold = method, threshold, oi_threshold
        self.hematocrit_large, self.hematocrit_small = hematocrit_large, hematocrit_small
        self.density = density_g_per_ml
        self.kh_over_rho = hematocrit_factor(hematocrit_large, hematocrit_small) / density_g_per_ml
        self.n_aif_voxels, self.aif = n_aif_voxels, aif
        self.leakage_correction, self.skip_frames = leakage_correction, skip_frames
        self.data_kind, self.saturation_fraction, self.dtype = data_kind, saturation_fraction, dtype

    def fit(self, data: np.ndarray, mask: np.ndarray | None = None, time_axis: int = -1, *,
            aif_mask: np.ndarray | None = None, reference_mask: np.ndarray | None = None,
            leakage_reference_mask: np.ndarray | None = None) -> FitResult:
        """Maps of ``data`` (signal or ΔR2*, per ``data_kind``) inside ``mask``.

        ``aif_mask`` forces the AIF voxels; ``reference_mask`` adds rCBV/rCBF; with leakage correction,
        ``leakage_reference_mask`` chooses the non-enhancing reference voxels (default: all).
        """
        curves, spatial, sel = as_curves(data, time_axis, mask, dtype=self.dtype)
        if curves.shape[1] != self.times.size:
            raise ValueError(f"data have {curves.shape[1]} frames but {self.times.size} frame times")
        # baseline frames from the mean curve (robust), the bolus making the signal drop
        mean_curve = curves.mean(axis=0)
        if not np.all(np.isfinite(mean_curve)):
            mean_curve = np.nanmean(np.where(np.isfinite(curves), curves, np.nan), axis=0)
        sign = -1.0 if self.data_kind == "signal" else 1.0
        bl = detect_bolus(sign * mean_curve, skip=self.skip_frames)
        start, stop = bl.frames
        if self.data_kind == "signal":
            conc, valid = signal_to_delta_r2s(curves, self.te_s, start, stop)
            s0 = curves[:, start:stop].mean(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                saturated = np.min(np.where(np.isfinite(curves), curves, np.inf), axis=1) < (
                    self.saturation_fraction * s0)
        else:
            conc = curves - curves[:, start:stop].mean(axis=1, keepdims=True)  # pre-bolus level → 0
            valid = np.all(np.isfinite(curves), axis=1)
            saturated = None
        with threadpool_limits(limits=1, user_api="blas"):  # see SvdDeconvolver.__call__
            maps, quality, failures, prov = indicator_dilution_fit(
                conc, self.times, valid, method=self.method, threshold=self.threshold,
                oi_threshold=self.oi_threshold, kh_over_rho=self.kh_over_rho, aif=self.aif,
                aif_rows=None if aif_mask is None else _rows(aif_mask, sel, spatial),
                aif_exclude=saturated, n_aif_voxels=self.n_aif_voxels, baseline=(start, stop),
                leakage_reference=(None if not self.leakage_correction else
                                   np.ones(len(conc), bool) if leakage_reference_mask is None
                                   else _rows_mask(leakage_reference_mask, sel, spatial)),
                dtype=self.dtype)
        prov.update(technique="DSC-MRI", data_kind=self.data_kind, te_s=self.te_s,
                    baseline_frames=(start, stop), hematocrit_large=self.hematocrit_large,
                    hematocrit_small=self.hematocrit_small, density_g_per_ml=self.density,
                    aif_voxels=flat_indices(prov.pop("aif_rows"), spatial, sel),
                    aif_units="1/s (ΔR2*)" if self.data_kind == "signal" else "as given")
        _relative(maps, spatial, sel, reference_mask, prov)
        converged = prov.pop("converged", None)
        return FitResult(maps={k: to_maps(v, spatial, sel) for k, v in maps.items()},
                         units={k: UNITS[k] for k in maps}, quality=to_maps(quality, spatial, sel),
                         failures=failures, provenance=prov,
                         converged=None if converged is None else to_maps(converged, spatial, sel, bool))


def _rows_mask(mask: np.ndarray, sel: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    m = np.asarray(mask, dtype=bool)
    if m.shape != spatial:
        raise ValueError(f"mask shape {m.shape} does not match the data's spatial shape {spatial}")
    rows: NDArray[np.bool_] = m.reshape(-1)[sel]
    return rows


def _rows(mask: np.ndarray, sel: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    return np.flatnonzero(_rows_mask(mask, sel, spatial))
