"""What a technique is, and what its model is given.

A :class:`Technique` is one registry entry: how to recognise a series (``detect``), the model that
analyses it (``model(acq).fit(volume) -> FitResult``, the :class:`PerfusionModel` protocol), the other
series of the study it may use (``companions``: the M0 of ASL, the variable-flip-angle T1 set of
DCE), the maps it sends (each a quantity of :mod:`perfnode.dicom.codes`: a map without a code is
refused when the entry is made, not dropped later), its QC protocol (``perfnode/qc/protocols``) and
its phantom (``perfnode phantom``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydicom.dataset import Dataset

from perfnode.dicom import frames
from perfnode.dicom.codes import find as find_quantity
from perfnode.perfusion.base import FitResult
from perfnode.perfusion.mask import foreground  # noqa: F401 - the one mask, re-exported for the models
from perfnode.techniques.headers import SeriesHeaders

_NAME = re.compile(r"[a-z][a-z0-9_]{1,15}")


class RegistryError(ValueError):
    """A technique entry that cannot be registered; the message names the entry and the field."""


class AnalysisError(ValueError):
    """The series cannot be analysed as asked; the message (one line) says why, naming the attribute."""


@dataclass(frozen=True)
class Detection:
    """One technique's verdict on a series: ``stated`` when a standard or documented vendor attribute
    says so, else inferred (echo time, description...). ``rank`` orders detections of equal standing
    (IVIM over plain DWI on the same b-values)."""

    technique: str
    stated: bool
    reason: str
    rank: int = 0


@dataclass(frozen=True)
class Companion:
    """Another series of the study a technique may use (e.g. the M0 scan of ASL)."""

    name: str
    wanted: Callable[[SeriesHeaders], bool]
    required: bool = False


@runtime_checkable
class PerfusionModel(Protocol):
    """``Model(acq).fit(volume) -> FitResult``: built with the acquisition, fitted to the whole volume.

    After :meth:`fit`, ``curves`` holds the images the data-quality checks and the report's curves
    use (the acquired signal, label/control pairs, per-b images...) and ``notes`` what the person
    reading the result must be told (a default used, a map that could not be made and why)."""

    curves: np.ndarray | None
    notes: list[str]

    def fit(self, volume: frames.Volume4D) -> FitResult: ...


class Companions:
    """The study's other series, assembled on demand when a model asks for one."""

    def __init__(self, files: Sequence[str], shape: tuple[int, ...], frame_of_reference: str) -> None:
        self.series = frames.group_series(frames.expand(files)) if files else {}
        self.shape, self.frame_of_reference = tuple(shape), frame_of_reference
        #: why a series that looked right was not used (grid or frame of reference differs, unreadable)
        self.rejected: list[str] = []

    def headers(self) -> list[SeriesHeaders]:
        return [SeriesHeaders(h) for h in self.series.values() if h]

    def find(self, spec: Companion) -> tuple[frames.Volume4D, SeriesHeaders] | None:
        """The first companion series ``spec`` wants whose grid and frame of reference match ours."""
        for sh in self.headers():
            try:
                if not spec.wanted(sh):
                    continue
                vol = frames.assemble([h.filename for h in sh.headers])
            except Exception as exc:  # noqa: BLE001 - a bad companion is reported, never fatal
                self.rejected.append(f"{spec.name} series {sh.uid}: {exc}")
                continue
            if vol.data.shape[-3:] != self.shape:
                self.rejected.append(
                    f"{spec.name} series {sh.uid}: grid {vol.data.shape[-3:]} is not "
                    f"the analysed series' {self.shape}"
                )
            elif vol.geometry.frame_of_reference_uid != self.frame_of_reference:
                self.rejected.append(
                    f"{spec.name} series {sh.uid}: (0020,0052) FrameOfReferenceUID "
                    "differs from the analysed series'"
                )
            else:
                return vol, sh
        return None


@dataclass
class Acquisition:
    """What a model is built with: the series' headers, its header facts, the study's other series."""

    headers: list[Dataset]
    facts: dict[str, Any]
    companions: Companions
    series: SeriesHeaders = field(init=False)

    def __post_init__(self) -> None:
        self.series = SeriesHeaders(self.headers)

    def fact(self, name: str, default: Any = None) -> Any:
        """A header fact's value (:mod:`perfnode.qc.facts`), or ``default`` when unknown."""
        f = self.facts.get(name)
        return default if f is None or getattr(f, "value", None) is None else f.value


class TechniqueModel:
    """Base for the models of this package: holds the acquisition, ``curves`` and ``notes``."""

    def __init__(self, acq: Acquisition) -> None:
        self.acq = acq
        self.curves: np.ndarray | None = None
        self.notes: list[str] = []

    def fit(self, volume: frames.Volume4D) -> FitResult:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Technique:
    """One registry entry (see the module docstring)."""

    name: str
    title: str
    detect: Callable[[SeriesHeaders], Detection | None]
    model: Callable[[Acquisition], PerfusionModel]
    #: quantity keys (or aliases) of :mod:`perfnode.dicom.codes` this technique may send, in order
    maps: tuple[str, ...]
    qc_protocol: str | None = None
    phantom: str | None = None
    companions: tuple[Companion, ...] = ()
    #: key of :data:`perfnode.dicom.codes.TECHNIQUES` (the method code of the provenance), if any
    method: str | None = None
    #: a contrast-agent time course: bolus, baseline and AIF checks apply
    dynamic: bool = False
    #: what the arterial curve of a fit is measured in (the report's axis label)
    aif_label: str | None = None
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise RegistryError(
                f"technique {self.name!r}: the name must be 2–16 lower-case letters, digits, _"
            )
        if not self.maps:
            raise RegistryError(f"technique {self.name!r}: no maps declared")
        keys = []
        for m in self.maps:
            q = find_quantity(m)
            if q is None:
                raise RegistryError(
                    f"technique {self.name!r}: map {m!r} has no quantity code in "
                    "perfnode/dicom/codes.py (add it there: a map without a code cannot be "
                    "encoded as a Parametric Map)"
                )
            keys.append(q.key)
        if len(set(keys)) != len(keys):
            raise RegistryError(f"technique {self.name!r}: a quantity is declared twice in {self.maps}")
        object.__setattr__(self, "maps", tuple(keys))

    def outputs(self, fit: FitResult) -> tuple[dict[str, np.ndarray], list[str]]:
        """The fit's 3-D maps this technique sends (by the fit's name, in declared order), and the names of
        the fit's other maps (intermediate results such as S0, recorded in the provenance as not sent)."""
        by_key: dict[str, tuple[str, np.ndarray]] = {}
        others: list[str] = []
        for name, values in fit.maps.items():
            q = find_quantity(name)
            if q is not None and q.key in self.maps and np.ndim(values) == 3 and q.key not in by_key:
                by_key[q.key] = (name, values)
            else:
                others.append(name)
        if "quality" in self.maps and fit.quality is not None and np.ndim(fit.quality) == 3:
            by_key.setdefault("quality", ("quality", fit.quality))
        return dict(by_key[k] for k in self.maps if k in by_key), others


def attribute_name(keyword: str) -> str:
    """``(gggg,eeee) Keyword`` of a standard attribute keyword (the keyword alone when unknown)."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword) if keyword else None
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {keyword}" if tag is not None else keyword


def require_time_points(volume: frames.Volume4D, technique: str, minimum: int = 8) -> None:
    """Refuse, in one line naming the rule and where the times came from, a series too short to
    deconvolve (a baseline, the bolus and its return need at least ``minimum`` time points)."""
    n = int(np.asarray(volume.times_s).size)
    if n >= minimum:
        return
    source = attribute_name(volume.time_source.split()[0]) if volume.time_source else "no frame times"
    raise AnalysisError(
        f"{technique} needs at least {minimum} time points (baseline, bolus passage and return) to "
        f"deconvolve; the series has {n} (times from {source})")


def slice_timed(volume: frames.Volume4D) -> tuple[np.ndarray, str]:
    """The series' ``(t, z, y, x)`` data on one time axis, and what was done, for the provenance: each
    slice resampled from its own acquisition times (``frame_times_s``) onto the start of each time point
    when the slices of a time point were acquired apart (:mod:`perfnode.perfusion.timing`)."""
    from perfnode.perfusion.timing import correct_slice_timing, needs_correction, slice_offsets

    data = volume.data
    ft = getattr(volume, "frame_times_s", None)
    if data.ndim != 4 or ft is None or np.ndim(ft) != 2 or not needs_correction(ft, volume.times_s):
        return data, "not applied: the slices of each time point share one acquisition time"
    offsets = slice_offsets(ft, volume.times_s)
    source = getattr(volume, "time_source", "") or "per-frame times"
    return correct_slice_timing(data, ft, volume.times_s), (
        f"applied: each slice resampled from its acquisition times ({source}; offsets "
        f"{float(offsets.min()):.3g}–{float(offsets.max()):.3g} s) onto the start of each time point")
