"""IHE PERF (CT/MR Perfusion Imaging with Contrast) profile checks → findings.

Rules, from the IHE Radiology Technical Framework supplement (PERF, Rev. 1.1, TF-2) and DICOM PS3.3:

- Image Type (0008,0008) and Frame Type (0008,9007) value 1 ORIGINAL, value 3 PERFUSION, in every frame
  (TF-2 Table 4.8.4.1.2.5.2-1);
- Temporal Position Index (0020,9128) in the Frame Content Sequence of every frame, R+
  (TF-2 Table 4.8.4.1.2.5.2-2);
- Dimension Index Pointers Stack ID, In-Stack Position Number, Temporal Position Index, in that order,
  pointing into the Frame Content Sequence (TF-2 4.8.4.1.2.5.2); the Dimension Index Values agree with
  the Frame Content values, no two frames share a cell, the grid is complete (PS3.3 C.7.6.17);
- all perfusion images in a single Enhanced CT/MR instance (TF-2 4.8.4.1.2.5.2), a concatenation counting
  as one (TF-2 4.16.4.2.2.7, PS3.3 C.7.6.16.2.2.4); Enhanced MR or Enhanced CT SOP class (TF-2 Table 4.8-6);
- Contrast/Bolus Agent Sequence with its Administration Route Sequence, which displays must show
  (TF-2 Table 4.16.4.2.2.7-1; a warning when absent).

Frame-level defects are reported once per kind, naming the frames (``where``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from itertools import product
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from perfnode.dicom.concatenation import check_parts
from perfnode.dicom.concatenation import groups as concatenation_groups
from perfnode.dicom.findings import Finding, Severity
from perfnode.dicom.groups import Column, FunctionalGroups, functional_groups

#: A frame's cell of the (position × time × …) grid: (Stack ID, In-Stack Position, Temporal Position
#: Index, further Dimension Index Values …); positions and times may be None.
Cell = tuple[Any, ...]

ENHANCED = {
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
}
CLASSIC = {"1.2.840.10008.5.1.4.1.1.4": "MR Image Storage", "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage"}

R_TYPES = "IHE RAD TF-2 Table 4.8.4.1.2.5.2-1"
R_TPI = "IHE RAD TF-2 Table 4.8.4.1.2.5.2-2"
R_DIM = "IHE RAD TF-2 4.8.4.1.2.5.2"
R_SINGLE = "IHE RAD TF-2 4.8.4.1.2.5.2"
R_SOP = "IHE RAD TF-2 Table 4.8-6"
R_DISPLAY = "IHE RAD TF-2 Table 4.16.4.2.2.7-1"
R_VALUES = "PS3.3 C.7.6.17.1"

FRAME_CONTENT = Tag("FrameContentSequence")
STACK_ID, IN_STACK_POSITION, TEMPORAL_INDEX = 0x00209056, 0x00209057, 0x00209128
REQUIRED_POINTERS = (Tag(STACK_ID), Tag(IN_STACK_POSITION), Tag(TEMPORAL_INDEX))


def _kw(tag: int) -> str:
    return keyword_for_tag(tag) or str(Tag(tag))


def _frames(numbers: list[int], total: int) -> str:
    shown = ", ".join(map(str, numbers[:8])) + (" …" if len(numbers) > 8 else "")
    return f"frame{'s' if len(numbers) > 1 else ''} {shown} ({len(numbers)} of {total})"


def _pointer_tags(ds: Dataset) -> list[int]:
    """The Dimension Index Pointers in order; 0 for an item without one."""
    return [int(Tag(d.get("DimensionIndexPointer", 0))) for d in ds.get("DimensionIndexSequence") or []]


def is_perfusion_candidate(ds: Dataset) -> bool:
    """Does ``ds`` present itself as a perfusion object (so that the PERF rules apply)?"""
    it = list(ds.get("ImageType") or [])
    if len(it) > 2 and it[2] == "PERFUSION":
        return True
    if TEMPORAL_INDEX in _pointer_tags(ds):
        return True
    if ds.SOPClassUID in CLASSIC:
        return ds.get("TemporalPositionIdentifier") is not None
    if ds.SOPClassUID not in ENHANCED:
        return False
    fg = functional_groups(ds)  # the first frame's Frame Type: per-frame, else shared
    ft = fg.value(0, "MRImageFrameTypeSequence", "FrameType")
    ft = ft or fg.value(0, "CTImageFrameTypeSequence", "FrameType")
    values = list(ft) if isinstance(ft, (list, MultiValue)) else []  # one value (a str): no value 3
    return len(values) > 2 and values[2] == "PERFUSION"


#: A broken Image Type / Frame Type rule: (found, expected).
Defect = tuple[str, str]


def _type_defects(values: list[str] | None) -> list[Defect]:
    """The Image Type / Frame Type rules (value 1 ORIGINAL, value 3 PERFUSION) that ``values`` break."""
    if not values:
        return [("absent", "ORIGINAL\\PRIMARY\\PERFUSION\\…")]
    out = []
    if values[0] != "ORIGINAL":
        out.append((f"value 1 {values[0]}", "value 1 ORIGINAL"))
    if len(values) < 3 or values[2] != "PERFUSION":
        out.append((f"value 3 {values[2] if len(values) > 2 else 'absent'}", "value 3 PERFUSION"))
    return out


def check_instance_header(ds: Dataset) -> list[Finding]:
    """Rules about one instance's own header: SOP class, Image Type, dimension pointers, contrast."""
    where = f"instance {ds.SOPInstanceUID}"
    out: list[Finding] = []
    if ds.SOPClassUID not in ENHANCED:
        out.append(
            Finding.make(
                Severity.ERROR,
                "SOPClassUID",
                f"{ds.SOPClassUID} ({ds.SOPClassUID.name})",
                "Enhanced MR or Enhanced CT Image Storage",
                R_SOP,
                where,
            )
        )
        return out
    for found, expected in _type_defects(list(ds.get("ImageType") or [])):
        out.append(Finding.make(Severity.ERROR, "ImageType", found, expected, R_TYPES, where))
    out += _pointers(ds, where)
    agents = ds.get("ContrastBolusAgentSequence")
    if not agents:
        out.append(
            Finding.make(
                Severity.WARNING,
                "ContrastBolusAgentSequence",
                "absent",
                "the contrast agent, for display",
                R_DISPLAY,
                where,
            )
        )
    else:
        for i, a in enumerate(agents, start=1):
            if not a.get("ContrastBolusAdministrationRouteSequence"):
                out.append(
                    Finding.make(
                        Severity.WARNING,
                        "ContrastBolusAdministrationRouteSequence",
                        "absent",
                        "the administration route, for display",
                        R_DISPLAY,
                        f"{where}, agent item {i}",
                    )
                )
    return out


def _pointers(ds: Dataset, where: str) -> list[Finding]:
    seq = ds.get("DimensionIndexSequence")
    expected = " → ".join(_kw(t) for t in REQUIRED_POINTERS)
    if not seq:
        return [Finding.make(Severity.ERROR, "DimensionIndexSequence", "absent", expected, R_DIM, where)]
    out = []
    pointers = [Tag(t) for t in _pointer_tags(ds)]
    head = pointers[:3]
    missing = [t for t in REQUIRED_POINTERS if t not in pointers]
    for t in missing:
        out.append(
            Finding.make(
                Severity.ERROR,
                "DimensionIndexPointer",
                f"no pointer to {_kw(t)} {t}",
                f"pointers {expected}",
                R_DIM,
                where,
            )
        )
    if not missing and head != list(REQUIRED_POINTERS):
        out.append(
            Finding.make(
                Severity.ERROR,
                "DimensionIndexPointer",
                " → ".join(_kw(t) for t in pointers),
                f"{expected} first, in that order",
                R_DIM,
                where,
            )
        )
    for i, d in enumerate(seq):
        p, g = pointers[i], d.get("FunctionalGroupPointer")
        if p in REQUIRED_POINTERS and (g is None or Tag(g) != FRAME_CONTENT):
            found = f"{_kw(g)} {Tag(g)}" if g is not None else "absent"
            out.append(
                Finding.make(
                    Severity.ERROR,
                    "FunctionalGroupPointer",
                    f"{found} for {_kw(p)}",
                    f"FrameContentSequence {FRAME_CONTENT}",
                    R_DIM,
                    f"{where}, dimension item {i + 1}",
                )
            )
    return out


def check_object(parts: list[Dataset]) -> list[Finding]:
    """All rules for one object: a single instance, or the parts of one concatenation."""
    out, cells, where = _object_rules(parts)
    if cells:
        out += _grid(cells, where)
    return out


def _object_rules(parts: list[Dataset]) -> tuple[list[Finding], dict[Cell, int], str]:
    """:func:`check_object` but the completeness of the (position × time) grid, which a series of
    several objects judges over all of them: the findings, the frames' cells, and where they are."""
    out: list[Finding] = []
    for p in parts:
        out += check_instance_header(p)
    if parts[0].SOPClassUID not in ENHANCED:
        return out, {}, ""
    if len(parts) > 1 or parts[0].get("ConcatenationUID"):
        out += check_parts(parts)
    findings, cells, where = _frame_rules(parts)
    return out + findings, cells, where


def _frame_rules(parts: list[Dataset]) -> tuple[list[Finding], dict[Cell, int], str]:
    """Frame Type, Temporal Position Index, Dimension Index Values, duplicates and grid, over all parts."""
    parts = sorted(parts, key=lambda p: int(p.get("InConcatenationNumber") or 0))
    where0 = (
        f"instance {parts[0].SOPInstanceUID}"
        if len(parts) == 1
        else f"concatenation of {parts[0].get('SOPInstanceUIDOfConcatenationSource', '')}"
    )
    acc = _Frames(_pointer_tags(parts[0]))
    for p in parts:
        fg = functional_groups(p)
        offset = int(p.get("ConcatenationFrameOffsetNumber") or 0) if len(parts) > 1 else 0
        matrix = fg.ints("FrameContentSequence", "DimensionIndexValues")
        if matrix is None:
            acc.part_by_frame(fg, offset)
        else:
            acc.part_by_column(fg, offset, matrix)
    bad_type, no_tpi, mismatch, n = acc.bad_type, acc.no_tpi, acc.mismatch, acc.n
    out: list[Finding] = []
    for (found, expected), frames in bad_type.items():
        out.append(
            Finding.make(
                Severity.ERROR,
                "FrameType",
                found,
                expected,
                R_TYPES,
                f"{where0}, {_frames(frames, n)}",
            )
        )
    if no_tpi:
        out.append(
            Finding.make(
                Severity.ERROR,
                "TemporalPositionIndex",
                "absent",
                "present in the Frame Content Sequence of every frame (R+)",
                R_TPI,
                f"{where0}, {_frames(no_tpi, n)}",
            )
        )
    for found, frames in mismatch.items():
        out.append(
            Finding.make(
                Severity.ERROR,
                "DimensionIndexValues",
                found,
                "the Frame Content value of the attribute each pointer names",
                R_VALUES,
                f"{where0}, {_frames(frames, n)}",
            )
        )
    for sid, idx in acc.stack_index.items():
        if len(idx) > 1:
            out.append(
                Finding.make(
                    Severity.ERROR,
                    "DimensionIndexValues",
                    f"Stack ID {sid} → indices {sorted(idx)}",
                    "one index per Stack ID",
                    R_VALUES,
                    where0,
                )
            )
    dupes = [(k, acc.dupes[k]) for k in acc.cells if k in acc.dupes]  # in order of first occurrence
    for k, frames in dupes[:5]:
        out.append(
            Finding.make(
                Severity.ERROR,
                "DimensionIndexValues",
                f"(stack, position, time{', …' * (len(k) > 3)}) {k} in {len(frames)} frames",
                "each cell in one frame",
                R_VALUES,
                f"{where0}, {_frames(frames, n)}",
            )
        )
    return out, ({} if no_tpi else acc.cells), where0


class _Frames:
    """What the frame-level rules collect over the frames of one object, part by part."""

    def __init__(self, pointers: list[int]) -> None:
        self.pointers = pointers
        self.bad_type: dict[Defect, list[int]] = defaultdict(list)
        self.no_tpi: list[int] = []
        self.mismatch: dict[str, list[int]] = defaultdict(list)
        self.stack_index: dict[str, set[int]] = defaultdict(set)
        self.cells: dict[Cell, int] = {}  # (stack, position, time, …) → first frame number
        self.dupes: dict[Cell, list[int]] = {}  # cells in more than one frame → their frame numbers
        self.n = 0

    def _frame_types(self, fg: FunctionalGroups) -> tuple[list[int], list[list[Defect]]]:
        """Per frame, an index into the list of Frame Type defects of each distinct value."""
        mr = fg.column("MRImageFrameTypeSequence", "FrameType")
        ct = fg.column("CTImageFrameTypeSequence", "FrameType")
        seen: dict[tuple[int, int], int] = {}
        founds: list[list[Defect]] = []
        index = []
        for mr_code, ct_code in np.column_stack((mr.codes, ct.codes)).tolist():
            pair = (mr_code, ct_code)
            k = seen.get(pair)
            if k is None:
                k = seen[pair] = len(founds)
                founds.append(_frame_type_defects(mr.values[pair[0]] or ct.values[pair[1]]))
            index.append(k)
        return index, founds

    def _pointer_rules(self, frame_no: int, tpi: Any, pos_no: Any, stack: Any, div: list[int]) -> None:
        """Dimension Index Values against the Frame Content values of one frame (PS3.3 C.7.6.17.1)."""
        pointers = self.pointers
        if pointers and len(div) != len(pointers):
            self.mismatch[f"{len(div)} values for {len(pointers)} pointers"].append(frame_no)
            return
        for j, ptr in enumerate(pointers):  # as many values as pointers, or no pointers at all
            v = div[j]
            if ptr == IN_STACK_POSITION and pos_no != v:
                self.mismatch[f"InStackPositionNumber {pos_no} vs index {v}"].append(frame_no)
            elif ptr == TEMPORAL_INDEX and tpi is not None and tpi != v:
                self.mismatch[f"TemporalPositionIndex {tpi} vs index {v}"].append(frame_no)
            elif ptr == STACK_ID and stack is not _SKIP:
                self.stack_index[str(stack)].add(v)

    def part_by_frame(self, fg: FunctionalGroups, offset: int) -> None:
        """The rules frame by frame (any encoding: the reference for :meth:`part_by_column`)."""
        types, founds = self._frame_types(fg)
        divs = fg.column("FrameContentSequence", "DimensionIndexValues")
        div_ints: dict[int, list[int]] = {}  # per distinct Dimension Index Values: as ints
        tpis = fg.column("FrameContentSequence", "TemporalPositionIndex").tolist()
        pos_nos = fg.column("FrameContentSequence", "InStackPositionNumber").tolist()
        stacks = fg.column("FrameContentSequence", "StackID").tolist()
        codes = divs.codes.tolist()
        for i, t in enumerate(types):  # every column has one entry per frame
            tpi, pos_no, stack, d = tpis[i], pos_nos[i], stacks[i], codes[i]
            self.n += 1
            frame_no = offset + i + 1
            for found in founds[t]:
                self.bad_type[found].append(frame_no)
            if tpi is None:
                self.no_tpi.append(frame_no)
            if d not in div_ints:
                raw = divs.values[d]
                div_ints[d] = [int(raw)] if isinstance(raw, int) else [int(v) for v in raw or []]
            div = div_ints[d]
            self._pointer_rules(frame_no, tpi, pos_no, stack, div)
            self._add_cell((str(stack), pos_no, tpi, *div[3:]), frame_no)

    def _add_cell(self, key: Cell, frame_no: int) -> None:
        if key in self.cells:
            self.dupes.setdefault(key, [self.cells[key]]).append(frame_no)
        else:
            self.cells[key] = frame_no

    def part_by_column(self, fg: FunctionalGroups, offset: int, div: np.ndarray) -> None:
        """The same rules with whole columns, given every frame's Dimension Index Values as integers
        (``div``, frames × values): frames that may break a rule are then judged one by one."""
        m = len(fg)
        frame_nos = list(range(offset + 1, offset + m + 1))
        self.n += m
        types, founds = self._frame_types(fg)
        if any(founds):
            for i, t in enumerate(types):
                for found in founds[t]:
                    self.bad_type[found].append(frame_nos[i])
        tpi_col = fg.column("FrameContentSequence", "TemporalPositionIndex")
        tpi = tpi_col.tolist()
        tpi_none = np.array([v is None for v in tpi_col.values])[tpi_col.codes]
        self.no_tpi += np.array(frame_nos)[tpi_none].tolist()
        pos_col = fg.column("FrameContentSequence", "InStackPositionNumber")
        pos_no = pos_col.tolist()
        stack_col = fg.column("FrameContentSequence", "StackID")
        stacks = [str(v) for v in stack_col.values]
        k, pointers = div.shape[1], self.pointers
        if pointers and k != len(pointers):
            self.mismatch[f"{k} values for {len(pointers)} pointers"] += frame_nos
        else:
            suspect = np.zeros(m, bool)
            for j, ptr in enumerate(pointers[:k]):
                if ptr == IN_STACK_POSITION:
                    suspect |= ~_equal(pos_col, div[:, j])
                elif ptr == TEMPORAL_INDEX:
                    suspect |= ~_equal(tpi_col, div[:, j])  # no TPI: judged alone, which skips it
                elif ptr == STACK_ID:
                    self._stack_indices(stacks, stack_col.codes, div[:, j])
            for i in np.flatnonzero(suspect).tolist():
                self._pointer_rules(frame_nos[i], tpi[i], pos_no[i], _SKIP, div[i].tolist())
        stack_per_frame = [stacks[c] for c in stack_col.codes.tolist()]
        rest = div[:, 3:].tolist()  # the further Dimension Index Values of each frame, if any
        for i, frame_no in enumerate(frame_nos):
            self._add_cell((stack_per_frame[i], pos_no[i], tpi[i], *rest[i]), frame_no)

    def _stack_indices(self, stacks: list[str], codes: np.ndarray, values: np.ndarray) -> None:
        """``stack_index[Stack ID] ∪= index`` for every frame, in order of first occurrence."""
        for code, value in dict.fromkeys(map(tuple, np.column_stack((codes, values)).tolist())):
            self.stack_index[stacks[code]].add(value)


_SKIP = object()  # no Stack ID: its indices were collected for the whole part


def _equal(col: Column, values: np.ndarray) -> np.ndarray:
    """Per frame: is the column's value the integer in ``values``? (False where unsure: judged alone.)"""
    exact = [type(v) is int and -(2**63) <= v < 2**63 for v in col.values]  # fits in int64
    # the placeholder 0 of a value that is not exact is masked out by ``exact`` (no mutant of it can matter)
    ints = np.array([v if exact[i] else 0 for i, v in enumerate(col.values)])  # pragma: no mutate
    equal: NDArray[np.bool_] = np.array(exact)[col.codes] & (ints[col.codes] == values)
    return equal


def _frame_type_defects(ft: Any) -> list[Defect]:
    """The Frame Type rules one frame's Frame Type value breaks."""
    values = [ft] if isinstance(ft, str) else (list(ft) if ft else None)
    return _type_defects(values)


def _grid(cells: dict[Cell, Any], where: str) -> list[Finding]:
    by_stack: dict[str, set[Cell]] = defaultdict(set)
    for k in cells:
        by_stack[k[0]].add(k[1:])
    out = []
    for sid, keys in by_stack.items():
        axes = [
            sorted({k[i] for k in keys}, key=lambda v: (v is None, v)) for i in range(len(next(iter(keys))))
        ]
        if all(isinstance(v, int) for v in axes[1]):  # time points 1..max, so whole missing ones are named
            axes[1] = list(range(1, max(axes[1]) + 1))
        missing = [c for c in product(*axes) if c not in keys]
        if missing:
            shown = "; ".join(
                f"position {c[0]}, time {c[1]}" + (f", other {c[2:]}" if len(c) > 2 else "")
                for c in missing[:6]
            )
            out.append(
                Finding.make(
                    Severity.ERROR,
                    "DimensionIndexValues",
                    f"{len(missing)} cell(s) of the {' × '.join(str(len(a)) for a in axes)} grid "
                    f"missing: {shown}{' …' if len(missing) > 6 else ''}",
                    "a frame for every position at every time point",
                    R_VALUES,
                    f"{where}, stack {sid}",
                )
            )
    return out


def _series(headers: list[Dataset]) -> str:
    return f"series {headers[0].get('SeriesInstanceUID', '')}"


def check_series(headers: Iterable[Dataset]) -> list[Finding]:
    """PERF findings for one series (any mix of instances; concatenations are checked as one object)."""
    headers = list(headers)
    candidates = [h for h in headers if is_perfusion_candidate(h)]
    chosen = {id(h) for h in candidates}  # by identity: ``in`` would compare whole datasets
    out: list[Finding] = []
    for h in headers:
        if id(h) not in chosen:
            out.append(
                Finding.make(
                    Severity.INFO,
                    "ImageType",
                    "\\".join(h.get("ImageType") or []) or "absent",
                    "a perfusion object (value 3 PERFUSION) for the PERF rules to apply",
                    R_TYPES,
                    f"instance {h.SOPInstanceUID}: not checked",
                )
            )
    concat = concatenation_groups(candidates)
    in_concat = {id(p) for parts in concat.values() for p in parts}
    objects = list(concat.values()) + [[h] for h in candidates if id(h) not in in_concat]
    classic = [o for o in objects if o[0].SOPClassUID not in ENHANCED]
    enhanced = [o for o in objects if o[0].SOPClassUID in ENHANCED]
    if len(enhanced) == 1:
        out += check_object(enhanced[0])
    elif enhanced:  # the grid is judged over all the objects of the series
        cells: dict[Cell, None] = {}
        for o in enhanced:
            findings, object_cells, _ = _object_rules(o)
            out += findings
            cells.update(dict.fromkeys(object_cells))
        if cells:
            out += _grid(cells, _series(headers))
    if classic:
        uids = sorted({o[0].SOPClassUID.name for o in classic})
        out.append(
            Finding.make(
                Severity.ERROR,
                "SOPClassUID",
                f"{len(classic)} classic image(s): {', '.join(uids)}",
                "one Enhanced MR or Enhanced CT instance",
                R_SOP,
                _series(headers),
            )
        )
    if len(enhanced) > 1:
        out.append(
            Finding.make(
                Severity.ERROR,
                "SOPInstanceUID",
                f"{len(enhanced)} separate Enhanced instances",
                "all perfusion images in a single instance (or one concatenation)",
                R_SINGLE,
                _series(headers),
            )
        )
    return out


def check_dataset(ds: Dataset) -> list[Finding]:
    """PERF findings for one instance on its own, as the node stores it.

    A part of a concatenation, or an instance holding a single time point, is checked for its own header
    and frames only; the completeness of the concatenation and of the grid, and the single-instance
    rule, are questions for the whole series (:func:`check_series`).
    """
    if not is_perfusion_candidate(ds):
        return []
    out = check_instance_header(ds)
    if ds.SOPClassUID in ENHANCED:
        findings, cells, where = _frame_rules([ds])
        out += findings
        one_time_point = len({k[2] for k in cells}) == 1  # likely one instance per time point
        if cells and not ds.get("ConcatenationUID") and not one_time_point:
            out += _grid(cells, where)
    return out
