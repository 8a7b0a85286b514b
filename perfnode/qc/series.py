"""One series on disk → QC facts, findings, a fit where a model applies, and the HTML report.

Used by ``perfnode report`` (the pipeline writes its own report per job). Assembly uses
:mod:`perfnode.dicom.frames`; the fit is whatever ``fitter`` the caller passes (``perfnode report``
passes the pipeline's, so a report shows the maps a job would make); whatever is missing is said in
the report's notes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from perfnode import techniques
from perfnode.perfusion.mask import foreground
from perfnode.qc.compliance import QCResult, check_series
from perfnode.qc.report import write_report
from perfnode.techniques import detect_series

log = logging.getLogger(__name__)

#: ``fitter(technique, volume, headers, study_files) -> FitResult``: the model fitted to the assembled
#: series (a :class:`~perfnode.dicom.frames.Volume4D`); ``study_files`` are the files of the study's
#: other series (an M0 or variable-flip-angle T1 series). A ``ValueError`` says why it cannot run.
Fitter = Callable[[str, Any, Sequence[Dataset], Sequence[str]], Any]



@dataclass
class SeriesAnalysis:
    """What was found about one series: the QC result, arrays, fit, and notes for the reader."""

    qc: QCResult
    title: str
    times_s: np.ndarray | None = None
    data: np.ndarray | None = None
    spacing_mm: tuple[float, ...] | None = None
    fit: Any = None
    aif: np.ndarray | None = None
    aif_label: str = "concentration"
    notes: list[str] = field(default_factory=list)
    #: IVIM: (b-values s/mm², mean signal at each) for the decay picture
    decay: tuple[np.ndarray, np.ndarray] | None = None
    #: extra pictures: name → (image (z, y, x), unit), e.g. the ASL control − label difference
    images: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)


def read_headers(paths: Iterable[str | Path]) -> dict[str, list[Dataset]]:
    """Headers (pixel data deferred) of the DICOM files among ``paths``, by Series Instance UID."""
    from perfnode.dicom.frames import expand

    out: dict[str, list[Dataset]] = {}
    for p in expand(paths):
        try:
            ds = pydicom.dcmread(p, defer_size=1024 * 1024)
        except (InvalidDicomError, OSError):
            log.debug("skipping %s: not DICOM", p)
            continue
        out.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    return out


def pick_series(
    groups: Mapping[str, list[Dataset]], series_uid: str | None = None
) -> tuple[list[Dataset], list[Dataset]]:
    """The series to report (``series_uid``, else the one with most frames) and the rest of the study."""
    if not groups:
        raise ValueError("no DICOM files found")
    if series_uid is None:

        def frames(items: list[Dataset]) -> int:
            return sum(int(d.get("NumberOfFrames") or 1) for d in items)

        series_uid = max(groups, key=lambda k: frames(groups[k]))
    if series_uid not in groups:
        raise ValueError(f"(0020,000E) SeriesInstanceUID {series_uid}: not among the files given")
    study = [d for uid, items in groups.items() if uid != series_uid for d in items[:1]]
    return groups[series_uid], study


def _title(ds: Dataset) -> str:
    desc = str(ds.get("SeriesDescription", "") or "").strip() or "series"
    num = ds.get("SeriesNumber")
    return f"{desc} (series {num})" if num not in (None, "") else desc


def analyse(
    headers: Sequence[Dataset],
    *,
    study: Sequence[Dataset] | None = None,
    technique: str | None = None,
    protocols: Any = None,
    given: Mapping[str, Any] | Sequence[str] | None = None,
    fit: Any = None,
    fitter: Fitter | None = None,
    study_files: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> SeriesAnalysis:
    """Assemble, fit (with ``fitter``, unless ``fit`` is given) and check one series; ``progress`` is told
    each long step (a 128×128×20×60 series takes seconds to fit)."""
    say = progress or (lambda _msg: None)
    notes: list[str] = []
    hdr = list(headers)
    decision = detect_series(hdr) if not technique and hdr else None
    tech = (technique or (decision.technique if decision else None) or "").lower() or None
    try:
        entry = techniques.get(tech) if tech else None
    except KeyError:
        entry = None
    if decision is not None and decision.note:
        notes.append(f"Technique: {decision.note}")
    elif decision is not None and decision.technique is None:
        notes.append(f"Technique not recognised: {decision.reason}")
    times = data = spacing = decay = vol = None
    images: dict[str, tuple[np.ndarray, str]] = {}
    try:
        from perfnode.dicom.frames import AssemblyError, assemble
    except ImportError:  # pragma: no cover - frames.py is part of perfnode
        assemble, AssemblyError = None, Exception
        notes.append("4-D assembly is not available in this build: the report is made from the headers.")
    if assemble is not None:
        try:
            say(f"assembling {len(hdr)} object(s)")
            vol = assemble([getattr(d, "filename", None) or d for d in hdr])
            data = np.asarray(vol.data, dtype=np.float32)
            extra = list(vol.extra_dims)
            decay, images = _pictures(data, vol.extra_dims)
            if data.ndim > 4:
                if entry is not None and entry.dynamic:
                    notes.append(
                        f"extra dimension(s) {', '.join(extra)}: time-course checks use the first value"
                    )
                data = data[(0,) * (data.ndim - 4)]
            times = np.asarray(vol.times_s, dtype=float)
            g = vol.geometry
            spacing = (
                float(g.slice_spacing or g.slice_thickness or 1.0),
                *(float(x) for x in g.pixel_spacing),
            )
        except (AssemblyError, ValueError, AttributeError) as exc:
            notes.append(f"4-D assembly failed ({exc}): the report is made from the headers alone.")
    if fit is None and fitter is not None and vol is not None:
        if tech is None:
            notes.append("The technique was not recognised (give --technique): no model was fitted.")
        else:
            try:
                shape = "×".join(map(str, np.shape(vol.data)))
                say(f"fitting the {tech.upper()} model to {shape} voxels × time points")
                t0 = time.perf_counter()
                fit = fitter(tech, vol, hdr, list(study_files))
                say(f"fitted in {time.perf_counter() - t0:.1f} s")
            except ValueError as exc:
                notes.append(f"The {tech.upper()} model could not be fitted: {exc}")
            else:
                notes += [str(n) for n in (getattr(fit, "provenance", None) or {}).get("notes", [])]
    aif = _aif_of(fit) if fit is not None else None
    aif_label = (entry.aif_label if entry is not None else None) or "concentration"
    say("quality checks")
    qc = check_series(
        hdr,
        study=study,
        technique=tech,
        protocols=protocols,
        given=given,
        times_s=times,
        data=data,
        spacing_mm=spacing,
        aif=aif,
        fit=fit,
    )
    if study is None and entry is not None and entry.companions:
        what = " and ".join(c.name for c in entry.companions)
        notes.append(f"The study's other series were not given: {what} presence not determined.")
    a = SeriesAnalysis(
        qc, _title(hdr[0]) if hdr else "series", times, data, spacing, fit, aif, aif_label, notes
    )
    a.decay, a.images = decay, images
    return a


def _pictures(
    data: np.ndarray, extra: Mapping[str, np.ndarray]
) -> tuple[tuple[np.ndarray, np.ndarray] | None, dict[str, tuple[np.ndarray, str]]]:
    """What a person wants to see of a non-dynamic series: IVIM signal decay, ASL control − label."""
    decay = None
    images: dict[str, tuple[np.ndarray, str]] = {}
    names = list(extra)
    if len(names) == 1 and data.ndim == 5:
        values = np.asarray(extra[names[0]])
        if names[0] == "diffusion":
            b = values[:, 0].astype(float)
            mask = foreground(data.reshape(-1, *data.shape[2:]))
            per_row = data.mean(axis=1)[:, mask].mean(axis=1)
            ub = np.unique(b)
            decay = (ub, np.array([per_row[b == x].mean() for x in ub]))
        elif names[0] == "asl_context":
            ctx = [str(v).upper() for v in values]
            if "CONTROL" in ctx and "LABEL" in ctx:
                dm = data[ctx.index("CONTROL")].mean(axis=0) - data[ctx.index("LABEL")].mean(axis=0)
                images["control − label (ΔM)"] = (dm, "signal (a.u.)")
    return decay, images


def _aif_of(fit: Any) -> np.ndarray | None:
    """The fit's arterial curve (kept in its provenance as an array or a list), if it has one."""
    prov = getattr(fit, "provenance", {}) or {}
    for key in ("aif_curve", "aif"):
        v = prov.get(key)
        if isinstance(v, np.ndarray | list) and np.ndim(v) == 1 and len(v) > 1:
            return np.asarray(v, dtype=float)
    return None


def report_files(
    paths: Iterable[str | Path],
    out_dir: str | Path,
    *,
    series_uid: str | None = None,
    study_paths: Iterable[str | Path] = (),
    **kw: Any,
) -> tuple[Path, SeriesAnalysis]:
    """Analyse the series among ``paths`` (the others there and ``study_paths`` are its study); report it."""
    groups = read_headers(paths)
    headers, study = pick_series(groups, series_uid)
    given = read_headers(study_paths) if study_paths else {}
    study_all = study + [items[0] for items in given.values()]
    study_files = [str(d.filename) for items in (*groups.values(), *given.values()) if items is not headers
                   for d in items]
    a = analyse(headers, study=study_all if (study_all or len(groups) > 1) else None,
                study_files=study_files, **kw)
    gate = None
    if a.fit is not None and getattr(a.fit, "maps", None):
        from perfnode.qc.gate import judge

        tech = a.qc.technique or ""
        dynamic = tech in ("dsc", "ctp", "dce") and a.data is not None and np.ndim(a.data) == 4
        mask = foreground(a.data, "CT" if tech == "ctp" else "MR") if dynamic else None
        gate = judge(a.fit, tech, data=a.data if dynamic else None, mask=mask)  # masks impossible values
    if kw.get("progress"):
        kw["progress"]("writing the report")
    page = write_report(
        out_dir,
        decay=a.decay,
        images=a.images,
        qc=a.qc,
        title=a.title,
        times_s=a.times_s,
        data=a.data,
        aif=a.aif,
        aif_label=a.aif_label,
        fit=a.fit,
        spacing_mm=a.spacing_mm,
        notes=a.notes,
        gate=gate,
    )
    return page, a
