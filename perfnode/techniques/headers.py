"""All the headers of one series, as the technique detectors read them: every instance, every frame.

A detector never decides from the first file alone: a series whose first instance is its M0 image,
its b = 0 volume or its first time point says little about the rest. :class:`SeriesHeaders` answers
"which values does this attribute take anywhere in the series" for top-level attributes (classic
images, Enhanced top level) and functional-group paths (per-frame, else shared, through the one
functional-group reader :mod:`perfnode.dicom.groups`).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from functools import cached_property
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from perfnode.dicom.groups import functional_groups

#: SOP classes whose objects are results, not acquisitions (never analysed).
DERIVED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.30": "Parametric Map",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation",
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
}
#: Frame Type is in one of these per-frame / shared macros (MR, CT, and the others a PERF object has).
FRAME_TYPE_MACROS = ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence")

#: Vendor attributes holding the b-value where the standard DiffusionBValue is absent (private
#: creator, group, element offset, which value): GE (0043,xx39) first value; Siemens (0019,xx0C);
#: Philips (2001,xx03). Each read through its private creator, never by a fixed element number.
PRIVATE_B_VALUES = (
    ("GEMS_PARM_01", 0x0043, 0x39, 0),
    ("SIEMENS MR HEADER", 0x0019, 0x0C, None),
    ("Philips Imaging DD 001", 0x2001, 0x03, None),
)


def _hashable(v: Any) -> Hashable:
    if isinstance(v, (MultiValue, list, tuple)):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, bytes):
        return v
    try:
        hash(v)
    except TypeError:
        return str(v)
    return v


def private_value(ds: Dataset, creator: str, group: int, offset: int) -> Any:
    """Value of the private element ``(group, xx offset)`` reserved by ``creator`` in ``ds``, or None."""
    for block in range(0x10, 0x100):
        tag = Tag(group, block)
        if tag not in ds:
            continue
        if str(ds[tag].value).strip() == creator:
            elem = Tag(group, (block << 8) | offset)
            return ds[elem].value if elem in ds else None
    return None


class SeriesHeaders:
    """The headers of one series (any number of classic or Enhanced instances), for detectors."""

    def __init__(self, headers: Sequence[Dataset]) -> None:
        if not headers:
            raise ValueError("a series needs at least one instance")
        self.headers = list(headers)

    @property
    def first(self) -> Dataset:
        return self.headers[0]

    @property
    def uid(self) -> str:
        return str(self.first.get("SeriesInstanceUID", ""))

    def __len__(self) -> int:
        return len(self.headers)

    # -- values ----------------------------------------------------------------------------------

    def top(self, keyword: str) -> set[Hashable]:
        """Distinct non-empty values of a top-level attribute over the instances."""
        out: set[Hashable] = set()
        for ds in self.headers:
            v = ds.get(keyword)
            if v is not None and v != "":
                out.add(_hashable(v))
        return out

    def frames(self, *path: str) -> set[Hashable]:
        """Distinct non-empty values at a functional-group ``path`` (macro, …, attribute) over every
        frame of every multi-frame instance (per-frame, else shared)."""
        out: set[Hashable] = set()
        for ds in self.headers:
            if 0x52009230 not in ds and 0x52009229 not in ds:
                continue
            for v in functional_groups(ds).column(*path).values:
                if v is not None and v != "":
                    out.add(_hashable(v))
        return out

    def anywhere(self, keyword: str, *macros: str) -> set[Hashable]:
        """Values of ``keyword`` at the top level and inside any of the functional-group ``macros``."""
        out = self.top(keyword)
        for macro in macros:
            out |= self.frames(macro, keyword)
        return out

    def numbers(self, keyword: str, *macros: str) -> set[float]:
        out: set[float] = set()
        for v in self.anywhere(keyword, *macros):
            for x in v if isinstance(v, tuple) else (v,):
                try:
                    out.add(float(x))
                except (TypeError, ValueError):
                    continue
        return out

    def type_values(self, position: int) -> set[str]:
        """Value ``position`` (0-based) of Image Type of every instance and Frame Type of every frame."""
        out: set[str] = set()
        for v in (
            self.top("ImageType")
            | self.frames(FRAME_TYPE_MACROS[0], "FrameType")
            | self.frames(FRAME_TYPE_MACROS[1], "FrameType")
        ):
            values = v if isinstance(v, tuple) else (v,)
            if len(values) > position:
                out.add(str(values[position]).strip().upper())
        return out

    # -- what detectors ask ----------------------------------------------------------------------

    @cached_property
    def modality(self) -> str:
        return str(self.first.get("Modality", "")).upper()

    @cached_property
    def sop_classes(self) -> set[str]:
        return {str(ds.get("SOPClassUID", "")) for ds in self.headers}

    @cached_property
    def text(self) -> str:
        """Series Description and Protocol Name, for the patterns sites put in them."""
        return " ".join(str(v) for v in self.top("SeriesDescription") | self.top("ProtocolName"))

    def says(self, pattern: str) -> str | None:
        """The Series Description / Protocol Name matching ``pattern`` (case-insensitive), or None."""
        m = re.search(pattern, self.text, re.I)
        return m.group(0) if m else None

    @cached_property
    def b_values(self) -> set[float]:
        """Distinct b-values (s/mm²) of the series: standard attributes, else the vendors' private ones.

        A frame of a diffusion series without a b-value (GE writes none on its b = 0 images; an
        Enhanced frame whose MR Diffusion macro says DiffusionDirectionality NONE) counts as b = 0."""
        values = self.numbers("DiffusionBValue", "MRDiffusionSequence")
        for ds in self.headers:
            for creator, group, offset, index in PRIVATE_B_VALUES:
                v = private_value(ds, creator, group, offset)
                if v is None:
                    continue
                try:
                    b = float(v[index] if index is not None and isinstance(v, (list, MultiValue)) else v)
                except (TypeError, ValueError, IndexError):
                    continue
                values.add(b % 1e9 if creator.startswith("GEMS") else b)  # GE may add 1e9 (b-value "flag")
        if values and self._some_without_b():
            values.add(0.0)
        return values

    def _some_without_b(self) -> bool:
        for ds in self.headers:
            if 0x52009230 in ds:
                if None in functional_groups(ds).column("MRDiffusionSequence", "DiffusionBValue").values:
                    return True
            elif "DiffusionBValue" not in ds:
                return True
        return False

    @cached_property
    def time_points(self) -> int:
        """How many time points the series has, from whichever attribute says most: Number of Temporal
        Positions, distinct Temporal Position Index / Identifier, distinct frame times at one slice
        position, or the number of images at one slice position and flip angle (classic series: the
        images of a variable-flip-angle set are not time points)."""
        counts = [int(v) for v in self.numbers("NumberOfTemporalPositions")]
        counts.append(len(self.frames("FrameContentSequence", "TemporalPositionIndex")))
        counts.append(len(self.top("TemporalPositionIdentifier")))
        per_position: dict[Hashable, int] = {}
        for ds in self.headers:
            if 0x52009230 in ds:
                continue
            pos = (_hashable(ds.get("ImagePositionPatient")), _hashable(ds.get("FlipAngle")))
            per_position[pos] = per_position.get(pos, 0) + 1
        if per_position:
            counts.append(max(per_position.values()))
        return max(counts)

    def private(self, creator: str, group: int, offset: int) -> list[Any]:
        """Top-level values of a private element over the instances (read through its creator)."""
        return [v for ds in self.headers if (v := private_value(ds, creator, group, offset)) is not None]

    def dimension_pointers(self) -> set[tuple[int, str]]:
        """``(Dimension Index Pointer, private creator or "")`` of every Enhanced instance's dimensions."""
        out: set[tuple[int, str]] = set()
        for ds in self.headers:
            for item in ds.get("DimensionIndexSequence") or []:
                ptr = item.get("DimensionIndexPointer")
                if ptr is not None:
                    out.add((int(ptr), str(item.get("DimensionIndexPrivateCreator", "") or "")))
        return out


#: Image / Frame Type value 3 (PS3.3 C.8.13.1.1.1, C.8.16.1) terms that say "not a contrast perfusion time
#: series" whatever the echo time: functional MRI, diffusion, ASL, an M0 or T1/T2 map acquisition.
OTHER_PURPOSE_TYPES = {
    "FMRI",
    "DIFFUSION",
    "ASL",
    "PROTON_DENSITY",
    "T1",
    "T2",
    "T2_STAR",
    "ANGIO",
    "FLOW_ENCODED",
    "VELOCITY",
    "SPECTROSCOPY",
    "LOCALIZER",
    "TAGGING",
}


def contrast_agent(s: SeriesHeaders) -> str | None:
    """The contrast agent the header names ((0018,0010) ContrastBolusAgent or the Enhanced Contrast/Bolus
    Agent Sequence), or None."""
    for v in s.top("ContrastBolusAgent"):
        return str(v)
    for ds in s.headers:
        for item in ds.get("ContrastBolusAgentSequence") or []:
            return str(item.get("CodeMeaning", "") or "contrast agent")
    return None


def dynamic_mr(s: SeriesHeaders, min_time_points: int = 3) -> tuple[list[str], str | None]:
    """For DSC / DCE detectors: the facts that make ``s`` an MR contrast time series (reasons), or why
    not (second value)."""
    if s.modality != "MR":
        return [], "not MR"
    purpose = s.type_values(2) & OTHER_PURPOSE_TYPES
    contrast = {str(v).upper() for v in s.anywhere("AcquisitionContrast", "MRImageFrameTypeSequence")}
    if purpose or "DIFFUSION" in contrast:
        return [], f"(0008,0008) ImageType value 3 {'/'.join(sorted(purpose or {'DIFFUSION'}))}"
    n = s.time_points
    if n < min_time_points:
        return [], f"{n} time point(s)"
    reasons = [f"{n} time points"]
    if "PERFUSION" in s.type_values(2):
        reasons.append("(0008,0008) ImageType value 3 PERFUSION")
    if agent := contrast_agent(s):
        reasons.append(f"contrast agent {agent!r}")
    return reasons, None


def echo_time_ms(s: SeriesHeaders) -> float | None:
    """The longest echo time of the series (the tissue echo of a multi-echo acquisition), ms."""
    tes = s.numbers("EchoTime") | s.numbers("EffectiveEchoTime", "MREchoSequence")
    return max(tes) if tes else None
