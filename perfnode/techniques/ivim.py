"""IVIM: diffusion-weighted images at several low and high b-values → D, D*, f (and ADC).

Recognised by: three or more distinct diffusion b-values (standard attributes or the vendors' documented
private ones), two or more of them at or below 200 s/mm² (an acquisition meant for IVIM). The segmented
fit needs two b-values above 200 s/mm² as well; without them the series still gets its ADC map, and the
note says why there is no IVIM map. Other diffusion series are plain DWI (:mod:`perfnode.techniques.dwi`).
"""

from __future__ import annotations

import numpy as np

from perfnode.dicom import frames
from perfnode.perfusion.base import FitResult
from perfnode.techniques.base import AnalysisError, Detection, Technique, TechniqueModel
from perfnode.techniques.headers import SeriesHeaders

B_THRESHOLD = 200.0  # s/mm²: perfusion (D*) dominates below, diffusion (D) above


def ivim_possible(b_values: set[float]) -> bool:
    """Enough b-values for the segmented IVIM fit: two or more at or below the threshold, two above."""
    low = {b for b in b_values if b <= B_THRESHOLD}
    return len(low) >= 2 and len(b_values - low) >= 2


def ivim_intended(b_values: set[float]) -> bool:
    """An acquisition meant for IVIM: three or more b-values, two or more at or below the threshold."""
    return len(b_values) >= 3 and len({b for b in b_values if b <= B_THRESHOLD}) >= 2


def detect(s: SeriesHeaders) -> Detection | None:
    b = s.b_values
    if not ivim_intended(b):
        return None
    why = f"b-values {sorted(b)} s/mm² (3 or more, 2 or more at or below {B_THRESHOLD:g})"
    return Detection("ivim", True, why, rank=1)


def trace_images(volume: frames.Volume4D) -> tuple[np.ndarray, np.ndarray]:
    """``(b-values (n,), images (n, z, y, x))``: for each distinct b, the geometric mean over its
    directions (trace-weighted) and over repeated time points."""
    names = list(volume.extra_dims)
    if "diffusion" not in names:
        raise AnalysisError(
            f"the series has no diffusion axis (axes: {names or 'none'}): "
            "(0018,9087) DiffusionBValue not found per frame"
        )
    axis = names.index("diffusion")
    data = np.moveaxis(volume.data, axis, 0)  # (diffusion, [other extra...], t, z, y, x)
    while data.ndim > 4:
        data = data.mean(axis=1)
    b = np.asarray(volume.extra_dims["diffusion"], dtype=float).reshape(len(data), -1)[:, 0]
    bvals = np.unique(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_b = np.stack([np.exp(np.log(np.clip(data[b == v], 1e-6, None)).mean(axis=0)) for v in bvals])
    return bvals, per_b


class IvimAnalysis(TechniqueModel):
    """Trace-weighted images → segmented IVIM fit (:class:`perfnode.perfusion.ivim.IVIMModel`) and ADC."""

    def fit(self, volume: frames.Volume4D) -> FitResult:
        from perfnode.perfusion.ivim import ADCModel, IVIMModel

        bvals, per_b = trace_images(volume)
        self.curves = per_b
        if bvals.size < 2:
            raise AnalysisError(
                f"(0018,9087) DiffusionBValue: only b = {bvals.tolist()} s/mm²; ADC needs two"
            )
        adc = ADCModel(bvals).fit(per_b, axis=0)
        if not ivim_possible(set(bvals.tolist())):
            self.notes.append(
                f"no IVIM maps: b-values {bvals.tolist()} s/mm² (the segmented IVIM fit needs 2 or "
                f"more at or below and 2 or more above {B_THRESHOLD:g}); ADC only"
            )
            return adc
        fit = IVIMModel(bvals, method="segmented", b_threshold=B_THRESHOLD).fit(per_b, axis=0)
        fit.maps["adc_mm2_per_s"] = adc.maps["adc_mm2_per_s"]
        fit.units["adc_mm2_per_s"] = adc.units["adc_mm2_per_s"]
        fit.provenance["adc"] = adc.provenance
        return fit


TECHNIQUE = Technique(
    name="ivim",
    title="IVIM diffusion MRI",
    detect=detect,
    model=IvimAnalysis,
    maps=("ivim_d", "ivim_dstar", "ivim_f", "adc", "quality"),
    qc_protocol="ivim",
    phantom="ivim",
)
