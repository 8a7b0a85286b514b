"""One analysis of one series, the same for the node's jobs and for ``perfnode maps``.

files → 4-D volume (:mod:`perfnode.dicom.frames`) → technique model (:mod:`perfnode.perfusion`)
→ PERF and QC findings → Parametric Maps with provenance (:mod:`perfnode.dicom.parametric_map`)
→ files in ``out_dir/maps`` (+ optional colour renderings and the HTML report in ``out_dir/report``).

:func:`run_analysis` takes and returns plain data so it can run in a worker process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset

from perfnode.dicom import frames
from perfnode.dicom.codes import quantity
from perfnode.dicom.findings import Finding
from perfnode.dicom.parametric_map import build_parametric_maps
from perfnode.dicom.perf import check_series as check_perf
from perfnode.perfusion.aif import select_aif
from perfnode.perfusion.asl import AslModel
from perfnode.perfusion.base import FitResult
from perfnode.perfusion.ctp import CtpModel
from perfnode.perfusion.dce import DCEModel
from perfnode.perfusion.dsc import DscModel
from perfnode.perfusion.ivim import IVIMModel
from perfnode.perfusion.signal import spgr_to_concentration
from perfnode.perfusion.t1 import VFAModel
from perfnode.pipeline.technique import TECHNIQUES, asl_contexts, detect, flip_angles
from perfnode.qc.compliance import check_series
from perfnode.qc.facts import header_facts

#: Constants used where the header cannot give them (recorded in every map's provenance).
DEFAULTS: dict[str, float] = {
    "dce_t10_s": 1.4,  # pre-contrast tissue T1 when no T1 map is given (brain grey matter, 3 T)
    "dce_relaxivity_per_mM_s": 4.5,  # r1 of gadolinium chelates at 1.5–3 T
    "dce_hematocrit": 0.42,
}


@dataclass
class AnalysisRequest:
    files: list[str]
    out_dir: str
    uid_seed: str
    technique: str | None = None  # None: recognised from the header
    colour: bool = False
    report: bool = True
    protocols: str | None = None  # a site's QC rule folder
    #: Files of other series of the same study (M0 for ASL, variable-flip-angle T1 for DCE).
    companions: list[str] = field(default_factory=list)


@dataclass
class AnalysisResult:
    files: list[str]
    series_uid: str
    technique: str
    report: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    findings: list[dict[str, str]] = field(default_factory=list)


class AnalysisError(ValueError):
    """The series cannot be analysed; the message says why."""


class NotForAnalysis(AnalysisError):
    """The series is not one perfnode analyses (e.g. an M0 or T1 companion series, or a map)."""


class Companions:
    """Other series of the study that an analysis may need, assembled on demand."""

    def __init__(self, files: list[str], shape: tuple[int, ...], frame_of_reference: str) -> None:
        self.series = frames.group_series(frames.expand(files)) if files else {}
        self.shape, self.frame_of_reference = shape, frame_of_reference

    def find(self, wanted: Callable[[Dataset], bool]) -> frames.Volume4D | None:
        """The first companion series whose first header is ``wanted`` and whose grid matches ours."""
        for headers in self.series.values():
            if not wanted(headers[0]):
                continue
            vol = frames.assemble([h.filename for h in headers])
            same_grid = vol.data.shape[-3:] == self.shape
            if same_grid and vol.geometry.frame_of_reference_uid == self.frame_of_reference:
                return vol
        return None


def _fact(facts: dict, name: str, default: Any = None) -> Any:
    f = facts.get(name)
    return default if f is None or f.value is None else f.value


def foreground(data: np.ndarray, ct: bool = False) -> np.ndarray:
    """Voxels worth fitting: MR baseline above 10 % of its 99th percentile; CT above −300 HU (not air)."""
    baseline = data[: min(3, data.shape[0])].mean(axis=0)
    if ct:
        return baseline > -300.0
    return baseline > 0.1 * np.nanpercentile(baseline, 99)


def _fit_dsc(vol: frames.Volume4D, facts: dict, companions: Companions) -> tuple[FitResult, np.ndarray]:
    te_ms = _fact(facts, "echo_time_ms")
    if te_ms is None:
        raise AnalysisError("(0018,0081) EchoTime / (0018,9082) EffectiveEchoTime missing: DSC needs TE")
    mask = foreground(vol.data)
    fit = DscModel(vol.times_s, float(te_ms) / 1000.0).fit(vol.data, mask=mask, time_axis=0)
    fit.provenance["mask"] = "baseline signal > 10 % of its 99th percentile"
    return fit, vol.data


def _fit_ctp(vol: frames.Volume4D, facts: dict, companions: Companions) -> tuple[FitResult, np.ndarray]:
    fit = CtpModel(vol.times_s).fit(vol.data, mask=foreground(vol.data, ct=True), time_axis=0)
    fit.provenance["mask"] = "baseline > -300 HU"
    return fit, vol.data


def _fit_dce(vol: frames.Volume4D, facts: dict, companions: Companions) -> tuple[FitResult, np.ndarray]:
    tr_ms, fa = _fact(facts, "repetition_time_ms"), _fact(facts, "flip_angle_deg")
    if tr_ms is None or fa is None:
        raise AnalysisError("(0018,0080) RepetitionTime and (0018,1314) FlipAngle are needed for DCE")
    mean = np.nanmean(vol.data.reshape(vol.data.shape[0], -1), axis=1)
    from perfnode.perfusion.baseline import detect_bolus

    base = detect_bolus(mean, skip=1)
    start, stop = base.frames
    t10: np.ndarray | float = DEFAULTS["dce_t10_s"]
    t10_source = "default (no variable-flip-angle series in the study)"
    vfa = companions.find(lambda h: len(flip_angles(h)) >= 2)
    if vfa is not None:
        angles = vfa.extra_dims["flip_angle_deg"]
        signals = vfa.data.reshape(len(angles), *vfa.data.shape[-3:])  # (angle, z, y, x)
        t1 = VFAModel(angles, float(tr_ms) / 1000.0).fit(signals, axis=0)
        t10 = np.where(np.isfinite(t1.t1_s), t1.t1_s, DEFAULTS["dce_t10_s"])
        t10_source = (f"VFA T1 map of series {vfa.series_instance_uid} "
                      f"(flip angles {[float(a) for a in angles]})")
    conc = spgr_to_concentration(vol.data, float(tr_ms) / 1000.0, float(fa), t10,
                                 DEFAULTS["dce_relaxivity_per_mM_s"], baseline=(start, stop), time_axis=0)
    c = np.nan_to_num(np.moveaxis(conc.maps["concentration_mM"], -1, 0))
    hct = DEFAULTS["dce_hematocrit"]
    mask = foreground(vol.data)
    inside = np.flatnonzero(mask)  # noise outside the head converts to huge, spiky "concentrations"
    try:  # a measured (blood) AIF from the most arterial voxels, as the ESR recommends where feasible
        sel = select_aif(c.reshape(c.shape[0], -1)[:, inside].T, vol.times_s)
        model = DCEModel(vol.times_s, aif=sel.curve, aif_is_blood=True, hematocrit=hct)
        aif_info = {"aif": "measured: automatic selection (blood curve / (1 − Hct))",
                    "aif_curve": sel.curve.tolist(),
                    "aif_voxels_zyx": [list(map(int, np.unravel_index(inside[i], c.shape[1:])))
                                       for i in sel.indices]}
    except ValueError:  # no arterial curve in the field of view: Parker population AIF at bolus arrival
        arrival_s = float(vol.times_s[int(base.arrival[0])])
        model = DCEModel(vol.times_s, aif="parker", hematocrit=hct, aif_start_s=arrival_s)
        aif_info = {"aif": "Parker 2006 population AIF", "aif_start_s": arrival_s,
                    "aif_curve": model.cp.tolist()}
    fit = model.fit(c, mask=mask, time_axis=0)
    fit.provenance.update({
        "mask": "baseline signal > 10 % of its 99th percentile",
        "t10_source": t10_source, "relaxivity_per_mM_s": DEFAULTS["dce_relaxivity_per_mM_s"],
        "hematocrit": hct, "baseline_frames": [start, stop], **aif_info,
    })
    return fit, vol.data  # data quality (tSNR, bolus, motion) is judged on the signal, not on C(t)


def _axis(vol: frames.Volume4D, name: str) -> tuple[int, np.ndarray]:
    names = list(vol.extra_dims)
    if name not in names:
        raise AnalysisError(f"the series has no {name} axis (extra axes: {names or 'none'})")
    return names.index(name), np.asarray(vol.extra_dims[name])


def _fit_asl(vol: frames.Volume4D, facts: dict, companions: Companions) -> tuple[FitResult, np.ndarray]:
    axis, contexts = _axis(vol, "asl_context")
    ctx = [str(c).upper() for c in contexts]
    if "CONTROL" not in ctx or "LABEL" not in ctx:
        raise AnalysisError(f"(0018,9257) ASLContext: need CONTROL and LABEL frames, found {ctx}")
    control = np.take(vol.data, ctx.index("CONTROL"), axis=axis)
    label = np.take(vol.data, ctx.index("LABEL"), axis=axis)
    while control.ndim > 4:  # further extra axes (e.g. one PLD): take the first
        control, label = control[0], label[0]
    if "M_ZERO_SCAN" in ctx:
        m0_frames = np.take(vol.data, ctx.index("M_ZERO_SCAN"), axis=axis)
    elif (m0_vol := companions.find(lambda h: "M_ZERO_SCAN" in asl_contexts(h))) is not None:
        m0_frames = m0_vol.data
    else:
        raise AnalysisError("(0018,9257) ASLContext: no M_ZERO_SCAN frames in the series or the study; "
                            "CBF needs an M0 image")
    m0 = m0_frames.reshape(-1, *m0_frames.shape[-3:]).mean(axis=0)
    pairs = np.stack([control, label], axis=1).reshape(-1, *control.shape[1:])  # control, label, ...
    pld_ms = _fact(facts, "post_labelling_delay_ms")
    tau_ms = _fact(facts, "labelling_duration_ms")
    kind = str(_fact(facts, "asl_labelling_type", "PCASL")).lower()
    if pld_ms is None:
        raise AnalysisError("ASL post-labelling delay missing from the header")
    labeling = "pasl" if kind == "pasl" else "pcasl"
    model = AslModel(labeling, pld_s=float(pld_ms) / 1000,
                     labeling_duration_s=float(tau_ms) / 1000 if tau_ms else None,
                     bolus_duration_s=float(tau_ms) / 1000 if tau_ms and labeling == "pasl" else None,
                     field_strength_t=float(_fact(facts, "field_strength_t", 3.0)))
    return model.fit(pairs, m0, time_axis=0), pairs


def _fit_ivim(vol: frames.Volume4D, facts: dict, companions: Companions) -> tuple[FitResult, np.ndarray]:
    axis, diff = _axis(vol, "diffusion")
    data = vol.data
    while data.ndim > 4 + axis:  # (diffusion, t, z, y, x) → average the other extra axes
        data = data.mean(axis=axis + 1)
    data = data.mean(axis=axis + 1) if data.ndim == 5 else data  # the t axis (one time point)
    b = np.asarray(diff)[:, 0]
    bvals = np.unique(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        # trace-weighted: geometric mean over the directions of each b-value
        per_b = np.stack([np.exp(np.log(np.clip(data[b == v], 1e-6, None)).mean(axis=0)) for v in bvals])
    return IVIMModel(bvals, method="segmented").fit(per_b, axis=0), per_b


#: technique → fitter returning the fit and the images the data-quality checks and the report's curves
#: use: the acquired time series (signal, HU, label/control pairs), or the per-b images for IVIM.
FITTERS: dict[str, Callable[[frames.Volume4D, dict, Companions], tuple[FitResult, np.ndarray]]] = {
    "dsc": _fit_dsc, "ctp": _fit_ctp, "dce": _fit_dce, "asl": _fit_asl, "ivim": _fit_ivim,
}


def fit_series(technique: str, vol: frames.Volume4D, headers: list[Dataset],
               study_files: list[str]) -> FitResult:
    """The ``technique``'s model fitted to one assembled series, with the study's other series at hand
    (what a job fits; ``perfnode report`` uses it too, see :data:`perfnode.qc.series.Fitter`)."""
    companions = Companions(study_files, vol.data.shape[-3:], vol.geometry.frame_of_reference_uid)
    return FITTERS[technique](vol, header_facts(headers), companions)[0]


def encodable(fit: FitResult) -> dict[str, np.ndarray]:
    """The 3-D maps of a fit that have a quantity in :mod:`perfnode.dicom.codes`."""
    out: dict[str, np.ndarray] = {}
    for name, values in fit.maps.items():
        try:
            quantity(name)
        except KeyError:
            continue
        if values.ndim == 3:
            out[name] = values
    if fit.quality is not None and fit.quality.ndim == 3:
        out["quality"] = fit.quality
    return out


def run_analysis(req: AnalysisRequest, progress: Callable[[str], None] | None = None) -> AnalysisResult:
    """Analyse one series; write maps (and report) under ``req.out_dir``."""
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    paths = frames.expand(req.files)
    headers: list[Dataset] = [dcmread(p, stop_before_pixels=True) for p in paths]
    technique = req.technique or detect(headers[0])
    if technique not in TECHNIQUES:
        raise NotForAnalysis(f"no perfusion/diffusion analysis recognised for series "
                            f"{headers[0].get('SeriesInstanceUID', '?')} (technique {technique!r})")
    say(f"assembling {len(paths)} file(s)")
    vol = frames.assemble(paths)
    timings["assemble"] = time.perf_counter() - t0
    facts = header_facts(headers)
    say(f"fitting {technique}")
    t1 = time.perf_counter()
    companions = Companions([f for f in req.companions if f not in set(map(str, paths))],
                            vol.data.shape[-3:], vol.geometry.frame_of_reference_uid)
    fit, curves = FITTERS[technique](vol, facts, companions)
    timings["fit"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    aif = fit.provenance.get("aif_curve")
    study = [hs[0] for hs in companions.series.values()]  # T1 map, B1 map, M0 present in the study?
    g = vol.geometry
    spacing_mm = (float(g.slice_spacing or g.slice_thickness or 1.0), *map(float, g.pixel_spacing))
    qc = check_series(headers, study=[headers[0], *study], technique=technique, protocols=req.protocols,
                      times_s=vol.times_s, data=curves if curves.ndim == 4 else None, spacing_mm=spacing_mm,
                      aif=np.asarray(aif) if aif is not None else None, fit=fit)
    findings: list[Finding] = [*check_perf(headers), *qc.findings]
    timings["qc"] = time.perf_counter() - t2
    say("encoding parametric maps")
    t3 = time.perf_counter()
    out = Path(req.out_dir)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    provenance = {"technique": technique, **fit.provenance,
                  "failures": dict(fit.failures), "defaults": DEFAULTS}
    maps = encodable(fit)
    pms = build_parametric_maps(headers, maps, uid_seed=req.uid_seed, provenance=provenance,
                                findings=findings, units={k: fit.units[k] for k in maps if k in fit.units},
                                series_description=f"perfnode {technique.upper()} maps")
    written: list[str] = []
    for name, pm in zip(maps, pms, strict=True):
        path = out / "maps" / f"{name}.dcm"
        pm.save_as(path, enforce_file_format=True)
        written.append(str(path))
    if req.colour:
        from perfnode.dicom.colour import render_colour

        (out / "colour").mkdir(exist_ok=True)
        for name, pm in zip(maps, pms, strict=True):
            path = out / "colour" / f"{name}.dcm"
            render_colour(pm, uid_seed=req.uid_seed).save_as(path, enforce_file_format=True)
            written.append(str(path))
    timings["encode"] = time.perf_counter() - t3
    report = None
    if req.report:
        from perfnode.qc.report import write_report

        report = str(write_report(out / "report", qc=qc, title=f"{technique.upper()} series "
                                  f"{headers[0].get('SeriesInstanceUID', '')}", times_s=vol.times_s,
                                  data=curves if curves.ndim == 4 else None,
                                  aif=np.asarray(aif) if aif is not None else None, fit=fit,
                                  provenance=provenance))
    timings["total"] = time.perf_counter() - t0
    return AnalysisResult(files=written, series_uid=str(pms[0].SeriesInstanceUID), technique=technique,
                          report=report, timings_s=timings, findings=[f.to_dict() for f in findings])
