"""One analysis of one series, the same for the node's jobs and for ``perfnode maps``.

files → technique (:mod:`perfnode.techniques`: the registry's detector over every instance, or the one
asked for) → 4-D volume (:mod:`perfnode.dicom.frames`) → the technique's model → PERF and QC findings
→ Parametric Maps on the volume's grid with provenance (:mod:`perfnode.dicom.parametric_map`) → files in
``out_dir/maps`` (+ optional colour renderings and the HTML report in ``out_dir/report``).

:func:`run_analysis` takes and returns plain data so it can run in a worker process; :func:`analyse`
wraps it into an :class:`Outcome` (maps written / refused with reason / failed with reason) and never
raises, so one series failing never stops the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from perfnode import techniques
from perfnode.dicom import frames
from perfnode.dicom.findings import Finding
from perfnode.dicom.parametric_map import MapSource, build_parametric_maps
from perfnode.dicom.perf import check_series as check_perf
from perfnode.perfusion.base import FitResult
from perfnode.perfusion.mask import foreground
from perfnode.qc.compliance import check_series
from perfnode.qc.facts import header_facts
from perfnode.qc.gate import GateResult, judge
from perfnode.techniques import Acquisition, AnalysisError, Companions, Decision, detect_series

__all__ = ["AnalysisError", "AnalysisRequest", "AnalysisResult", "NotForAnalysis", "Outcome", "analyse",
           "fit_series", "run_analysis"]


@dataclass
class AnalysisRequest:
    files: list[str]
    out_dir: str
    uid_seed: str
    technique: str | None = None  # None: recognised from the headers of the whole series
    colour: bool = False
    report: bool = True
    protocols: str | None = None  # a site's QC rule folder
    #: Files of other series of the same study (M0 for ASL, variable-flip-angle T1 for DCE).
    companions: list[str] = field(default_factory=list)
    #: Why the technique is what it is (the pipeline's decision, said in the report), if decided already.
    decision: str | None = None


@dataclass
class AnalysisResult:
    files: list[str]
    series_uid: str
    technique: str
    report: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    findings: list[dict[str, str]] = field(default_factory=list)
    #: how the technique was decided (one line)
    decision: str = ""
    #: what the reader of the result must be told: technique inferred or ambiguous, defaults, a map not made
    notes: list[str] = field(default_factory=list)
    #: Quality gate (perfnode.qc.gate): True when every sent map passed; the one-line verdict otherwise.
    reliable: bool = True
    verdict: str = "reliable"


class NotForAnalysis(AnalysisError):
    """The series is not one perfnode analyses (e.g. an M0 or T1 companion series, or a map)."""


@dataclass
class Outcome:
    """What became of one series: ``written`` (maps), ``refused`` (with the reason), ``failed`` (with why)."""

    series_uid: str
    status: Literal["written", "refused", "failed"]
    reason: str = ""
    result: AnalysisResult | None = None

    def line(self) -> str:
        """The one line a person reads about this series."""
        if self.status == "written" and self.result is not None:
            r = self.result
            return (f"{self.series_uid}: {r.technique.upper()} maps written ({len(r.files)} object(s))"
                    + "".join(f"; {n}" for n in r.notes))
        return f"{self.series_uid}: {self.status}: {self.reason}"


def one_line(exc: BaseException) -> str:
    """An exception as one line (a refusal or failure reason)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, ValueError) else f"{type(exc).__name__}: {text}"


def analyse(req: AnalysisRequest, progress: Callable[[str], None] | None = None,
            series_uid: str = "") -> Outcome:
    """:func:`run_analysis` as an :class:`Outcome`: a ValueError (every input problem perfnode names: not
    for analysis, cannot assemble, inconsistent geometry, a model's precondition) is a refusal; anything
    else a failure. Never raises (except KeyboardInterrupt)."""
    try:
        result = run_analysis(req, progress)
    except (ValueError, InvalidDicomError) as exc:
        return Outcome(series_uid, "refused", one_line(exc))
    except Exception as exc:  # noqa: BLE001 - one series failing never stops the others
        return Outcome(series_uid, "failed", one_line(exc))
    return Outcome(series_uid or result.series_uid, "written", "", result)


def _decide(req: AnalysisRequest, headers: Sequence[Dataset]) -> tuple[techniques.Technique, Decision]:
    if req.technique:
        try:
            t = techniques.get(req.technique)
        except KeyError as exc:
            raise AnalysisError(str(exc).strip("'\"")) from None
        return t, Decision(t.name, req.decision or f"{t.name.upper()}: as asked", stated=True)
    decision = detect_series(headers)
    if decision.technique is None:
        raise NotForAnalysis(f"not analysed: {decision.reason}")
    return techniques.get(decision.technique), decision


def _incomplete(headers: Sequence[Dataset]) -> list[frames.AssemblyWarning]:
    """The series' incompleteness warnings (fewer temporal positions than announced), from its headers."""
    try:
        return [w for w in frames.plan(list(headers)).warnings if w.code == "incomplete"]
    except Exception:  # noqa: BLE001 - a series that does not even plan: nothing more to say here
        return []


def fit_series(technique: str, vol: frames.Volume4D, headers: list[Dataset],
               study_files: Sequence[str]) -> FitResult:
    """The ``technique``'s model fitted to one assembled series, with the study's other series at hand
    (what a job fits; ``perfnode report`` uses it too, see :data:`perfnode.qc.series.Fitter`)."""
    t = techniques.get(technique)
    own = {str(getattr(h, "filename", "")) for h in headers}
    companions = Companions([f for f in study_files if str(f) not in own], vol.data.shape[-3:],
                            vol.geometry.frame_of_reference_uid)
    model = t.model(Acquisition(list(headers), header_facts(headers), companions))
    fit = model.fit(vol)
    if model.notes:
        fit.provenance.setdefault("notes", list(model.notes))
    return fit


def run_analysis(req: AnalysisRequest, progress: Callable[[str], None] | None = None) -> AnalysisResult:
    """Analyse one series; write maps (and report) under ``req.out_dir``. A ValueError says (in one line,
    naming the attribute) why the series cannot be analysed."""
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    paths = frames.expand(req.files)
    if not paths:
        raise AnalysisError("no files given")
    headers: list[Dataset] = [dcmread(p, stop_before_pixels=True) for p in paths]
    try:
        technique, decision = _decide(req, headers)
    except NotForAnalysis as exc:  # say too when the series is incomplete: it may be why
        raise NotForAnalysis(f"{exc}{''.join(f'; incomplete series: {w}' for w in _incomplete(headers))}"
                             ) from None
    notes = [decision.note] if decision.note else []
    say(f"assembling {len(paths)} file(s)")
    try:
        vol = frames.assemble(paths)
    except ValueError as exc:
        raise AnalysisError(f"{exc}{''.join(f'; incomplete series: {w}' for w in _incomplete(headers))}"
                            ) from None
    notes += [f"incomplete series: {w}" for w in vol.warnings if w.code == "incomplete"]
    timings["assemble"] = time.perf_counter() - t0
    facts = header_facts(headers)
    say(f"fitting {technique.name}")
    t1 = time.perf_counter()
    own = set(map(str, paths))
    companions = Companions([f for f in req.companions if f not in own], vol.data.shape[-3:],
                            vol.geometry.frame_of_reference_uid)
    model = technique.model(Acquisition(headers, facts, companions))
    fit = model.fit(vol)
    notes += model.notes
    curves = model.curves if model.curves is not None else vol.data
    timings["fit"] = time.perf_counter() - t1
    gate = judge_fit(fit, technique, curves)
    t2 = time.perf_counter()
    aif = fit.provenance.get("aif_curve")
    study = [sh.first for sh in companions.headers()]  # T1 map, B1 map, M0 present in the study?
    g = vol.geometry
    spacing_mm = (float(g.slice_spacing or g.slice_thickness or 1.0), *map(float, g.pixel_spacing))
    qc = check_series(headers, study=[headers[0], *study], technique=technique.qc_protocol or technique.name,
                      protocols=req.protocols, times_s=vol.times_s,
                      data=curves if curves.ndim == 4 else None, spacing_mm=spacing_mm,
                      aif=np.asarray(aif) if aif is not None else None, fit=fit)
    # the IHE PERF rules are for contrast perfusion objects; ASL and diffusion are outside the profile
    findings: list[Finding] = [*(check_perf(headers) if technique.dynamic else []), *qc.findings]
    timings["qc"] = time.perf_counter() - t2
    maps, not_sent = technique.outputs(fit)
    sent_verdicts = [gate.maps[n] for n in maps if n in gate.maps]
    reliable = all(v.reliable for v in sent_verdicts)
    verdict = "reliable" if reliable else "not reliable because " + "; ".join(
        dict.fromkeys(r for v in sent_verdicts for r in v.reasons))
    if not maps:
        raise AnalysisError(f"the {technique.name.upper()} model gave none of its maps "
                            f"({', '.join(technique.maps)}); it gave {sorted(fit.maps) or 'nothing'}")
    say("encoding parametric maps")
    t3 = time.perf_counter()
    out = Path(req.out_dir)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    provenance = {"technique": technique.name, "technique_decision": decision.reason, **fit.provenance,
                  "failures": dict(fit.failures), "not_encoded": not_sent, "notes": notes,
                  "quality_gate": {**gate.to_dict(), "verdict": verdict}}
    source = MapSource.from_volume(vol, headers)
    pms = build_parametric_maps(headers, maps, uid_seed=req.uid_seed, source=source, provenance=provenance,
                                findings=findings, units={k: fit.units[k] for k in maps if k in fit.units},
                                series_description=f"perfnode {technique.name.upper()} maps")
    written: list[str] = []
    for name, pm in zip(maps, pms, strict=True):
        mv = gate.maps.get(name)
        if mv is not None and not mv.reliable:  # the first line a viewer shows beside the map
            flag = "NOT RELIABLE (perfnode quality gate): " + "; ".join(mv.reasons)
            pm.ImageComments = (flag + "\n" + str(pm.get("ImageComments", "")))[:10240]
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

        report = str(write_report(out / "report", qc=qc, title=f"{technique.name.upper()} series "
                                  f"{headers[0].get('SeriesInstanceUID', '')}", times_s=vol.times_s,
                                  data=curves if curves.ndim == 4 else None,
                                  aif=np.asarray(aif) if aif is not None else None,
                                  aif_label=technique.aif_label or "concentration", fit=fit,
                                  provenance=provenance, notes=notes, gate=gate))
    timings["total"] = time.perf_counter() - t0
    return AnalysisResult(files=written, series_uid=str(pms[0].SeriesInstanceUID), technique=technique.name,
                          report=report, timings_s=timings, findings=[f.to_dict() for f in findings],
                          decision=decision.reason, notes=notes, reliable=reliable, verdict=verdict)


def judge_fit(fit: FitResult, technique: techniques.Technique, curves: np.ndarray) -> GateResult:
    """The quality gate on a fit: out-of-range voxels masked (in place), a verdict per map."""
    mask = None
    if technique.dynamic and curves.ndim == 4:
        mask = foreground(curves, "CT" if technique.name == "ctp" else "MR")
    return judge(fit, technique.name, data=curves if curves.ndim == 4 else None, mask=mask)
