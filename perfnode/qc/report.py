"""An HTML report a person would rather look at than read: curves, map thumbnails, findings, provenance.

:func:`write_report` writes ``index.html`` with its PNG pictures (matplotlib, no pyplot state) and a
machine-readable ``qc.json`` into one folder. Everything is optional except the folder: the page
shows what it is given and says what it was not given.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from perfnode import __version__
from perfnode.dicom.findings import Finding
from perfnode.perfusion.mask import foreground
from perfnode.qc import quality
from perfnode.qc.compliance import QCResult
from perfnode.qc.facts import FACTS, label

MAX_MAPS = 8
COLOURS = {"error": "#c0392b", "warning": "#d68910", "info": "#2e86c1", "ok": "#1e8449"}

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f6f8;
color:#1c2833}
header{background:#1c2833;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:26px} header p{margin:4px 0 0;color:#d5dbdb}
main{padding:8px 32px 32px;max-width:1400px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);margin:18px 0;
padding:14px 20px}
h2{margin:4px 0 10px;font-size:20px}
.badges{margin-top:12px}
.badge{display:inline-block;border-radius:14px;padding:5px 14px;margin-right:8px;font-weight:600;color:#fff}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e5e8e8;vertical-align:top}
th{background:#f2f4f4}
td.sev{font-weight:700;text-transform:uppercase;color:#fff;width:70px;text-align:center}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:12px}
.grid img{width:100%}
figure{margin:0;background:#fafafa;border:1px solid #e5e8e8;border-radius:6px;padding:6px}
figcaption{font-size:13px;text-align:center;color:#566573}
img{max-width:100%}
.note{background:#fef9e7;border-left:4px solid #d68910;padding:8px 12px;margin:8px 0}
.ok{color:#1e8449;font-weight:600}
.ref{color:#566573;font-size:13px;margin-top:-4px}
code{font-size:13px}
"""


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, facecolor="white")


def _curve_figure(
    path: Path,
    times: np.ndarray,
    data: np.ndarray | None,
    aif: np.ndarray | None,
    aif_label: str,
    arrival_s: float | None,
    falls: bool,
    modality: str = "MR",
) -> None:
    panels = int(aif is not None) + int(data is not None)
    fig = Figure(figsize=(6.0 * panels, 4.4))
    k = 1
    if aif is not None:
        ax = fig.add_subplot(1, panels, k)
        ax.plot(times, aif, "o-", color="#c0392b", ms=3, lw=1.5)
        ax.set_title("Arterial input function")
        ax.set_xlabel("time (s)")
        ax.set_ylabel(aif_label)
        if arrival_s is not None:
            ax.axvline(arrival_s, color="#7f8c8d", ls="--", lw=1)
        ax.grid(alpha=0.3)
        k += 1
    if data is not None:
        ax = fig.add_subplot(1, panels, k)
        arr = np.asarray(data, dtype=np.float64)
        m = foreground(arr, modality)
        curves = arr[:, m]
        base = curves[: max(2, min(10, len(times) // 5))].mean(axis=0)
        change = (curves.min(axis=0) - base) if falls else (curves.max(axis=0) - base)
        order = np.argsort(np.abs(change))
        colours = ["#2874a6", "#28b463", "#b7950b", "#884ea0"]
        for c, q in zip(colours, (0.25, 0.5, 0.75, 0.95), strict=True):
            lo, hi = int(q * (len(order) - 1) * 0.97), int(min(len(order), q * len(order) * 1.03 + 1))
            ax.plot(
                times,
                curves[:, order[lo:hi]].mean(axis=1),
                lw=1.5,
                color=c,
                label=f"{int(q * 100)}th percentile change",
            )
        ax.plot(times, curves.mean(axis=1), lw=2.5, color="#1c2833", label=f"mean of {int(m.sum())} voxels")
        if arrival_s is not None:
            ax.axvline(arrival_s, color="#7f8c8d", ls="--", lw=1, label="bolus arrival")
        ax.set_title("Tissue curves")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("signal (HU)" if modality == "CT" else "signal (a.u.)")
        # below the axes, never over the curves
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def _motion_figure(path: Path, times: np.ndarray, shifts_mm: np.ndarray) -> None:
    fig = Figure(figsize=(6.0, 2.6))
    ax = fig.add_subplot(1, 1, 1)
    names = ["z", "y", "x"][-shifts_mm.shape[1] :]
    for i, n in enumerate(names):
        ax.plot(times, shifts_mm[:, i], lw=1.2, label=n)
    ax.plot(times, np.linalg.norm(shifts_mm, axis=1), lw=2, color="#1c2833", label="|d|")
    top = float(np.nanmax(np.abs(shifts_mm))) if shifts_mm.size else 0.0
    ax.set_ylim(-max(1.0, 1.1 * top), max(1.0, 1.1 * top))  # sub-millimetre jitter stays flat
    ax.set_title("Displacement from the reference time point")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mm")
    ax.legend(fontsize=8, ncol=4)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def _decay_figure(path: Path, b_values: np.ndarray, signal: np.ndarray) -> None:
    fig = Figure(figsize=(6.0, 3.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    s0 = signal[np.argmin(b_values)] if signal.size else 1.0
    ax.semilogy(b_values, signal / s0, "o-", color="#2874a6", lw=1.5)
    ax.axvspan(0, 200, color="#f5b041", alpha=0.15, label="pseudo-diffusion regime (0–200 s/mm²)")
    ax.set_xlabel("b (s/mm²)")
    ax.set_ylabel("S / S(b = 0)")
    ax.set_title("Mean signal against b-value (directions averaged)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)


def _map_figure(path: Path, name: str, values: np.ndarray, unit: str) -> None:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 2:
        v = v[None]
    v = v.reshape(-1, *v.shape[-2:])
    nz = v.shape[0]
    slices = sorted({int(round(x)) for x in np.linspace(0, nz - 1, min(nz, 4))})
    finite = v[np.isfinite(v)]
    lo, hi = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    fig = Figure(figsize=(1.7 * len(slices) + 1.2, 2.2), layout="constrained")
    axes = [fig.add_subplot(1, len(slices), i + 1) for i in range(len(slices))]
    im = None
    for ax, z in zip(axes, slices, strict=True):
        im = ax.imshow(np.ma.masked_invalid(v[z]), cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(f"slice {z + 1}", fontsize=9)
        ax.set_axis_off()
    cbar = fig.colorbar(im, ax=axes, shrink=0.9, pad=0.02)
    cbar.set_label(f"{name} ({unit})" if unit else f"{name} (no unit)", fontsize=10)
    cbar.ax.tick_params(labelsize=9)
    fig.suptitle(name, fontsize=11)
    _save(fig, path)


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _findings_table(findings: Sequence[Finding]) -> str:
    if not findings:
        return '<p class="ok">✔ Nothing to report: every applicable rule passed.</p>'
    rows = []
    for f in findings:
        c = COLOURS.get(str(f.severity), "#566573")
        rows.append(
            f'<tr><td class="sev" style="background:{c}">{_esc(f.severity)}</td>'
            f"<td><code>{_esc(f.attribute) or '—'}</code></td><td>{_esc(f.found)}</td>"
            f"<td>{_esc(f.expected)}</td><td>{_esc(f.rule)}</td></tr>"
        )
    return (
        "<table><tr><th>Severity</th><th>Attribute</th><th>Found</th><th>Expected</th><th>Rule</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _badge(name: str, findings: Sequence[Finding]) -> str:
    counts = {s: sum(1 for f in findings if str(f.severity) == s) for s in ("error", "warning", "info")}
    if counts["error"]:
        colour, text = COLOURS["error"], f"{counts['error']} error(s)"
    elif counts["warning"]:
        colour, text = COLOURS["warning"], f"{counts['warning']} warning(s)"
    elif counts["info"]:
        colour, text = COLOURS["info"], f"{counts['info']} note(s)"
    else:
        colour, text = COLOURS["ok"], "passed"
    return f'<span class="badge" style="background:{colour}">{_esc(name)}: {text}</span>'


def _kv_table(rows: Sequence[tuple[str, str, str]], head: tuple[str, str, str]) -> str:
    body = "".join(f"<tr><td>{_esc(a)}</td><td>{_esc(b)}</td><td>{_esc(c)}</td></tr>" for a, b, c in rows)
    return f"<table><tr><th>{head[0]}</th><th>{head[1]}</th><th>{head[2]}</th></tr>{body}</table>"


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        if v.size <= 8:
            return np.array2string(v, precision=4, separator=", ")
        return f"array {v.shape}, min {np.nanmin(v):.4g}, max {np.nanmax(v):.4g}"
    if isinstance(v, (list, tuple)) and len(v) > 8:
        return f"{len(v)} items: {_short(list(v[:4]))[:-1]}, …]"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={_short(x)}" for k, x in v.items())
    return str(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist() if v.size <= 64 else f"array {v.shape}"
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)


def write_report(
    out_dir: str | Path,
    *,
    qc: QCResult | None = None,
    title: str = "",
    times_s: np.ndarray | None = None,
    data: np.ndarray | None = None,
    aif: np.ndarray | None = None,
    aif_label: str = "concentration",
    fit: Any = None,
    provenance: Mapping[str, Any] | None = None,
    spacing_mm: Sequence[float] | None = None,
    notes: Sequence[str] = (),
    decay: tuple[np.ndarray, np.ndarray] | None = None,
    images: Mapping[str, tuple[np.ndarray, str]] | None = None,
    gate: Any = None,
) -> Path:
    """Write ``index.html`` (+ PNGs, ``qc.json``) into ``out_dir``; return the page's path.

    ``gate``: the quality gate's result (:class:`perfnode.qc.gate.GateResult`): its verdict is the
    page's first line ("Maps not reliable because …") and its numbers a table.

    ``data`` is ``(t, ...)``; ``fit`` a :class:`~perfnode.perfusion.base.FitResult` whose maps are
    shown with their units and whose provenance is listed (``provenance`` adds to it).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes = list(notes)
    technique = qc.technique if qc else None
    facts = qc.facts if qc else {}
    arrival = facts.get("bolus_arrival_time_s")
    arrival_s = float(arrival.value) if arrival is not None else None
    times = None if times_s is None else np.asarray(times_s, dtype=float)
    first: list[str] = []  # findings: what a person must see
    parts: list[str] = []  # pictures
    last: list[str] = []  # the details: measures, facts, provenance

    # --- curves ---------------------------------------------------------------------------
    dynamic = (
        data is not None and times is not None and times.size >= 3 and np.asarray(data).shape[0] == times.size
    )
    if decay is not None:
        _decay_figure(out / "decay.png", *decay)
        parts.append(
            '<section><h2>Signal decay</h2><img src="decay.png" alt="signal against b-value"></section>'
        )
    if (aif is not None and times is not None) or dynamic:
        _curve_figure(
            out / "curves.png",
            times,
            np.asarray(data) if dynamic else None,
            aif,
            aif_label,
            arrival_s,
            falls=(technique == "dsc"),
            modality="CT" if technique == "ctp" else "MR",
        )
        parts.append('<section><h2>Curves</h2><img src="curves.png" alt="AIF and tissue curves"></section>')
    elif decay is None:
        notes.append("No time series was given: no curves shown.")
    # --- maps -----------------------------------------------------------------------------
    maps = dict(getattr(fit, "maps", {}) or {})
    units = dict(getattr(fit, "units", {}) or {})
    for name, (image, unit) in (images or {}).items():
        maps[name], units[name] = image, unit
    if maps:
        figs = []
        ordered = sorted(maps.items(), key=lambda kv: _map_rank(kv[0]))
        for i, (name, values) in enumerate(ordered[:MAX_MAPS]):
            fname = f"map_{i:02d}.png"
            unit = units.get(name, "")
            _map_figure(out / fname, name, values, unit)
            figs.append(
                f'<figure><img src="{fname}" alt="{_esc(name)} map">'
                f"<figcaption>{_esc(name)} ({_esc(unit or 'no unit')})</figcaption></figure>"
            )
        more = f"<p>{len(maps) - MAX_MAPS} more maps not shown.</p>" if len(maps) > MAX_MAPS else ""
        parts.append(f'<section><h2>Maps</h2><div class="grid">{"".join(figs)}</div>{more}</section>')
        if not getattr(fit, "maps", None):
            notes.append("No fitted maps were given: the images shown are made from the data.")
    else:
        notes.append("No fitted maps were given: no map thumbnails shown.")

    if dynamic and np.asarray(data).ndim >= 3 and max(np.asarray(data).shape[1:]) >= 8:
        shifts = quality.displacements(np.asarray(data))
        sp = (
            np.ones(shifts.shape[1])
            if spacing_mm is None
            else np.asarray(spacing_mm, float)[-shifts.shape[1] :]
        )
        _motion_figure(out / "motion.png", times, shifts * sp)
        parts.append('<section><h2>Motion</h2><img src="motion.png" alt="displacement over time"></section>')

    # --- findings ----------------------------------------------------------------------------
    badges = ""
    if qc is not None:
        badges = _badge("Protocol", qc.protocol) + _badge("Data quality", qc.quality)
        ref = f'<p class="ref">{_esc(qc.reference)}</p>' if qc.reference else ""
        first.append(
            f"<section><h2>Protocol compliance — {_esc(qc.title or technique or 'unknown technique')}"
            f"</h2>{ref}{_findings_table(qc.protocol)}</section>"
        )
        measures = [
            (label(k), v.text(), FACTS.get(k, ("", ""))[1]) for k, v in facts.items() if k in _QUALITY_FACTS
        ]
        first.append("<section><h2>Data quality</h2>" + _findings_table(qc.quality) + "</section>")
        if measures:
            last.append(
                "<section><h2>Data-quality measures</h2>"
                + _kv_table(measures, ("Measure", "Value", "Meaning"))
                + "</section>"
            )
        acq = [(label(k), v.text(), v.attribute or "") for k, v in facts.items() if k not in _QUALITY_FACTS]
        last.append(
            "<section><h2>Acquisition facts</h2>"
            + _kv_table(acq, ("Fact", "Value (source)", "DICOM attribute"))
            + "</section>"
        )
    else:
        notes.append("No compliance or quality check was run.")

    prov: dict[str, Any] = dict(getattr(fit, "provenance", {}) or {})
    prov.update(provenance or {})
    if prov:
        rows = [(str(k), _short(v), "") for k, v in prov.items()]
        last.append("<section><h2>Provenance</h2>" + _kv_table(rows, ("Item", "Value", "")) + "</section>")

    verdict_html = ""
    if gate is not None:
        ok = bool(gate.passed)
        colour = COLOURS["ok"] if ok else COLOURS["error"]
        text = "Maps reliable: every quality-gate check passed" if ok else "Maps " + gate.summary()
        verdict_html = (f'<section style="border-left:8px solid {colour}"><h2 style="color:{colour}">'
                        f"{_esc(text)}</h2></section>")
        rows = [(k, f"{v:.4g}" if isinstance(v, float) else str(v), "") for k, v in gate.measures.items()]
        rows += [(f"map {m.name}", "reliable" if m.reliable else "NOT reliable",
                  f"{m.out_of_range} voxel(s) out of range, masked; " + "; ".join(m.reasons))
                 for m in gate.maps.values()]
        last.insert(0, "<section><h2>Quality gate</h2>" + _kv_table(rows, ("Measure", "Value", "Note"))
                    + "</section>")
    note_html = verdict_html + "".join(f'<div class="note">{_esc(n)}</div>' for n in notes)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    heading = _esc(title or "Perfusion series")
    sub = f"{_esc((technique or 'unknown technique').upper())} · generated {now} by perfnode {__version__}"
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{heading} — perfnode report'
        f"</title><style>{CSS}</style></head><body><header><h1>{heading}</h1><p>{sub}</p>"
        f'<div class="badges">{badges}</div></header>'
        f"<main>{note_html}{''.join(first + parts + last)}</main></body></html>"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    summary = {
        "title": title,
        "technique": technique,
        "generated": now,
        "notes": notes,
        "protocol": [f.to_dict() for f in (qc.protocol if qc else [])],
        "quality": [f.to_dict() for f in (qc.quality if qc else [])],
        "facts": {
            k: {"value": _jsonable(v.value), "unit": v.unit, "source": v.source, "attribute": v.attribute}
            for k, v in facts.items()
        },
        "provenance": _jsonable(prov),
        "quality_gate": gate.to_dict() if gate is not None else None,
    }
    (out / "qc.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    return index


#: Maps people look at first; the rest follow in the model's order.
_MAP_ORDER = ("cbf", "cbv", "mtt", "tmax", "ktrans", "ve", "vp", "fp", "ps", "kep", "f", "d", "dstar", "att")


def _map_rank(name: str) -> tuple[int, str]:
    base = name.lower().split("_")[0]
    return (_MAP_ORDER.index(base) if base in _MAP_ORDER else len(_MAP_ORDER), "")


_QUALITY_FACTS = {
    "bolus_cnr",
    "baseline_tsnr",
    "time_step_irregularity",
    "missing_frames",
    "aif_peak_snr",
    "aif_fwhm_s",
    "aif_fwhm_frames",
    "aif_tail_fraction",
    "aif_peak_at_end",
    "aif_flat_top_samples",
    "aif_signal_min_fraction",
    "motion_max_mm",
    "fit_failure_fraction",
}
