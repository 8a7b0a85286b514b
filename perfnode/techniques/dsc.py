"""DSC-MRI: the T2*-weighted first pass of a gadolinium bolus → CBF, CBV, MTT, Tmax, TTP, ...

Recognised by: an MR time series (≥ 3 time points) with a long echo time (≥ 15 ms: gradient-echo EPI
at TE 25–50 ms; DCE uses a few ms), not marked as fMRI, diffusion or ASL. Stated when the header also
says Image Type PERFUSION and names the contrast agent; inferred otherwise.
"""

from __future__ import annotations

from perfnode.dicom import frames
from perfnode.perfusion.base import FitResult
from perfnode.techniques.base import AnalysisError, Detection, Technique, TechniqueModel, foreground
from perfnode.techniques.headers import SeriesHeaders, dynamic_mr, echo_time_ms

#: Echo time (ms) at or above which a dynamic MR perfusion series is taken for DSC (T2*-weighted
#: GRE-EPI, TE 25–50 ms) rather than DCE (T1-weighted SPGR, TE of a few ms).
DSC_MIN_TE_MS = 15.0


def detect(s: SeriesHeaders) -> Detection | None:
    reasons, why_not = dynamic_mr(s)
    te = echo_time_ms(s)
    if why_not or te is None or te < DSC_MIN_TE_MS:
        return None
    stated = any("PERFUSION" in r for r in reasons) and any("contrast agent" in r for r in reasons)
    return Detection(
        "dsc", stated, ", ".join([*reasons, f"TE {te:g} ms ≥ {DSC_MIN_TE_MS:g} ms (T2*-weighted)"])
    )


class DscAnalysis(TechniqueModel):
    """Signal → ΔR2* → deconvolution with an automatic AIF (:class:`perfnode.perfusion.dsc.DscModel`)."""

    def fit(self, volume: frames.Volume4D) -> FitResult:
        from perfnode.perfusion.dsc import DscModel

        te_ms = self.acq.fact("echo_time_ms")
        if te_ms is None:
            raise AnalysisError("(0018,0081) EchoTime / (0018,9082) EffectiveEchoTime missing: DSC needs TE")
        mask = foreground(volume.data)
        fit = DscModel(volume.times_s, float(te_ms) / 1000.0).fit(volume.data, mask=mask, time_axis=0)
        fit.provenance["mask"] = "baseline signal > 10 % of its 99th percentile"
        self.curves = volume.data
        return fit


TECHNIQUE = Technique(
    name="dsc",
    title="DSC perfusion MRI",
    detect=detect,
    model=DscAnalysis,
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
    qc_protocol="dsc",
    phantom="dsc",
    method="dsc",
    dynamic=True,
    aif_label="ΔR2* (1/s)",
)
