"""The acquisition facts a rule can test, read from DICOM headers or measured from the data.

A :class:`Fact` carries its value, unit, where it came from (so a finding can say "found 45 ms
(header)" or "found 0.8 s (measured from 60 frame times)") and the DICOM attribute it was read from.
Headers are read from classic single-frame instances and from enhanced multi-frame objects (the
value may sit at the top level or in the shared / per-frame functional groups).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

#: Every fact a rule may name: unit and meaning. Site-defined facts start with ``x_``.
FACTS: dict[str, tuple[str, str]] = {
    "modality": ("", "Modality (0008,0060)"),
    "field_strength_t": ("T", "MagneticFieldStrength (0018,0087)"),
    "echo_time_ms": ("ms", "EchoTime; the longest echo (tissue echo) of a multi-echo acquisition"),
    "n_echoes": ("", "number of distinct echo times"),
    "repetition_time_ms": ("ms", "RepetitionTime (0018,0080)"),
    "flip_angle_deg": ("°", "FlipAngle (0018,1314)"),
    "scanning_sequence": ("", "ScanningSequence codes (GR, SE, IR, EP)"),
    "epi": ("", "echo-planar readout (ScanningSequence EP or EchoPlanarPulseSequence YES)"),
    "spoiled": ("", "spoiled gradient echo (SequenceVariant SP or Spoiling)"),
    "mr_acquisition_type": ("", "MRAcquisitionType 2D or 3D"),
    "contrast_agent": ("", "ContrastBolusAgent (0018,0010)"),
    "contrast_dose_mmol_per_kg": ("mmol/kg", "contrast agent dose per body weight"),
    "age_years": ("years", "PatientAge (0010,1010)"),
    "b_values": ("s/mm²", "distinct DiffusionBValue values"),
    "n_diffusion_directions": ("", "distinct non-zero DiffusionGradientOrientation directions"),
    "asl_labelling_type": ("", "PCASL, CASL or PASL (ArterialSpinLabelingContrast)"),
    "labelling_duration_ms": ("ms", "ASL labelling duration (ASLPulseTrainDuration)"),
    "post_labelling_delay_ms": ("ms", "ASL post-labelling delay"),
    "m0_present": ("", "an M0 image in the series or the study"),
    "background_suppression": ("", "ASL background suppression used"),
    "hemodynamic_impairment": ("", "hemodynamic impairment expected (clinical; given, not read)"),
    "dce_purpose": ("", "perfusion (first pass) or permeability"),
    "t1_mapping_present": ("", "a pre-contrast T1 map or variable-flip-angle set in the study"),
    "b1_map_present": ("", "a B1 map in the study"),
    "t1_blood_ms": ("ms", "T1 of arterial blood used by the quantification (fit provenance)"),
    "n_dynamics": ("", "number of time points"),
    "temporal_resolution_s": ("s", "time between dynamics"),
    "duration_s": ("s", "duration of the dynamic acquisition"),
    "bolus_arrival_time_s": ("s", "bolus arrival in the mean curve"),
    "baseline_dynamics": ("", "number of dynamics before the bolus arrives"),
    # data quality (perfnode/qc/quality.py)
    "bolus_cnr": ("", "bolus peak in the mean curve over the baseline noise"),
    "baseline_tsnr": ("", "median temporal SNR of the baseline dynamics"),
    "time_step_irregularity": ("", "largest deviation of a time step from the median step, relative"),
    "missing_frames": ("", "time points missing from a regular sampling"),
    "aif_peak_snr": ("", "AIF peak height over the AIF's baseline noise"),
    "aif_fwhm_s": ("s", "AIF full width at half maximum"),
    "aif_fwhm_frames": ("", "samples across the AIF's full width at half maximum"),
    "aif_tail_fraction": ("", "AIF level at the last time point relative to its peak"),
    "aif_peak_at_end": ("", "AIF peak in the last two time points (bolus cut off)"),
    "aif_flat_top_samples": ("", "AIF samples within 0.5 % of its peak (clipping)"),
    "aif_signal_min_fraction": ("", "lowest AIF signal relative to its baseline (DSC saturation)"),
    "motion_max_mm": ("mm", "largest displacement of a time point from the reference"),
    "fit_failure_fraction": ("", "fraction of fitted voxels whose fit failed"),
}


def label(name: str) -> str:
    """``temporal_resolution_s`` → ``temporal resolution`` (the unit is shown with the value)."""
    return re.sub(r"_(s|ms|mm|t|deg|years|mmol_per_kg)$", "", name).replace("_", " ")


@dataclass(frozen=True)
class Fact:
    """A value with its unit, where it came from, and the DICOM keyword it was read from."""

    value: Any
    unit: str = ""
    source: str = ""
    attribute: str | None = None

    def text(self) -> str:
        v = self.value
        if isinstance(v, bool):
            s = "yes" if v else "no"
        elif isinstance(v, float):
            s = f"{v:.4g}"
        elif isinstance(v, (tuple, list)):
            s = "[" + ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) + "]"
        else:
            s = str(v)
        unit = f" {self.unit}" if self.unit and not isinstance(v, bool) else ""
        src = f" ({self.source})" if self.source else ""
        return f"{s}{unit}{src}"


Facts = dict[str, Fact]

#: Gadolinium agents by name fragment → concentration in mmol/mL (product labels).
GADOLINIUM_MMOL_PER_ML: dict[str, float] = {
    "gadobutrol": 1.0,
    "gadovist": 1.0,
    "gadavist": 1.0,
    "gadoterate": 0.5,
    "dotarem": 0.5,
    "clariscan": 0.5,
    "gadoteridol": 0.5,
    "prohance": 0.5,
    "gadobenate": 0.5,
    "multihance": 0.5,
    "gadopentetate": 0.5,
    "magnevist": 0.5,
    "gadodiamide": 0.5,
    "omniscan": 0.5,
    "gadopiclenol": 0.5,
    "elucirem": 0.5,
    "vueway": 0.5,
    "gadoxetate": 0.25,
    "primovist": 0.25,
    "eovist": 0.25,
}


def _walk(ds: Dataset, depth: int = 0) -> Iterator[Dataset]:
    """The dataset and the items of its sequences (functional groups and their macros)."""
    yield ds
    if depth >= 3:
        return
    for elem in ds:
        if elem.VR == "SQ" and elem.keyword != "ReferencedImageSequence":
            for item in elem.value:
                yield from _walk(item, depth + 1)


def values(datasets: Iterable[Dataset], keyword: str) -> list[Any]:
    """Every value of ``keyword`` anywhere in the datasets (top level and functional groups)."""
    out: list[Any] = []
    for ds in datasets:
        for item in _walk(ds):
            if keyword in item:
                v = item[keyword].value
                if v is not None and v != "":
                    out.append(v)
    return out


def _first(datasets: Sequence[Dataset], keyword: str) -> Any:
    v = values(datasets[:1], keyword) or values(datasets, keyword)
    return v[0] if v else None


def _floats(vals: Iterable[Any]) -> list[float]:
    out = []
    for v in vals:
        for x in [v] if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__") else v:
            with contextlib.suppress(TypeError, ValueError):
                out.append(float(x))
    return out


def parse_age(age: str) -> float | None:
    """PatientAge ``nnnD|W|M|Y`` → years."""
    m = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY])\s*", str(age or "").upper())
    if not m:
        return None
    n, u = int(m.group(1)), m.group(2)
    return {"D": n / 365.25, "W": 7 * n / 365.25, "M": n / 12, "Y": float(n)}[u]


class _Index:
    """Every attribute value of a series by keyword, walked once (top level and functional groups)."""

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        self._all: dict[str, list[Any]] = {}
        self._head: dict[str, list[Any]] = {}
        for i, ds in enumerate(datasets):
            for item in _walk(ds):
                for elem in item:
                    if elem.VR == "SQ" or elem.tag.group in (0x7FE0, 0x0002) or not elem.keyword:
                        continue
                    v = elem.value
                    if v is None or v == "":
                        continue
                    self._all.setdefault(elem.keyword, []).append(v)
                    if i == 0:
                        self._head.setdefault(elem.keyword, []).append(v)

    def all(self, keyword: str) -> list[Any]:
        return self._all.get(keyword, [])

    def head(self, keyword: str) -> list[Any]:
        """Values in the first instance only."""
        return self._head.get(keyword, [])

    def first(self, keyword: str) -> Any:
        v = self.head(keyword) or self.all(keyword)
        return v[0] if v else None


def header_facts(datasets: Sequence[Dataset]) -> Facts:
    """The facts in the headers of one series (classic single-frame or enhanced multi-frame)."""
    ds = list(datasets)
    if not ds:
        return {}
    ix = _Index(ds)
    f: Facts = {}
    hdr = "header"

    def put(name: str, value: Any, attribute: str | None, source: str = hdr) -> None:
        if value is not None:
            f[name] = Fact(value, FACTS[name][0], source, attribute)

    put("modality", ix.first("Modality"), "Modality")
    b0 = _floats(ix.head("MagneticFieldStrength"))
    put("field_strength_t", b0[0] if b0 else None, "MagneticFieldStrength")

    tes = sorted(set(_floats(ix.all("EchoTime")) or _floats(ix.all("EffectiveEchoTime"))))
    if tes:
        kw = "EchoTime" if ix.head("EchoTime") else "EffectiveEchoTime"
        put("echo_time_ms", tes[-1], kw, hdr if len(tes) == 1 else f"longest of {len(tes)} echoes")
        put("n_echoes", len(tes), kw)
    tr = _floats(ix.head("RepetitionTime"))
    put("repetition_time_ms", tr[0] if tr else None, "RepetitionTime")
    fa = sorted(set(_floats(ix.all("FlipAngle"))))
    if fa:
        put("flip_angle_deg", fa[-1], "FlipAngle", hdr if len(fa) == 1 else f"largest of {fa}")

    seq = [str(s).upper() for s in _as_list(ix.first("ScanningSequence"))]
    seq_kw, seq_src = "ScanningSequence", hdr
    echo_pulse = str(ix.first("EchoPulseSequence") or "").upper()
    echo = {"GRADIENT": ["GR"], "SPIN": ["SE"], "BOTH": ["SE", "GR"]}.get(echo_pulse, [])
    if echo and not {"GR", "SE"} & set(seq):
        seq += echo
        seq_kw = "ScanningSequence" if ix.first("ScanningSequence") else "EchoPulseSequence"
    epi_flag = str(ix.first("EchoPlanarPulseSequence") or "").upper()
    if epi_flag == "YES" and "EP" not in seq:
        seq.append("EP")
    if seq and not {"GR", "SE"} & set(seq):
        # "EP" alone (e.g. Siemens ep2d_perf and ep2d_diff) does not say gradient or spin echo: the
        # sequence name may (Siemens *epfid*, *epse*; Philips FEEPI/SEEPI; PulseSequenceName GE_EPI).
        names = " ".join(str(ix.first(k) or "") for k in ("SequenceName", "PulseSequenceName")).upper()
        if re.search(r"FID|FEEPI|\bFE|GRE|\bGE[_ ]|GRADIENT", names):
            seq.append("GR")
            seq_src = f"header ScanningSequence EP, gradient echo from the sequence name {names.strip()!r}"
        elif re.search(r"EPSE|SEEPI|\bSE[_ ]|SPIN", names):
            seq.append("SE")
            seq_src = f"header ScanningSequence EP, spin echo from the sequence name {names.strip()!r}"
        else:
            seq = []  # echo type unknown: say so rather than guess
            put("epi", True, "ScanningSequence")
            f["scanning_sequence"] = Fact(
                None, "", "ScanningSequence EP alone: gradient or spin echo not stated", "ScanningSequence"
            )
    if seq:
        put("scanning_sequence", tuple(seq), seq_kw, seq_src)
        put(
            "epi",
            "EP" in seq,
            "ScanningSequence" if ix.first("ScanningSequence") else "EchoPlanarPulseSequence",
        )
    variant = [str(s).upper() for s in _as_list(ix.first("SequenceVariant"))]
    spoiling = str(ix.first("Spoiling") or "").upper()
    if spoiling:
        put("spoiled", spoiling in {"RF", "GRADIENT", "RF_AND_GRADIENT"}, "Spoiling")
    elif variant:
        put("spoiled", "SP" in variant, "SequenceVariant")
    put("mr_acquisition_type", _upper(ix.first("MRAcquisitionType")), "MRAcquisitionType")

    _contrast_facts(ix, put)
    age = parse_age(ix.first("PatientAge"))
    put("age_years", age, "PatientAge")

    frame_diffusion = _frame_diffusion(ds)  # the assembly's reading: b0 without a b-value, vendor private
    bvals = sorted(set(round(b, 3) for b in _floats(ix.all("DiffusionBValue"))))
    if frame_diffusion:
        bvals = sorted({round(d[0], 3) for d in frame_diffusion})
    if bvals:
        put("b_values", tuple(bvals), "DiffusionBValue")
        dirs = _directions(ix, frame_diffusion)
        if dirs is not None:
            put("n_diffusion_directions", dirs[0], dirs[1], dirs[2])
    _asl_facts(ix, put)
    return f


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    try:
        return list(v)
    except TypeError:
        return [v]


def _upper(v: Any) -> str | None:
    return str(v).strip().upper() if v not in (None, "") else None


def _frame_diffusion(datasets: Sequence[Dataset]) -> list[tuple[float, ...]]:
    """(b, gx, gy, gz) of every frame as the assembly reads them (frames without a b-value in a diffusion
    series are b = 0; GE's private b-value and gradient); [] when the frames cannot be read."""
    from perfnode.dicom.assembly import frame_diffusion

    try:
        return frame_diffusion(list(datasets))
    except (ValueError, AttributeError, KeyError, TypeError):
        return []


def _directions(ix: _Index, frame_diffusion: list[tuple[float, ...]] = ()) -> tuple[int, str, str] | None:
    """Distinct non-zero gradient directions (a direction and its opposite count once)."""
    vecs = [np.asarray(v, float) for v in ix.all("DiffusionGradientOrientation") if len(_as_list(v)) == 3]
    source = "header"
    if not vecs and frame_diffusion:
        vecs = [np.asarray(d[1:4], float) for d in frame_diffusion if d[0] > 0]
        source = "header: the vendor's private gradient attributes (no DiffusionGradientOrientation)"
    vecs = [v / np.linalg.norm(v) for v in vecs if np.linalg.norm(v) > 1e-6]
    if vecs:
        uniq: list[np.ndarray] = []
        for v in vecs:
            if not any(abs(float(v @ u)) > 0.999 for u in uniq):
                uniq.append(v)
        return len(uniq), "DiffusionGradientOrientation", source
    directionality = {str(d).upper() for d in ix.all("DiffusionDirectionality")}
    if "ISOTROPIC" in directionality:
        return 3, "DiffusionDirectionality", "ISOTROPIC trace image: three orthogonal directions combined"
    return None


def _contrast_facts(ix: _Index, put: Any) -> None:
    agent = ix.first("ContrastBolusAgent")
    put("contrast_agent", str(agent) if agent else None, "ContrastBolusAgent")
    total = _floats([ix.first("ContrastBolusTotalDose")]) or _floats([ix.first("ContrastBolusVolume")])
    weight = _floats([ix.first("PatientWeight")])
    if not (agent and total and weight and weight[0] > 0):
        return
    name = str(agent).lower()
    conc = next((c for k, c in GADOLINIUM_MMOL_PER_ML.items() if k in name), None)
    if conc is None:
        return
    kw = "ContrastBolusTotalDose" if ix.first("ContrastBolusTotalDose") else "ContrastBolusVolume"
    put(
        "contrast_dose_mmol_per_kg",
        total[0] * conc / weight[0],
        kw,
        f"{kw} {total[0]:g} mL × {conc:g} mmol/mL ({agent}) / PatientWeight {weight[0]:g} kg",
    )


def _asl_facts(ix: _Index, put: Any) -> None:
    kind = _upper(ix.first("ArterialSpinLabelingContrast"))
    desc = " ".join(str(x) for x in ix.head("ASLTechniqueDescription")).upper()
    if kind:
        put(
            "asl_labelling_type",
            {"PSEUDOCONTINUOUS": "PCASL", "CONTINUOUS": "CASL", "PULSED": "PASL"}.get(kind, kind),
            "ArterialSpinLabelingContrast",
        )
    elif m := re.search(r"\b(P?CASL|PASL|FAIR|PICORE|EPISTAR)\b", desc):
        word = m.group(1)
        put(
            "asl_labelling_type",
            word if word in {"PCASL", "CASL"} else "PASL",
            "ASLTechniqueDescription",
            f"header ASLTechniqueDescription {desc.strip()!r}",
        )
    dur = _floats([ix.first("ASLPulseTrainDuration")])
    if dur and dur[0] > 0:
        # PS3.3 gives no unit in the attribute name; plausible labelling durations are 0.1–5 s, so
        # values ≥ 100 000 are taken as µs and smaller ones as ms.
        ms = dur[0] / 1000 if dur[0] >= 100_000 else dur[0]
        put("labelling_duration_ms", ms, "ASLPulseTrainDuration")
    contexts = {str(c).upper() for c in ix.all("ASLContext")}
    if kind or desc or contexts:
        for kw in ("InversionTime", "InversionTimes"):
            ti = _floats(ix.all(kw))
            if ti:
                put(
                    "post_labelling_delay_ms",
                    min(ti),
                    kw,
                    f"header {kw}, read as the post-labelling delay as BIDS does",
                )
                break
        if "M_ZERO_SCAN" in contexts:
            put("m0_present", True, "ASLContext", "M_ZERO_SCAN frames in the series")
        if re.search(r"BACKGROUND[ _-]?SUPPRESS|\bBGS\b", desc):
            put("background_suppression", True, "ASLTechniqueDescription")


_T1_RE = re.compile(r"T1[ _-]?MAP|\bVFA\b|VARIABLE[ _-]?FLIP|\bMOLLI\b|MP2RAGE|\bDESPOT1?\b", re.I)
_B1_RE = re.compile(r"B1[ _-]?MAP|TFL[ _-]?B1|\bAFI\b|\bDREAM\b|FLIP[ _-]?ANGLE[ _-]?MAP|\bB1\b", re.I)
_M0_RE = re.compile(r"\bM0\b|M0[ _-]?SCAN|PROTON[ _-]?DENSITY[ _-]?(REF|CAL)", re.I)


def _describe(ds: Dataset) -> str:
    parts = [str(ds.get(k, "")) for k in ("SeriesDescription", "ProtocolName")]
    parts += [str(x) for x in _as_list(ds.get("ImageType"))]
    return " ".join(parts)


def study_facts(study: Sequence[Dataset], series_uid: str | None = None) -> Facts:
    """Facts about the other series of the study: T1 mapping, B1 map, M0.

    ``study`` holds headers of the study's series (one or more datasets per series; the
    series being checked, ``series_uid``, is left out).
    """
    by_series: dict[str, list[Dataset]] = {}
    for ds in study:
        uid = str(ds.get("SeriesInstanceUID", id(ds)))
        if uid != series_uid:
            by_series.setdefault(uid, []).append(ds)
    f: Facts = {}
    vfa: dict[tuple, set[float]] = {}
    for items in by_series.values():
        first = items[0]
        label = f"series {first.get('SeriesNumber', '?')} {str(first.get('SeriesDescription', '')).strip()!r}"
        text = " ".join(_describe(d) for d in items[:1])
        if "t1_mapping_present" not in f and _T1_RE.search(text):
            f["t1_mapping_present"] = Fact(True, "", f"study: {label}", "SeriesDescription")
        if "b1_map_present" not in f and _B1_RE.search(text):
            f["b1_map_present"] = Fact(True, "", f"study: {label}", "SeriesDescription")
        contexts = {str(c).upper() for c in values(items, "ASLContext")}
        if "m0_present" not in f and ("M_ZERO_SCAN" in contexts or _M0_RE.search(text)):
            f["m0_present"] = Fact(
                True, "", f"study: {label}", "ASLContext" if contexts else "SeriesDescription"
            )
        seq = {str(s).upper() for s in _as_list(_first(items, "ScanningSequence"))}
        if "GR" in seq or str(_first(items, "EchoPulseSequence") or "").upper() == "GRADIENT":
            tr = _floats([_first(items, "RepetitionTime")])
            key = (str(_first(items, "FrameOfReferenceUID")), round(tr[0], 2) if tr else None)
            vfa.setdefault(key, set()).update(round(a, 1) for a in _floats(values(items, "FlipAngle")))
    if "t1_mapping_present" not in f:
        for angles in vfa.values():
            if len(angles) >= 2:
                f["t1_mapping_present"] = Fact(
                    True,
                    "",
                    f"study: gradient-echo series with flip angles {sorted(angles)} (VFA)",
                    "FlipAngle",
                )
                break
    for name in ("t1_mapping_present", "b1_map_present", "m0_present"):
        f.setdefault(name, Fact(False, "", f"not found among {len(by_series)} other series of the study"))
    return f


def parse_value(text: str) -> Any:
    """A ``--fact`` value: yes/no/true/false, a number, a comma-separated list of numbers, or text."""
    t = text.strip()
    low = t.lower()
    if low in {"yes", "true", "on"}:
        return True
    if low in {"no", "false", "off"}:
        return False
    try:
        return float(t)
    except ValueError:
        pass
    if "," in t:
        try:
            return tuple(float(x) for x in t.split(","))
        except ValueError:
            pass
    return t


def given_facts(items: Mapping[str, Any] | Sequence[str] | None, source: str = "given") -> Facts:
    """Facts given by the caller (``{"name": value}`` or ``["name=value", ...]``)."""
    if not items:
        return {}
    if not isinstance(items, Mapping):
        pairs = {}
        for s in items:
            if "=" not in s:
                raise ValueError(f"fact {s!r}: expected name=value")
            k, v = s.split("=", 1)
            pairs[k.strip()] = parse_value(v)
        items = pairs
    out: Facts = {}
    for name, value in items.items():
        if name not in FACTS and not name.startswith("x_"):
            raise ValueError(
                f"unknown fact {name!r} (known: {', '.join(sorted(FACTS))}; site facts start x_)"
            )
        out[name] = value if isinstance(value, Fact) else Fact(value, FACTS.get(name, ("",))[0], source)
    return out


def default_facts(defaults: Mapping[str, Any]) -> Facts:
    """The protocol's assumed facts, marked as such."""
    return {k: Fact(v, FACTS.get(k, ("",))[0], "protocol default") for k, v in defaults.items()}


def provenance_facts(provenance: Mapping[str, Any] | None) -> Facts:
    """Constants a fit used, as facts (so rules can check them against the field strength)."""
    f: Facts = {}
    prov = provenance or {}
    t1b = prov.get("t1_blood_s")
    if isinstance(t1b, (int, float)) and not isinstance(t1b, bool):
        f["t1_blood_ms"] = Fact(float(t1b) * 1000.0, "ms", "fit provenance t1_blood_s")
    return f


def timing_facts(times_s: np.ndarray | Sequence[float], source: str = "frame times") -> Facts:
    """Temporal resolution, duration and number of dynamics measured from the frame times (s)."""
    t = np.sort(np.asarray(times_s, dtype=float))
    f: Facts = {"n_dynamics": Fact(int(t.size), "", f"measured from {t.size} {source}")}
    if t.size >= 2:
        dt = float(np.median(np.diff(t)))
        f["temporal_resolution_s"] = Fact(dt, "s", f"median step of {t.size} {source}")
        f["duration_s"] = Fact(float(t[-1] - t[0] + dt), "s", f"measured from {t.size} {source}")
    return f


def frame_times(datasets: Sequence[Dataset]) -> np.ndarray | None:
    """Start time (s, from the first) of each time point of a classic or enhanced series, if known.

    The assembly's own timing (:func:`perfnode.dicom.assembly.series_times`: the first time source that
    varies, Temporal Position Index, per-slice times), read from the headers alone for ``perfnode check``.
    Returns None when the headers give no times.
    """
    from perfnode.dicom.assembly import series_times

    return series_times(list(datasets))
