"""Diffusion-weighted MRI: every DWI series with two or more b-values → ADC.

Recognised by: diffusion b-values (standard attributes or the vendors' documented private ones; a b = 0
image without a b-value counts as b = 0), or Image Type / Acquisition Contrast DIFFUSION. When the
b-values allow IVIM, :mod:`perfnode.techniques.ivim` is chosen instead (it sends ADC too).
"""

from __future__ import annotations

from perfnode.dicom import frames
from perfnode.perfusion.base import FitResult
from perfnode.techniques.base import AnalysisError, Detection, Technique, TechniqueModel
from perfnode.techniques.headers import SeriesHeaders
from perfnode.techniques.ivim import B_THRESHOLD, trace_images


def detect(s: SeriesHeaders) -> Detection | None:
    if s.modality != "MR":
        return None
    b = s.b_values
    said = ({"DIFFUSION"} & s.type_values(2)) or {
        str(v).upper() for v in s.anywhere("AcquisitionContrast", "MRImageFrameTypeSequence")
    } & {"DIFFUSION"}
    if not said and not any(v > 0 for v in b):
        return None  # b = 0 only (e.g. GE writes its private b-value field, 0, on every EPI image)
    reasons = []
    if b:
        reasons.append(f"b-values {sorted(b)} s/mm²")
    if said:
        reasons.append("DIFFUSION in (0008,0008) ImageType / (0008,9209) AcquisitionContrast")
    return Detection("dwi", True, ", ".join(reasons))


class AdcAnalysis(TechniqueModel):
    """Trace-weighted images → mono-exponential ADC (:class:`perfnode.perfusion.ivim.ADCModel`)."""

    def fit(self, volume: frames.Volume4D) -> FitResult:
        from perfnode.perfusion.ivim import ADCModel

        bvals, per_b = trace_images(volume)
        if bvals.size < 2:
            raise AnalysisError(
                f"(0018,9087) DiffusionBValue: only b = {bvals.tolist()} s/mm²; ADC needs two "
                "distinct b-values"
            )
        self.curves = per_b
        self.notes.append(
            f"ADC only: IVIM needs three or more b-values, two or more at or below {B_THRESHOLD:g} s/mm² and "
            f"two above; the series has b = {', '.join(f'{b:g}' for b in bvals)} s/mm² "
            "((0018,9087) DiffusionBValue)")
        return ADCModel(bvals).fit(per_b, axis=0)


TECHNIQUE = Technique(
    name="dwi",
    title="diffusion-weighted MRI (ADC)",
    detect=detect,
    model=AdcAnalysis,
    maps=("adc", "quality"),
    qc_protocol="dwi",
    phantom="dwi",
)
