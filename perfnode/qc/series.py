"""One series on disk → QC facts, findings, a fit where a model applies, and the HTML report.

Used by ``perfnode report`` (and meant for the pipeline, which keeps one report per job).
Assembly uses :mod:`perfnode.dicom.frames`; fitting uses the perfusion models where one can run
from the series alone (DSC today); whatever is missing is said in the report's notes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from perfnode.qc import quality
from perfnode.qc.compliance import QCResult, check_series, detect_technique
from perfnode.qc.facts import header_facts
from perfnode.qc.report import write_report

log = logging.getLogger(__name__)


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
    run_fit: bool = True,
) -> SeriesAnalysis:
    """Assemble, fit (when a model applies and ``fit`` is not given) and check one series."""
    notes: list[str] = []
    hdr = list(headers)
    tech = (technique or detect_technique(header_facts(hdr), hdr) or "").lower() or None
    times = data = spacing = decay = trace = None
    images: dict[str, tuple[np.ndarray, str]] = {}
    try:
        from perfnode.dicom.frames import AssemblyError, assemble
    except ImportError:  # pragma: no cover - frames.py is part of perfnode
        assemble, AssemblyError = None, Exception
        notes.append("4-D assembly is not available in this build: the report is made from the headers.")
    if assemble is not None:
        try:
            vol = assemble([getattr(d, "filename", None) or d for d in hdr])
            data = np.asarray(vol.data, dtype=np.float32)
            extra = list(vol.extra_dims)
            decay, images = _pictures(data, vol.extra_dims)
            trace = _trace(data, vol.extra_dims) if tech == "ivim" else None
            if data.ndim > 4:
                if tech in {"dsc", "dce", "ctp"}:
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
    aif = None
    aif_label = "concentration"
    if fit is None and run_fit and data is not None and times is not None:
        fit, aif, aif_label, note = _fit(tech, hdr, times, data, trace)
        if note:
            notes.append(note)
    elif fit is not None:
        aif = _aif_of(fit)
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
    if study is None and tech in {"dce", "asl"}:
        what = "T1-map and B1-map" if tech == "dce" else "M0"
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
            mask = quality.foreground(data.reshape(-1, *data.shape[2:]))
            per_row = data.mean(axis=1)[:, mask].mean(axis=1)
            ub = np.unique(b)
            decay = (ub, np.array([per_row[b == x].mean() for x in ub]))
        elif names[0] == "asl_context":
            ctx = [str(v).upper() for v in values]
            if "CONTROL" in ctx and "LABEL" in ctx:
                dm = data[ctx.index("CONTROL")].mean(axis=0) - data[ctx.index("LABEL")].mean(axis=0)
                images["control − label (ΔM)"] = (dm, "signal (a.u.)")
    return decay, images


def _trace(data: np.ndarray, extra: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """IVIM: unique b-values, direction-averaged images (b, z, y, x) of a (diffusion, t, z, y, x) volume."""
    if list(extra) != ["diffusion"] or data.ndim != 5:
        return None
    b = np.asarray(extra["diffusion"])[:, 0].astype(float)
    ub = np.unique(b)
    return ub, np.stack([data[b == x].mean(axis=(0, 1)) for x in ub])


def _aif_of(fit: Any) -> np.ndarray | None:
    prov = getattr(fit, "provenance", {}) or {}
    for key in ("aif_curve", "aif"):
        v = prov.get(key)
        if isinstance(v, np.ndarray) and v.ndim == 1:
            return v
    return None


def _fit(
    tech: str | None,
    hdr: Sequence[Dataset],
    times: np.ndarray,
    data: np.ndarray,
    trace: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Any, np.ndarray | None, str, str]:
    """Run the model that needs nothing but this series; (fit, aif, aif label, note)."""
    if tech == "ivim" and trace is not None:
        try:
            from perfnode.perfusion.ivim import IVIMModel

            b, images = trace
            fit = IVIMModel(b).fit(images, mask=quality.foreground(images), axis=0)
        except (ImportError, ValueError) as exc:
            return None, None, "", f"The IVIM model could not be fitted: {exc}"
        return fit, None, "", ""
    if tech != "dsc":
        return (
            None,
            None,
            "concentration",
            (
                f"No perfusion model is run by the report for {tech or 'an unknown technique'} "
                "(it needs more than this series); the maps come with the pipeline's job."
            ),
        )
    te = header_facts(hdr).get("echo_time_ms")
    if te is None:
        return None, None, "", "(0018,0081) EchoTime missing: the DSC model was not run."
    try:
        from perfnode.perfusion.dsc import DscModel

        mask = quality.foreground(data)
        fit = DscModel(times, float(te.value) / 1000.0).fit(data, mask=mask, time_axis=0)
    except (ImportError, ValueError) as exc:
        return None, None, "", f"The DSC model could not be fitted: {exc}"
    return fit, _aif_of(fit), "ΔR2* (1/s)", ""


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
    extra = [items[0] for items in read_headers(study_paths).values()] if study_paths else []
    study_all = study + extra
    a = analyse(headers, study=study_all if (study_all or len(groups) > 1) else None, **kw)
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
    )
    return page, a
