"""CT perfusion: the first pass of an iodinated contrast bolus → CBF, CBV, MTT, Tmax, TTP, ...

Recognised by: a CT series with ≥ 3 time points at the same slice positions. Stated when Image Type
says PERFUSION or the header names the contrast agent; a CT time series is inferred to be perfusion
otherwise (no other CT acquisition repeats the same slices over time).
"""

from __future__ import annotations

from perfnode.dicom import frames
from perfnode.perfusion.base import FitResult
from perfnode.perfusion.mask import describe as describe_mask
from perfnode.techniques.base import (
    Detection,
    Technique,
    TechniqueModel,
    foreground,
    require_time_points,
    slice_timed,
)
from perfnode.techniques.headers import SeriesHeaders, contrast_agent

#: Deconvolution and denoising of the node's CT perfusion jobs (see benchmarks/accuracy.py): model-based
#: deconvolution (exponential residue, flow tied to the area ratio) of curves filtered by guided TIPS
#: (perfnode.perfusion.denoise.guided_tips), the AIF scaled by an automatic venous output function. On
#: the stroke phantom (4 seeds) core, penumbra/core and grey/core are within 10 % at SNR 100, where the
#: CNR after denoising passes the gate; oSVD underestimates grey matter by ~40 %.
DECONVOLUTION = "parametric-tied"
DENOISE = True


def detect(s: SeriesHeaders) -> Detection | None:
    if s.modality != "CT" or (n := s.time_points) < 3:
        return None
    reasons = [f"CT, {n} time points"]
    if "PERFUSION" in s.type_values(2):
        reasons.append("(0008,0008) ImageType value 3 PERFUSION")
    if agent := contrast_agent(s):
        reasons.append(f"contrast agent {agent!r}")
    return Detection("ctp", len(reasons) > 1, ", ".join(reasons))


class CtpAnalysis(TechniqueModel):
    """HU time curves → deconvolution with an automatic AIF (:class:`perfnode.perfusion.ctp.CtpModel`)."""

    def fit(self, volume: frames.Volume4D) -> FitResult:
        from perfnode.perfusion.ctp import CtpModel

        require_time_points(volume, "CT perfusion")
        data, timing = slice_timed(volume)
        fit = CtpModel(volume.times_s, method=DECONVOLUTION, denoise=DENOISE, vof="auto").fit(
            data, mask=foreground(data, "CT"), time_axis=0)
        fit.provenance["slice_timing"] = timing
        fit.provenance["mask"] = describe_mask("CT")
        self.curves = data
        return fit


TECHNIQUE = Technique(
    name="ctp",
    title="CT perfusion",
    detect=detect,
    model=CtpAnalysis,
    maps=(
        "cbf",
        "cbv",
        "cbv_uncorrected",
        "rcbf",
        "rcbv",
        "mtt",
        "tmax",
        "ttp",
        "bat",
        "delay",
        "k2",
        "quality",
    ),
    qc_protocol="ctp",
    phantom="ctp",
    method="ct",
    dynamic=True,
    aif_label="enhancement (HU)",
)
