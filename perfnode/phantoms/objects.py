"""From a simulation to DICOM objects: image sets per technique, the four shapes, the ground truth files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from perfnode.phantoms import asl, ctp, dce, dsc, dwi, ivim
from perfnode.phantoms.enhanced import UID_PREFIX, ImageSet, Study, classic, enhanced, quantize

TECHNIQUES = ("dsc", "dce", "ctp", "asl", "ivim", "dwi")
SHAPES = ("single", "concat", "per-time", "classic")


@dataclass
class Size:
    """Matrix and time sampling; small by default so that tests stay fast."""

    nx: int = 16
    ny: int = 16
    nz: int = 4
    nt: int = 20


@dataclass
class Phantom:
    """What :func:`simulate` made: the image sets (first = the perfusion series) and the ground truth."""

    technique: str
    image_sets: list[ImageSet]
    truth: dict[str, Any]
    study: Study = field(default_factory=Study)


def simulate(technique: str, size: Size | None = None, snr: float | None = None, seed: int = 0,
             realistic: bool = False, uid_salt: str = "") -> Phantom:
    """Run the forward model of ``technique`` and turn its signal into quantised image sets.

    ``realistic`` (DSC, CT perfusion): partial-volume arteries, a vein, a later recirculating bolus
    (:data:`perfnode.phantoms.common.REALISTIC`). ``uid_salt``: mixed into every UID (``""``: the
    UIDs follow from ``seed`` and the technique alone)."""
    size = size or Size()
    dims = {"nz": size.nz, "ny": size.ny, "nx": size.nx}
    study = Study(seed=seed, patient_id=f"PERF-DRO-{technique.upper()}", uid_salt=uid_salt)
    sets: list[ImageSet] = []
    if technique in ("dsc", "ctp", "dce"):
        mod = {"dsc": dsc, "ctp": ctp, "dce": dce}[technique]
        extra = {"realistic": True} if realistic and technique in ("dsc", "ctp") else {}
        signal, truth = mod.simulate(nt=size.nt, snr=snr, seed=seed, **dims, **extra)
        modality = mod.PROTOCOL["modality"]
        stored, slope, icpt = quantize(signal[None], modality)
        sets.append(
            ImageSet(
                modality,
                stored,
                slope,
                icpt,
                truth["times_s"],
                mod.PROTOCOL,
                1,
                f"{technique.upper()} perfusion",
            )
        )
        if technique == "dce":
            vfa = truth["vfa_signal"][:, None]  # (flip, 1, z, y, x)
            stored, slope, icpt = quantize(vfa, "MR")
            sets.append(
                ImageSet(
                    "MR",
                    stored,
                    slope,
                    icpt,
                    np.zeros(1),
                    {**dce.PROTOCOL, "contrast": None},  # pre-contrast
                    2,
                    "VFA T1 mapping",
                    image_type3="T1",
                    extra=[{"flip_deg": float(a)} for a in dce.VFA_FLIP_DEG],
                )
            )
    elif technique == "asl":
        signal, truth = asl.simulate(n_pairs=max(2, size.nt // 2), snr=snr, seed=seed, **dims)
        n_pairs, n_pld = signal.shape[:2]
        e_first = signal.reshape(n_pairs, n_pld * 2, *signal.shape[3:]).swapaxes(
            0, 1
        )  # (pld·ctx, pair, z, y, x)
        stored, slope, icpt = quantize(e_first, "MR")
        extra = [
            {"pld_ms": float(p) * 1000, "asl_context": c}
            for p in truth["plds_s"]
            for c in ("CONTROL", "LABEL")
        ]
        sets.append(
            ImageSet(
                "MR", stored, slope, icpt, truth["times_s"], asl.PROTOCOL, 1, "pCASL perfusion", extra=extra
            )
        )
        stored, slope, icpt = quantize(truth["m0_signal"][None, None], "MR")
        sets.append(
            ImageSet(
                "MR",
                stored,
                slope,
                icpt,
                np.zeros(1),
                asl.PROTOCOL,
                2,
                "pCASL M0",
                image_type3="PROTON_DENSITY",
                extra=[{"asl_context": "M_ZERO_SCAN"}],
            )
        )
    elif technique in ("ivim", "dwi"):
        mod = ivim if technique == "ivim" else dwi
        signal, truth = mod.simulate(snr=snr, seed=seed, **dims)
        stored, slope, icpt = quantize(signal[:, None], "MR")
        extra = [
            {"b_value": float(b), "direction": tuple(float(v) for v in d)}
            for b, d in zip(truth["b_values_s_per_mm2"], truth["directions"], strict=True)
        ]
        sets.append(
            ImageSet(
                "MR",
                stored,
                slope,
                icpt,
                np.zeros(1),
                mod.PROTOCOL,
                1,
                "IVIM perfusion" if technique == "ivim" else "DWI",
                extra=extra,
                image_type3="PERFUSION" if technique == "ivim" else "DIFFUSION",
            )
        )
    else:
        raise ValueError(f"unknown technique {technique!r}: one of {', '.join(TECHNIQUES)}")
    for s in sets:
        s.series_uid = generate_uid(UID_PREFIX, [study.study_uid, str(s.series_number), technique])
    return Phantom(technique, sets, truth, study)


def frame_order(s: ImageSet) -> list[tuple[int, int, int]]:
    """Acquisition order of the frames ``(e, t, z)``: time, then extra axis, then slice."""
    ne, nt, nz = s.shape[:3]
    return [(e, t, z) for t in range(nt) for e in range(ne) for z in range(nz)]


def build(
    phantom: Phantom,
    s: ImageSet,
    shape: str,
    parts: int = 3,
    rng: np.random.Generator | None = None,
    shuffle: bool = False,
) -> list[Dataset]:
    """The DICOM datasets of one image set in the requested ``shape``."""
    frames = frame_order(s)
    if shuffle:
        rng = rng or np.random.default_rng(0)
        frames = [frames[i] for i in rng.permutation(len(frames))]
    if shape == "single":
        return [enhanced(phantom.study, s, frames, 1)]
    if shape == "concat":
        source = generate_uid(UID_PREFIX, [s.series_uid, "concatenation source"])
        concat_uid = generate_uid(UID_PREFIX, [s.series_uid, "concatenation"])
        chunks = np.array_split(np.arange(len(frames)), min(parts, len(frames)))
        out = []
        for n, chunk in enumerate(chunks, start=1):
            ds = enhanced(
                phantom.study,
                s,
                [frames[i] for i in chunk],
                n,
                sop_uid=generate_uid(UID_PREFIX, [source, str(n)]),
            )
            ds.ConcatenationUID = concat_uid
            ds.SOPInstanceUIDOfConcatenationSource = source
            ds.InConcatenationNumber = n
            ds.InConcatenationTotalNumber = len(chunks)
            ds.ConcatenationFrameOffsetNumber = int(chunk[0])
            out.append(ds)
        return out
    if shape == "per-time":
        ne, nt, nz = s.shape[:3]
        return [enhanced(phantom.study, s, [f for f in frames if f[1] == t], t + 1) for t in range(nt)]
    if shape == "classic":
        if any("asl_context" in x for x in s.extra) and len(s.extra) > 1:
            raise ValueError(
                "shape classic: ASL label/control has no classic MR attribute; use an Enhanced shape"
            )
        return [classic(phantom.study, s, e, t, z, i + 1) for i, (e, t, z) in enumerate(frames)]
    raise ValueError(f"unknown shape {shape!r}: one of {', '.join(SHAPES)}")


def write_truth(
    phantom: Phantom, out: Path, files: dict[str, list[str]], shape: str, break_rule: str | None
) -> None:
    """``truth.json`` (settings, scalars, short curves, file list) and ``truth.npz`` (every array)."""
    arrays = {k: np.asarray(v) for k, v in phantom.truth.items() if isinstance(v, np.ndarray)}
    for s in phantom.image_sets:
        arrays[f"series{s.series_number}_values"] = s.values()
    np.savez_compressed(out / "truth.npz", **arrays)
    doc: dict[str, Any] = {
        "technique": phantom.technique,
        "shape": shape,
        "break": break_rule,
        "study_instance_uid": phantom.study.study_uid,
        "series": [
            {
                "series_instance_uid": s.series_uid,
                "series_number": s.series_number,
                "description": s.description,
                "modality": s.modality,
                "shape_etzyx": list(s.shape),
                "rescale_slope": s.slope,
                "rescale_intercept": s.intercept,
                "extra": [
                    {k: (list(v) if isinstance(v, tuple) else v) for k, v in x.items()} for x in s.extra
                ],
                "files": files.get(s.series_uid, []),
            }
            for s in phantom.image_sets
        ],
        "arrays_in_npz": sorted(arrays),
    }
    for k, v in phantom.truth.items():
        if isinstance(v, np.ndarray):
            if v.ndim == 1 and v.size <= 512:
                doc[k] = v.tolist()
        elif isinstance(v, (int, float, str, list)) or v is None:
            doc[k] = v
    (out / "truth.json").write_text(json.dumps(doc, indent=1))
