"""What vendors say in private attributes where no standard attribute says it, read through the creator.

Each entry is documented by the vendor or by the public converters that read it (dcm2niix, ExploreASL):

- Philips: the ASL label type (2005,xx29) "CONTROL"/"LABEL" of creator ``Philips MR Imaging DD 005`` in
  the private functional group (2005,xx0F) of the same creator; the floating-point scale slope
  (2005,xx0E) of ``Philips MR Imaging DD 001`` there (or at the top level of a classic image).
- GE: the b-value as the first value of (0043,xx39) of ``GEMS_PARM_01``; the gradient direction in
  (0019,xxBB/BC/BD) of ``GEMS_ACQU_01``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from perfnode.dicom.groups import FunctionalGroups, Private

PHILIPS_FG = Private("Philips MR Imaging DD 005", 0x2005, 0x0F)
PHILIPS_LABEL_TYPE = Private("Philips MR Imaging DD 005", 0x2005, 0x29)
PHILIPS_SCALE_SLOPE = Private("Philips MR Imaging DD 001", 0x2005, 0x0E)
GE_B_VALUE = Private("GEMS_PARM_01", 0x0043, 0x39)
GE_GRADIENT = tuple(Private("GEMS_ACQU_01", 0x0019, e) for e in (0xBB, 0xBC, 0xBD))
#: a private attribute's meaning as an axis of the volume
AXES: dict[Private, str] = {PHILIPS_LABEL_TYPE: "asl_context"}
ASL_WORDS = {"CONTROL": "CONTROL", "LABEL": "LABEL", "TAG": "LABEL", "M0": "M_ZERO_SCAN"}


def vendor(ds: Dataset) -> str:
    """``philips``, ``ge``, ``siemens``, ``canon`` or ``""`` from Manufacturer (0008,0070)."""
    m = str(ds.get("Manufacturer", "")).upper()
    for key, name in (("PHILIPS", "philips"), ("GE ", "ge"), ("GE MEDICAL", "ge"), ("SIEMENS", "siemens"),
                      ("CANON", "canon"), ("TOSHIBA", "canon")):
        if key in m + " ":
            return name
    return ""


def philips_label_types(fg: FunctionalGroups) -> list[str | None]:
    """Per frame: Philips' private ASL label type as an ASL Context term (None where absent)."""
    out = []
    for v in fg.column(PHILIPS_FG, PHILIPS_LABEL_TYPE).tolist():
        out.append(ASL_WORDS.get(str(v).strip().upper()) if v else None)
    return out


def philips_scale_slopes(fg: FunctionalGroups) -> np.ndarray | None:
    """Per frame: Philips' floating-point scale slope (2005,xx0E), or None unless every frame has one."""
    if fg.classic is not None:
        values: list[Any] = [fg.value(0, PHILIPS_SCALE_SLOPE)]
    else:
        values = fg.column(PHILIPS_FG, PHILIPS_SCALE_SLOPE).tolist()
    try:
        out = np.array([float(v) for v in values], float)
    except (TypeError, ValueError):
        return None
    return out if len(out) and (out > 0).all() and np.isfinite(out).all() else None


def ge_diffusion(fg: FunctionalGroups) -> tuple[float | None, tuple[float, float, float] | None]:
    """A GE classic image's b-value and gradient direction from the private attributes."""
    b_raw = fg.value(0, GE_B_VALUE)
    b = None
    if b_raw is not None:
        first = b_raw[0] if isinstance(b_raw, list) else b_raw
        try:
            b = float(first) % 100000  # some versions add a multiple of 10⁵ (dcm2niix reads it so)
        except (TypeError, ValueError):
            b = None
    g = [fg.value(0, p) for p in GE_GRADIENT]
    try:
        direction = tuple(float(v) for v in g) if all(v is not None for v in g) else None
    except (TypeError, ValueError):
        direction = None
    return b, direction  # type: ignore[return-value]
