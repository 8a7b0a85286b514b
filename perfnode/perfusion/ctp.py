"""CT perfusion: HU → concentration by baseline subtraction, then the DSC deconvolution core.

The enhancement ``ΔHU(t) = HU(t) − mean(HU over the pre-bolus baseline)`` is proportional to the
iodine concentration with the same constant in artery and tissue, so it is used directly. Frame
times may be non-uniform (common in CTP protocols): curves are interpolated onto a uniform grid
for the deconvolution. Maps and units are those of :mod:`perfnode.perfusion.dsc` (CBF ml/100 g/min
with haematocrit and density correction, CBV ml/100 g, MTT s, Tmax s, TTP s, BAT s).

Optional venous output function (``vof_mask``): arterial partial volume lowers the AIF area; the AIF
is scaled so that its area equals that of the VOF (a large vein free of partial volume), a common CTP
correction. The scale is recorded in the provenance.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.integrate import trapezoid
from threadpoolctl import threadpool_limits

from .aif import select_aif, select_vof
from .base import FitResult, as_curves, to_maps
from .baseline import contrast_to_noise, detect_bolus
from .deconvolution import WU_OI_THRESHOLD
from .denoise import guided_tips
from .dsc import UNITS, Method, _relative, _rows, flat_indices, hematocrit_factor, indicator_dilution_fit


class CtpModel:
    """CT perfusion settings; :meth:`fit` computes all maps of a ``(t, z, y, x)`` or ``(..., t)`` array."""

    def __init__(self, times_s: np.ndarray, *, method: Method = "osvd",
                 threshold: float | None = None, oi_threshold: float = WU_OI_THRESHOLD,
                 hematocrit_large: float = 0.45, hematocrit_small: float = 0.25,
                 density_g_per_ml: float = 1.04, n_aif_voxels: int = 5, aif_hu: np.ndarray | None = None,
                 skip_frames: int = 0, dtype: type = np.float32, denoise: bool = False,
                 vof: Literal["auto", "off"] = "off", denoise_radius: int = 3) -> None:
        self.times = np.asarray(times_s, dtype=np.float64)
        if self.times.ndim != 1 or self.times.size < 8:
            raise ValueError("frame times must be a 1-D array of at least 8 frames")
        self.method, self.threshold, self.oi_threshold = method, threshold, oi_threshold
        self.hematocrit_large, self.hematocrit_small = hematocrit_large, hematocrit_small
        self.density = density_g_per_ml
        self.kh_over_rho = hematocrit_factor(hematocrit_large, hematocrit_small) / density_g_per_ml
        self.n_aif_voxels, self.aif_hu = n_aif_voxels, aif_hu
        self.skip_frames, self.dtype = skip_frames, dtype
        self.denoise, self.vof = denoise, vof
        self.denoise_radius = denoise_radius

    def fit(self, data: np.ndarray, mask: np.ndarray | None = None, time_axis: int = -1, *,
            aif_mask: np.ndarray | None = None, vof_mask: np.ndarray | None = None,
            reference_mask: np.ndarray | None = None) -> FitResult:
        """Maps of HU curves ``data`` inside ``mask`` (see the module docstring for the masks)."""
        denoising = "none"
        cnr_denoised = None
        if self.denoise:
            vol = np.moveaxis(np.asarray(data, dtype=np.float32), time_axis, 0)
            if vol.ndim != 4:
                raise ValueError("TIPS denoising needs a (t, z, y, x) volume")
            m = np.ones(vol.shape[1:], bool) if mask is None else np.asarray(mask, bool)
            b0, b1 = detect_bolus(vol[:, m].mean(axis=1), skip=self.skip_frames).frames
            data, denoising = guided_tips(vol, m, (b0, b1), radius=self.denoise_radius)
            time_axis = 0
            cnr_denoised = contrast_to_noise(data, m, (b0, b1), falls=False)
        curves, spatial, sel = as_curves(data, time_axis, mask, dtype=self.dtype)
        if curves.shape[1] != self.times.size:
            raise ValueError(f"data have {curves.shape[1]} frames but {self.times.size} frame times")
        valid = np.all(np.isfinite(curves), axis=1)
        mean_curve = curves[valid].mean(axis=0) if valid.any() else np.zeros(self.times.size)
        start, stop = detect_bolus(mean_curve, skip=self.skip_frames).frames
        conc = curves - curves[:, start:stop].mean(axis=1, keepdims=True)
        aif = None
        if self.aif_hu is not None:
            given = np.asarray(self.aif_hu, dtype=np.float64)
            aif = given - given[start:stop].mean()
        aif_rows = None if aif_mask is None else _rows(aif_mask, sel, spatial)
        scale = None
        vof_rows = None
        if vof_mask is None and self.vof == "auto" and self.aif_hu is None and aif_mask is None:
            rows = np.flatnonzero(valid)
            picked = select_aif(conc[rows], self.times, self.n_aif_voxels)
            aif_rows = rows[picked.indices]
            found = select_vof(conc[rows], self.times, picked.curve)
            aif = picked.curve
            if found is not None:
                scale = found.scale
                aif = aif * scale
                vof_rows = rows[found.indices]
        elif vof_mask is not None:
            vof_rows = _rows(vof_mask, sel, spatial)
            vof = conc[vof_rows[valid[vof_rows]]].mean(axis=0)
            if aif is None:
                if aif_rows is not None:
                    aif = conc[aif_rows[valid[aif_rows]]].mean(axis=0)
                else:
                    rows = np.flatnonzero(valid)
                    picked = select_aif(conc[rows], self.times, self.n_aif_voxels)
                    aif_rows = rows[picked.indices]
                    aif = picked.curve
            scale = float(trapezoid(vof, self.times) / trapezoid(aif, self.times))
            aif = aif * scale
        with threadpool_limits(limits=1, user_api="blas"):  # see SvdDeconvolver.__call__
            maps, quality, failures, prov = indicator_dilution_fit(
                conc, self.times, valid, method=self.method, threshold=self.threshold,
                oi_threshold=self.oi_threshold, kh_over_rho=self.kh_over_rho, aif=aif, aif_rows=aif_rows,
                n_aif_voxels=self.n_aif_voxels, baseline=(start, stop), dtype=self.dtype)
        rows = prov.pop("aif_rows")
        if aif is not None and aif_rows is not None:
            rows = aif_rows
        prov.update(technique="CT perfusion", baseline_frames=(start, stop), aif_units="HU above baseline",
                    hematocrit_large=self.hematocrit_large, hematocrit_small=self.hematocrit_small,
                    density_g_per_ml=self.density, vof_scale=scale, denoising=denoising,
                    tissue_cnr=cnr_denoised,
                    vof_voxels=None if vof_rows is None else flat_indices(vof_rows, spatial, sel),
                    aif_voxels=flat_indices(rows, spatial, sel))
        _relative(maps, spatial, sel, reference_mask, prov)
        converged = prov.pop("converged", None)
        return FitResult(maps={k: to_maps(v, spatial, sel) for k, v in maps.items()},
                         units={k: UNITS[k] for k in maps}, quality=to_maps(quality, spatial, sel),
                         failures=failures, provenance=prov,
                         converged=None if converged is None else to_maps(converged, spatial, sel, bool))
