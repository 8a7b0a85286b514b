"""DCE-MRI: the T1-weighted passage of a gadolinium bolus → Ktrans, ve, vp, kep (extended Tofts).

Recognised by: an MR time series (≥ 3 time points) with a short echo time (< 15 ms: spoiled gradient
echo), not marked as fMRI, diffusion or ASL. Stated when the header also says Image Type PERFUSION and
names the contrast agent. Companion: a variable-flip-angle series (≥ 2 flip angles) of the study for the
pre-contrast T1; without one the default T10 is used and said so.
"""

from __future__ import annotations

import numpy as np

from perfnode.dicom import frames
from perfnode.perfusion.base import FitResult
from perfnode.perfusion.mask import describe as describe_mask
from perfnode.techniques.base import (
    AnalysisError,
    Companion,
    Detection,
    Technique,
    TechniqueModel,
    foreground,
)
from perfnode.techniques.dsc import DSC_MIN_TE_MS
from perfnode.techniques.headers import SeriesHeaders, dynamic_mr, echo_time_ms


def blood_t1(field_strength_t: float) -> tuple[float, str]:
    """Pre-contrast T1 of arterial blood (s) for the AIF conversion when the study has no T1 map, with
    its source: the ISMRM/EU consensus values (Alsop et al., MRM 2015;73:102: 1350 ms at 1.5 T, 1650 ms
    at 3 T; Hct ≈ 0.42), the nearest of the two for another field strength (said so)."""
    from perfnode.perfusion.asl import T1_BLOOD_S

    b0 = min(T1_BLOOD_S, key=lambda f: abs(f - field_strength_t))
    t1 = T1_BLOOD_S[b0]
    note = f"blood T1 {t1 * 1000:.0f} ms at {b0:g} T (Alsop et al., MRM 2015;73:102)"
    if abs(b0 - field_strength_t) > 0.1:
        note += f"; the nearest consensus value for {field_strength_t:g} T"
    return t1, note


#: Constants used where the header cannot give them (recorded in every map's provenance).
DEFAULTS: dict[str, float] = {
    "dce_t10_s": 1.4,  # pre-contrast tissue T1 when no T1 map is given (brain grey matter, 3 T);
    # blood (the AIF voxels) has its own T1 by field strength: blood_t1()
    "dce_relaxivity_per_mM_s": 4.5,  # r1 of gadolinium chelates at 1.5–3 T
    "dce_hematocrit": 0.42,
}


def flip_angles(s: SeriesHeaders) -> set[float]:
    """Distinct flip angles of the series' instances and frames."""
    return s.numbers("FlipAngle", "MRTimingAndRelatedParametersSequence")


def detect(s: SeriesHeaders) -> Detection | None:
    reasons, why_not = dynamic_mr(s)
    te = echo_time_ms(s)
    if why_not or te is None or te >= DSC_MIN_TE_MS:
        return None
    stated = any("PERFUSION" in r for r in reasons) and any("contrast agent" in r for r in reasons)
    return Detection(
        "dce", stated, ", ".join([*reasons, f"TE {te:g} ms < {DSC_MIN_TE_MS:g} ms (T1-weighted)"])
    )


VFA = Companion("variable-flip-angle T1", lambda s: len(flip_angles(s)) >= 2 and s.time_points <= 1)


class DceAnalysis(TechniqueModel):
    """Signal → concentration (SPGR, T10 from the study's VFA series or the default) → extended Tofts with a
    measured AIF (Parker population AIF when no arterial curve is found)."""

    def fit(self, volume: frames.Volume4D) -> FitResult:
        from perfnode.perfusion.aif import select_aif
        from perfnode.perfusion.baseline import detect_bolus
        from perfnode.perfusion.dce import DCEModel
        from perfnode.perfusion.signal import spgr_to_concentration
        from perfnode.perfusion.t1 import VFAModel

        acq, vol = self.acq, volume
        tr_ms, fa = acq.fact("repetition_time_ms"), acq.fact("flip_angle_deg")
        if tr_ms is None or fa is None:
            raise AnalysisError("(0018,0080) RepetitionTime and (0018,1314) FlipAngle are needed for DCE")
        mean = np.nanmean(vol.data.reshape(vol.data.shape[0], -1), axis=1)
        base = detect_bolus(mean, skip=1)
        start, stop = base.frames
        t10: np.ndarray | float = DEFAULTS["dce_t10_s"]
        t10_source = "default (no variable-flip-angle series in the study)"
        found = acq.companions.find(VFA)
        if found is not None:
            vfa = found[0]
            angles = vfa.extra_dims["flip_angle_deg"]
            signals = vfa.data.reshape(len(angles), *vfa.data.shape[-3:])  # (angle, z, y, x)
            t1 = VFAModel(angles, float(tr_ms) / 1000.0).fit(signals, axis=0)
            t10 = np.where(np.isfinite(t1.t1_s), t1.t1_s, DEFAULTS["dce_t10_s"])
            t10_source = (
                f"VFA T1 map of series {vfa.series_instance_uid} (flip angles {[float(a) for a in angles]})"
            )
        else:
            self.notes.append(
                f"pre-contrast T1 {DEFAULTS['dce_t10_s']} s assumed: no variable-flip-angle "
                "series in the study"
            )
        conc = spgr_to_concentration(
            vol.data,
            float(tr_ms) / 1000.0,
            float(fa),
            t10,
            DEFAULTS["dce_relaxivity_per_mM_s"],
            baseline=(start, stop),
            time_axis=0,
        )
        c = np.nan_to_num(np.moveaxis(conc.maps["concentration_mM"], -1, 0))
        hct = DEFAULTS["dce_hematocrit"]
        mask = foreground(vol.data)
        inside = np.flatnonzero(mask)  # noise outside the head converts to huge, spiky "concentrations"
        try:  # a measured (blood) AIF from the most arterial voxels, as the ESR recommends where feasible
            sel = select_aif(c.reshape(c.shape[0], -1)[:, inside].T, vol.times_s)
            aif_blood = sel.curve
            t1_blood_note = "T1 of the AIF voxels from the measured T1 map"
            if found is None:  # no T1 map: blood has its own T1, not the tissue default
                b0 = float(acq.fact("field_strength_t", 3.0))
                t1b, t1_blood_note = blood_t1(b0)
                voxels = np.unravel_index(inside[sel.indices], c.shape[1:])
                arterial = spgr_to_concentration(
                    vol.data[(slice(None), *voxels)], float(tr_ms) / 1000.0, float(fa), t1b,
                    DEFAULTS["dce_relaxivity_per_mM_s"], baseline=(start, stop), time_axis=0)
                aif_blood = np.nanmean(arterial.maps["concentration_mM"], axis=0)
            model = DCEModel(vol.times_s, aif=aif_blood, aif_is_blood=True, hematocrit=hct)
            aif_info = {
                "aif": "measured: automatic selection (blood curve / (1 − Hct))",
                "aif_curve": aif_blood.tolist(),
                "aif_t1_blood": t1_blood_note,
                "aif_voxels_zyx": [
                    list(map(int, np.unravel_index(inside[i], c.shape[1:]))) for i in sel.indices
                ],
            }
        except ValueError:  # no arterial curve in the field of view: Parker population AIF at bolus arrival
            arrival_s = float(vol.times_s[int(base.arrival[0])])
            model = DCEModel(vol.times_s, aif="parker", hematocrit=hct, aif_start_s=arrival_s)
            aif_info = {
                "aif": "Parker 2006 population AIF",
                "aif_start_s": arrival_s,
                "aif_curve": model.cp.tolist(),
            }
        fit = model.fit(c, mask=mask, time_axis=0)
        fit.provenance.update(
            {
                "mask": describe_mask("MR"),
                "t10_source": t10_source,
                "relaxivity_per_mM_s": DEFAULTS["dce_relaxivity_per_mM_s"],
                "hematocrit": hct,
                "baseline_frames": [start, stop],
                "defaults": DEFAULTS,
                **aif_info,
            }
        )
        self.curves = vol.data  # data quality (tSNR, bolus, motion) is judged on the signal, not on C(t)
        return fit


TECHNIQUE = Technique(
    name="dce",
    title="DCE perfusion MRI",
    detect=detect,
    model=DceAnalysis,
    maps=("ktrans", "kep", "ve", "vp", "fp", "ps", "e", "iauc60", "iauc90", "delay", "quality"),
    qc_protocol="dce",
    phantom="dce",
    companions=(VFA,),
    dynamic=True,
    aif_label="concentration (mM)",
)
