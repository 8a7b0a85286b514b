"""DSC-MRI: the T2*-weighted first pass of a gadolinium bolus → CBF, CBV, MTT, Tmax, TTP, ...

Recognised by: an MR time series (≥ 3 time points) with a long echo time (≥ 15 ms: gradient-echo EPI
at TE 25–50 ms; DCE uses a few ms), not marked as fMRI, diffusion or ASL. Stated when the header also
says Image Type PERFUSION and names the contrast agent; inferred otherwise.
"""

from __future__ import annotations

from perfnode.dicom import frames
from perfnode.perfusion.base import FitResult
from perfnode.perfusion.mask import describe as describe_mask
from perfnode.techniques.base import (
    AnalysisError,
    Detection,
    Technique,
    TechniqueModel,
    foreground,
    require_time_points,
    slice_timed,
)
from perfnode.techniques.headers import SeriesHeaders, dynamic_mr, echo_time_ms

#: Deconvolution of the node's DSC jobs: model-based (exponential residue with delay, started from oSVD),
#: whose CBF bias at high flow is a few per cent where oSVD's is 25–45 % (benchmarks/accuracy.py).
DECONVOLUTION = "parametric"


def to_relative(fit: FitResult, mask) -> None:
    """DSC CBF and CBV are not calibrated (partial-volume AIF, tissue/blood relaxivity, ΔR2*
    non-linearity): send them as rCBF/rCBV, divided by their median over the analysed voxels, and keep
    the uncalibrated level with the constants it assumed in the provenance."""
    import numpy as np

    for name in ("cbf", "cbv"):
        values = fit.maps.pop(name, None)
        if values is None:
            continue
        inside = values[mask & np.isfinite(values) & (values > 0)]
        level = float(np.median(inside)) if inside.size else float("nan")
        fit.maps["r" + name] = (values / level).astype(np.float32)
        fit.units["r" + name] = "1"
        fit.provenance[f"{name}_reference_level_uncalibrated"] = level
    fit.provenance["relative_maps"] = (
        "rCBF, rCBV: CBF and CBV divided by their median over the analysed voxels; not calibrated "
        f"(k_H/ρ = {fit.provenance.get('kh_over_rho', float('nan')):.4g} assumed, AIF in ΔR2* units); no "
        "venous-output (partial-volume) scaling of the AIF: one scale for the whole AIF cancels in relative "
        "maps, and a sinus's ΔR2* is not linear in concentration")

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
        require_time_points(volume, "DSC")
        data, timing = slice_timed(volume)
        mask = foreground(data)
        fit = DscModel(volume.times_s, float(te_ms) / 1000.0, method=DECONVOLUTION).fit(
            data, mask=mask, time_axis=0)
        fit.provenance["slice_timing"] = timing
        fit.provenance["mask"] = describe_mask("MR")
        to_relative(fit, mask)
        self.curves = volume.data  # the acquired series: QC and the gate's CNR (resampling smooths noise)
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
