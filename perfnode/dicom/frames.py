"""Frames → 4-D volume: the public names, kept here so ``perfnode.dicom.frames`` imports keep working.

The work is split by job: :mod:`~perfnode.dicom.frame_table` (one row per frame, read through the one
functional-group reader :mod:`~perfnode.dicom.groups`), :mod:`~perfnode.dicom.geometry` (orientation,
slices), :mod:`~perfnode.dicom.timing` (frame times) and :mod:`~perfnode.dicom.assembly` (the grid,
pixels, :class:`Volume4D`); vendor specifics in :mod:`~perfnode.dicom.vendors` and
:mod:`~perfnode.dicom.mosaic`.
"""

from __future__ import annotations

from perfnode.dicom.assembly import (
    AssemblyWarning,
    Plan,
    Volume4D,
    assemble,
    expand,
    group_series,
    plan,
    read_header,
)
from perfnode.dicom.frame_table import ENHANCED_SOP_CLASSES, EXTRA_KEYS, AssemblyError, frame_table
from perfnode.dicom.geometry import Geometry

__all__ = [
    "ENHANCED_SOP_CLASSES",
    "EXTRA_KEYS",
    "AssemblyError",
    "AssemblyWarning",
    "Geometry",
    "Plan",
    "Volume4D",
    "assemble",
    "expand",
    "frame_table",
    "group_series",
    "plan",
    "read_header",
]
