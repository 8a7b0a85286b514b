"""The technique registry: every analysis perfnode runs, one entry each, and the one detector.

Adding a technique = one new module here defining ``TECHNIQUE = Technique(...)`` (see
:mod:`perfnode.techniques.base`) plus its name in :data:`BUILTIN`. Detection (:func:`detect_series`),
the pipeline's choice (:mod:`perfnode.pipeline.technique`), the analysis (:mod:`perfnode.pipeline.analysis`),
``perfnode maps``, ``perfnode check``, ``perfnode report`` and the QC protocol lookup all read this
registry; nothing else lists techniques. :func:`register` adds one at run time (a site module, a test).

The technique of a series is decided from all its instances, never from its first file:
every registered detector looks at the whole series; a detection backed by a standard or documented
vendor attribute ("stated") beats one inferred from echo time or the series description; when
several techniques remain, the decision says the header is ambiguous (and which won, and why).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from pydicom.dataset import Dataset

from perfnode.techniques.base import (
    Acquisition,
    AnalysisError,
    Companion,
    Companions,
    Detection,
    PerfusionModel,
    RegistryError,
    Technique,
    TechniqueModel,
)
from perfnode.techniques.headers import DERIVED_SOP_CLASSES, SeriesHeaders

__all__ = [
    "BUILTIN",
    "Acquisition",
    "AnalysisError",
    "Companion",
    "Companions",
    "Decision",
    "Detection",
    "PerfusionModel",
    "RegistryError",
    "SeriesHeaders",
    "Technique",
    "TechniqueModel",
    "detect_series",
    "get",
    "names",
    "register",
    "techniques",
    "unregister",
]

#: The techniques shipped with perfnode: module names under ``perfnode.techniques``, in the order
#: detection breaks ties. One line per technique.
BUILTIN = (
    "perfnode.techniques.dsc",
    "perfnode.techniques.dce",
    "perfnode.techniques.ctp",
    "perfnode.techniques.asl",
    "perfnode.techniques.ivim",
    "perfnode.techniques.dwi",
)

_registry: dict[str, Technique] = {}
_aliases: dict[str, str] = {}
_loaded = False
_lock = threading.RLock()


def _load() -> None:
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        for module in BUILTIN:
            t = importlib.import_module(module).TECHNIQUE
            if t.name not in _registry:
                _add(t)
        _loaded = True


def _add(t: Technique) -> None:
    if not isinstance(t, Technique):
        raise RegistryError(f"{t!r} is not a perfnode.techniques.Technique")
    for n in (t.name, *t.aliases):
        if n in _registry or n in _aliases:
            raise RegistryError(f"technique {t.name!r}: the name {n!r} is already registered")
    _registry[t.name] = t
    for a in t.aliases:
        _aliases[a] = t.name


def register(technique: Technique) -> Technique:
    """Add a technique (its maps are checked against the code table when the entry is made)."""
    with _lock:
        _load()
        _add(technique)
    return technique


def unregister(name: str) -> None:
    """Remove a technique added with :func:`register` (tests, site modules being reloaded)."""
    with _lock:
        t = _registry.pop(name, None)
        for a in t.aliases if t else ():
            _aliases.pop(a, None)


def techniques() -> list[Technique]:
    """Every registered technique, in registry order."""
    _load()
    return list(_registry.values())


def names() -> tuple[str, ...]:
    """Registered technique names (what ``--technique`` and ``[[pipeline.rules]]`` accept)."""
    return tuple(t.name for t in techniques())


def get(name: str) -> Technique:
    """The technique called ``name`` (or one of its aliases); ``KeyError`` names the known ones."""
    _load()
    key = str(name).lower()
    key = _aliases.get(key, key)
    if key not in _registry:
        raise KeyError(f"unknown technique {name!r}; known: {', '.join(_registry)}")
    return _registry[key]


@dataclass(frozen=True)
class Decision:
    """What a series is analysed as, and why (one line), as the job and the report state it."""

    technique: str | None
    reason: str
    stated: bool = False
    ambiguous: bool = False
    #: the series is another technique's companion (an M0, a VFA T1 set): analysed with it, not alone
    companion_of: str | None = None
    candidates: tuple[Detection, ...] = ()

    @property
    def note(self) -> str | None:
        """What must be said alongside the result when the header did not state the technique."""
        if self.technique is None or (self.stated and not self.ambiguous):
            return None
        return self.reason


def _derived(s: SeriesHeaders) -> str | None:
    """Why a series is a result rather than an acquisition (never analysed again), or None."""
    for uid in s.sop_classes:
        if uid in DERIVED_SOP_CLASSES:
            return f"a derived object ((0008,0016) SOPClassUID {DERIVED_SOP_CLASSES[uid]}): not analysed"
    if "DERIVED" in s.type_values(0):
        return "a derived object ((0008,0008) ImageType value 1 DERIVED): not analysed"
    return None


def detect_series(headers: Sequence[Dataset] | SeriesHeaders) -> Decision:
    """The technique of one series, from all its instances and frames (see the module docstring)."""
    s = headers if isinstance(headers, SeriesHeaders) else SeriesHeaders(list(headers))
    if why := _derived(s):
        return Decision(None, why, stated=True)
    found: list[Detection] = []
    failed: list[str] = []
    for t in techniques():
        try:
            d = t.detect(s)
        except Exception as exc:  # noqa: BLE001 - one detector tripping on an odd header is not fatal
            failed.append(f"{t.name} detector: {exc}")
            continue
        if d is not None:
            found.append(replace(d, technique=t.name))  # the entry's name, whatever the detector wrote
    if not found:
        for t in techniques():
            for c in t.companions:
                try:
                    wanted = c.wanted(s)
                except Exception:  # noqa: BLE001
                    wanted = False
                if wanted:
                    return Decision(
                        None,
                        f"companion series ({c.name}): used by the study's {t.title} analysis, "
                        "not analysed alone",
                        stated=True,
                        companion_of=t.name,
                    )
        from perfnode.techniques.headers import dynamic_mr

        why = [w] if (w := dynamic_mr(s)[1]) and w.startswith("(") else []  # e.g. Image Type value 3 FMRI
        extra = f" ({'; '.join([*why, *failed])})" if why or failed else ""
        return Decision(None, f"not a perfusion or diffusion series perfnode recognises{extra}")
    stated = any(d.stated for d in found)
    pool = [d for d in found if d.stated == stated]
    top = max(d.rank for d in pool)
    winners = [d for d in pool if d.rank == top]
    best = winners[0]
    if len(winners) > 1:
        others = "; ".join(f"{d.technique}: {d.reason}" for d in winners)
        return Decision(
            best.technique,
            f"ambiguous header, analysed as {best.technique.upper()} (the first registered of: {others})",
            stated,
            True,
            None,
            tuple(found),
        )
    how = "stated by the header" if stated else "inferred, not stated by the header"
    return Decision(
        best.technique, f"{best.technique.upper()}: {best.reason} ({how})", stated, False, None, tuple(found)
    )


def companion_specs(names_: Iterable[str] | None = None) -> list[tuple[Technique, Companion]]:
    """``(technique, companion)`` of every registered technique (or of those named)."""
    wanted = set(names_) if names_ is not None else None
    return [(t, c) for t in techniques() if wanted is None or t.name in wanted for c in t.companions]
