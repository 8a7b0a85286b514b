"""Digital reference objects: IHE PERF objects with known ground truth, valid or broken on purpose.

``make(technique, shape, out)`` writes the DICOM files and ``truth.json`` / ``truth.npz``. The pure
forward models (no DICOM) are :mod:`perfnode.phantoms.dsc`, ``dce``, ``ctp``, ``asl``, ``ivim`` and ``dwi``,
each with ``simulate(...) -> (signal, truth)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from perfnode.phantoms.breaks import RULES
from perfnode.phantoms.objects import SHAPES, TECHNIQUES, Phantom, Size, build, simulate, write_truth

__all__ = ["RULES", "SHAPES", "TECHNIQUES", "Phantom", "Size", "make", "simulate"]


def make(
    technique: str,
    shape: str,
    out: str | Path,
    break_rule: str | None = None,
    seed: int = 0,
    snr: float | None = None,
    size: Size | None = None,
    parts: int = 3,
    realistic: bool = False,
    uid_salt: str = "",
) -> tuple[Phantom, list[Path]]:
    """Write the phantom's series into ``out`` (one sub-folder per series) and its ground truth.

    ``uid_salt`` is mixed into every UID; ``""`` makes them a function of ``seed`` and the technique."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}: one of {', '.join(SHAPES)}")
    rule = None
    if break_rule:
        if break_rule not in RULES:
            raise ValueError(f"unknown rule {break_rule!r}: one of {', '.join(RULES)}")
        rule = RULES[break_rule]
        if rule.shape and shape != rule.shape:
            raise ValueError(f"--break {break_rule} needs --shape {rule.shape}")
        if rule.apply and shape == "classic":
            raise ValueError(f"--break {break_rule} applies to Enhanced objects, not --shape classic")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    phantom = simulate(technique, size, snr, seed, realistic, uid_salt)
    rng = np.random.default_rng(seed)
    written: list[Path] = []
    files: dict[str, list[str]] = {}
    for k, s in enumerate(phantom.image_sets):
        dss = build(phantom, s, shape, parts=parts, rng=rng, shuffle=break_rule == "shuffled" and k == 0)
        if rule and rule.apply and k == 0:
            dss = rule.apply(dss, rng)
        folder = out / f"series{s.series_number:02d}"
        folder.mkdir(exist_ok=True)
        for i, ds in enumerate(dss, start=1):
            p = folder / f"{i:04d}.dcm"
            ds.save_as(p, enforce_file_format=True)
            written.append(p)
            files.setdefault(s.series_uid, []).append(str(p.relative_to(out)))
    write_truth(phantom, out, files, shape, break_rule)
    return phantom, written
