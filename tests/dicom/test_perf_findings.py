"""The exact text of the PERF findings (tag, keyword, found, expected, rule and where: what a user reads),
and the corners of the frame-level rules that the broken phantoms do not reach: more than eight frames,
per-instance checks, value counts, a fourth dimension, many duplicates. Each frame-level case is judged
on both readings of an object: the columnar one (raw bytes) and the frame-by-frame one (parsed items)."""

from __future__ import annotations

import re
from copy import deepcopy

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from perfnode.dicom.frames import expand
from perfnode.dicom.groups import Column
from perfnode.dicom.perf import _equal, check_dataset, check_series, is_perfusion_candidate
from perfnode.phantoms import RULES, Size, make

SIZE = Size(nx=8, ny=8, nz=3, nt=5)
UID = re.compile(r"1\.2\.826\.0\.1\.3680043\.[\d.]+")  # generated UIDs (phantoms and pydicom)


def _text(findings) -> list[str]:
    """``str`` of each finding, generated UIDs as ``<uid>``, a run of equal ones as one ``… ×n``."""
    out: list[str] = []
    counts: list[int] = []
    for f in findings:
        s = UID.sub("<uid>", str(f))
        if out and out[-1] == s:
            counts[-1] += 1
        else:
            out.append(s)
            counts.append(1)
    return [s + (f" ×{n}" if n > 1 else "") for s, n in zip(out, counts, strict=True)]


def _readings(paths) -> tuple[list[Dataset], list[Dataset]]:
    """The headers as read (per-frame items still raw bytes) and with every sequence parsed by pydicom."""
    raw = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    parsed = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    for ds in parsed:
        if "PerFrameFunctionalGroupsSequence" in ds:
            _ = ds.PerFrameFunctionalGroupsSequence[0]
    return raw, parsed


def _series(tmp_path, change=None, shape="single", technique="dsc", size=SIZE):
    """The phantom's first series, changed in place by ``change(datasets)``; its file paths."""
    _, files = make(technique, shape, tmp_path, size=size, seed=3)
    paths = [f for f in files if f.parent.name == "series01"]
    if change is not None:
        dss = [pydicom.dcmread(p) for p in paths]
        change(dss)
        for ds, p in zip(dss, paths, strict=True):
            ds.save_as(p, enforce_file_format=True)
    return paths


def _both(paths, check=check_series):
    raw, parsed = _readings(paths)
    a = _text(check(raw))
    b = _text(check(parsed))
    assert a == b, (a, b)
    return a


def _frame_contents(ds: Dataset) -> list[Dataset]:
    return [item.FrameContentSequence[0] for item in ds.PerFrameFunctionalGroupsSequence]


def _drop_frames(ds: Dataset, gone: list[int]) -> None:
    """Leave out frames ``gone`` (0-based) with their pixels."""
    n = ds.Rows * ds.Columns * ds.BitsAllocated // 8
    keep = [i for i in range(int(ds.NumberOfFrames)) if i not in gone]
    ds.PerFrameFunctionalGroupsSequence = Sequence([ds.PerFrameFunctionalGroupsSequence[i] for i in keep])
    ds.PixelData = b"".join(ds.PixelData[i * n:(i + 1) * n] for i in keep)
    ds.NumberOfFrames = len(keep)


GOLDEN: dict[tuple[str, str], list[str]] = {
    ('dsc', 'classic-sop-class'): [
        ('ERROR: (0008,0016) SOPClassUID [series <uid>]: found 15 classic image(s): MR Image Storage; '
         'expected one Enhanced MR or Enhanced CT instance (IHE RAD TF-2 Table 4.8-6)'),
    ],
    ('dsc', 'concat-attribute'): [
        ('ERROR: (0008,103E) SeriesDescription [concatenation of <uid>]: found DSC perfusion (changed) '
         'in part 2; expected DSC perfusion as in part 1 (PS3.3 C.7.6.16.2.2.4)'),
    ],
    ('dsc', 'concat-offset'): [
        ('ERROR: (0020,9228) ConcatenationFrameOffsetNumber [part 2 (<uid>)]: found 6; expected 5 '
         '(PS3.3 C.7.6.16.2.2.4)'),
    ],
    ('dsc', 'concat-part-missing'): [
        ('ERROR: (0020,9162) InConcatenationNumber [concatenation of <uid>]: found part(s) [2] of 3 '
         'missing; expected every part 1..3 (PS3.3 C.7.6.16.2.2.4)'),
        ('ERROR: (0020,9157) DimensionIndexValues [concatenation of <uid>, stack 1]: found 5 cell(s) of '
         'the 3 × 5 grid missing: position 1, time 3; position 1, time 4; position 2, time 3; position '
         '3, time 2; position 3, time 3; expected a frame for every position at every time point (PS3.3 '
         'C.7.6.17.1)'),
    ],
    ('dsc', 'concat-source'): [
        ('ERROR: (0020,0242) SOPInstanceUIDOfConcatenationSource [concatenation of <uid>]: found <uid> '
         '/ <uid>; expected one source SOP Instance UID for every part (PS3.3 C.7.6.16.2.2.4)'),
    ],
    ('dsc', 'concat-uid'): [
        ('ERROR: (0020,9161) ConcatenationUID [concatenation of <uid>]: found <uid> / <uid>; expected '
         'one Concatenation UID for every part (PS3.3 C.7.6.16.2.2.4)'),
    ],
    ('dsc', 'contrast-missing'): [
        ('WARNING: (0018,0012) ContrastBolusAgentSequence [instance <uid>]: found absent; expected the '
         'contrast agent, for display (IHE RAD TF-2 Table 4.16.4.2.2.7-1) ×3'),
    ],
    ('dsc', 'dimension-group'): [
        ('ERROR: (0020,9167) FunctionalGroupPointer [instance <uid>, dimension item 2]: found '
         'PlanePositionSequence (0020,9113) for InStackPositionNumber; expected FrameContentSequence '
         '(0020,9111) (IHE RAD TF-2 4.8.4.1.2.5.2) ×3'),
    ],
    ('dsc', 'dimension-missing'): [
        ('ERROR: (0020,9165) DimensionIndexPointer [instance <uid>]: found no pointer to '
         'TemporalPositionIndex (0020,9128); expected pointers StackID → InStackPositionNumber → '
         'TemporalPositionIndex (IHE RAD TF-2 4.8.4.1.2.5.2) ×3'),
    ],
    ('dsc', 'dimension-order'): [
        ('ERROR: (0020,9165) DimensionIndexPointer [instance <uid>]: found TemporalPositionIndex → '
         'InStackPositionNumber → StackID; expected StackID → InStackPositionNumber → '
         'TemporalPositionIndex first, in that order (IHE RAD TF-2 4.8.4.1.2.5.2) ×3'),
    ],
    ('dsc', 'duplicate-frame'): [
        ('ERROR: (0020,9157) DimensionIndexValues [concatenation of <uid>, frames 11, 16 (2 of 16)]: '
         "found (stack, position, time) ('1', 2, 4) in 2 frames; expected each cell in one frame (PS3.3 "
         'C.7.6.17.1)'),
    ],
    ('dsc', 'frame-type-value1'): [
        ('ERROR: (0008,9007) FrameType [concatenation of <uid>, frame 1 (1 of 15)]: found value 1 '
         'DERIVED; expected value 1 ORIGINAL (IHE RAD TF-2 Table 4.8.4.1.2.5.2-1)'),
    ],
    ('dsc', 'frame-type-value3'): [
        ('ERROR: (0008,9007) FrameType [concatenation of <uid>, frame 1 (1 of 15)]: found value 3 '
         'OTHER; expected value 3 PERFUSION (IHE RAD TF-2 Table 4.8.4.1.2.5.2-1)'),
    ],
    ('dsc', 'image-type-value1'): [
        ('ERROR: (0008,0008) ImageType [instance <uid>]: found value 1 DERIVED; expected value 1 '
         'ORIGINAL (IHE RAD TF-2 Table 4.8.4.1.2.5.2-1) ×3'),
    ],
    ('dsc', 'image-type-value3'): [
        ('ERROR: (0008,0008) ImageType [instance <uid>]: found value 3 OTHER; expected value 3 '
         'PERFUSION (IHE RAD TF-2 Table 4.8.4.1.2.5.2-1) ×3'),
    ],
    ('dsc', 'index-values-mismatch'): [
        ('ERROR: (0020,9157) DimensionIndexValues [concatenation of <uid>, frame 1 (1 of 15)]: found '
         'InStackPositionNumber 1 vs index 101; expected the Frame Content value of the attribute each '
         'pointer names (PS3.3 C.7.6.17.1)'),
    ],
    ('dsc', 'missing-frame'): [
        ('ERROR: (0020,9157) DimensionIndexValues [concatenation of <uid>, stack 1]: found 1 cell(s) of '
         'the 3 × 5 grid missing: position 3, time 5; expected a frame for every position at every time '
         'point (PS3.3 C.7.6.17.1)'),
    ],
    ('dsc', 'not-single-instance'): [
        ('ERROR: (0008,0018) SOPInstanceUID [series <uid>]: found 5 separate Enhanced instances; '
         'expected all perfusion images in a single instance (or one concatenation) (IHE RAD TF-2 '
         '4.8.4.1.2.5.2)'),
    ],
    ('dsc', 'route-missing'): [
        ('WARNING: (0018,0014) ContrastBolusAdministrationRouteSequence [instance <uid>, agent item 1]: '
         'found absent; expected the administration route, for display (IHE RAD TF-2 Table '
         '4.16.4.2.2.7-1) ×3'),
    ],
    ('dsc', 'shuffled'): [],
    ('dsc', 'temporal-index-missing'): [
        ('ERROR: (0020,9128) TemporalPositionIndex [concatenation of <uid>, frame 1 (1 of 15)]: found '
         'absent; expected present in the Frame Content Sequence of every frame (R+) (IHE RAD TF-2 '
         'Table 4.8.4.1.2.5.2-2)'),
    ],
    ('ctp', 'frame-type-value1'): [
        ('ERROR: (0008,9007) FrameType [concatenation of <uid>, frame 1 (1 of 15)]: found value 1 '
         'DERIVED; expected value 1 ORIGINAL (IHE RAD TF-2 Table 4.8.4.1.2.5.2-1)'),
    ],
    ('ctp', 'frame-type-value3'): [
        ('ERROR: (0008,9007) FrameType [concatenation of <uid>, frame 1 (1 of 15)]: found value 3 '
         'OTHER; expected value 3 PERFUSION (IHE RAD TF-2 Table 4.8.4.1.2.5.2-1)'),
    ],
    ('ctp', 'contrast-missing'): [
        ('WARNING: (0018,0012) ContrastBolusAgentSequence [instance <uid>]: found absent; expected the '
         'contrast agent, for display (IHE RAD TF-2 Table 4.16.4.2.2.7-1) ×3'),
    ],
    ('ctp', 'route-missing'): [
        ('WARNING: (0018,0014) ContrastBolusAdministrationRouteSequence [instance <uid>, agent item 1]: '
         'found absent; expected the administration route, for display (IHE RAD TF-2 Table '
         '4.16.4.2.2.7-1) ×3'),
    ],
    ('ctp', 'duplicate-frame'): [
        ('ERROR: (0020,9157) DimensionIndexValues [concatenation of <uid>, frames 11, 16 (2 of 16)]: '
         "found (stack, position, time) ('1', 2, 4) in 2 frames; expected each cell in one frame (PS3.3 "
         'C.7.6.17.1)'),
    ],
    ('ctp', 'concat-attribute'): [
        ('ERROR: (0008,103E) SeriesDescription [concatenation of <uid>]: found CTP perfusion (changed) '
         'in part 2; expected CTP perfusion as in part 1 (PS3.3 C.7.6.16.2.2.4)'),
    ],
}


@pytest.mark.parametrize(("technique", "rule"), list(GOLDEN))
def test_each_broken_rule_reads_exactly(tmp_path, technique, rule):
    make(technique, RULES[rule].shape or "concat", tmp_path, break_rule=rule, size=SIZE, seed=11)
    assert _both(expand([tmp_path / "series01"])) == GOLDEN[technique, rule]


POINTER = "ERROR: (0020,9165) DimensionIndexPointer [instance <uid>]"
DIV = "ERROR: (0020,9157) DimensionIndexValues [instance <uid>"
CONTENT = "expected the Frame Content value of the attribute each pointer names (PS3.3 C.7.6.17.1)"
GRID = "expected a frame for every position at every time point (PS3.3 C.7.6.17.1)"
TPI_ABSENT = ("ERROR: (0020,9128) TemporalPositionIndex [instance <uid>, {}]: found absent; expected present "
              "in the Frame Content Sequence of every frame (R+) (IHE RAD TF-2 Table 4.8.4.1.2.5.2-2)")


@pytest.mark.parametrize(("gone", "named", "shared_cells"), [
    (8, "frames 1, 2, 3, 4, 5, 6, 7, 8 (8 of 15)", 3),
    (9, "frames 1, 2, 3, 4, 5, 6, 7, 8 … (9 of 15)", 3),
    (2, "frames 1, 2 (2 of 15)", 0),
])
def test_frames_are_named_up_to_eight(tmp_path, gone, named, shared_cells):
    def change(dss):
        for fc in _frame_contents(dss[0])[:gone]:
            del fc.TemporalPositionIndex

    # frames without a time point share (stack, position, None) cells; the grid is not judged without them
    found = _both(_series(tmp_path, change))
    assert found[0] == TPI_ABSENT.format(named)
    assert len(found) == 1 + shared_cells and all("in one frame" in f for f in found[1:])


def test_per_instance_check_judges_the_grid_of_a_whole_instance(tmp_path):
    paths = _series(tmp_path, lambda dss: _drop_frames(dss[0], [4]))
    assert _both(paths, lambda headers: check_dataset(headers[0])) == [
        f"{DIV}, stack 1]: found 1 cell(s) of the 3 × 5 grid missing: position 2, time 2; {GRID}"]


def test_per_instance_check_leaves_the_grid_of_one_time_point_to_the_series(tmp_path):
    paths = _series(tmp_path, lambda dss: _drop_frames(dss[0], [1]), shape="per-time")
    assert _both(paths[:1], lambda headers: check_dataset(headers[0])) == []
    assert _both(paths[1:2], lambda headers: check_dataset(headers[0])) == []
    assert "grid missing: position 2, time 1;" in _both(paths)[0]


def test_per_instance_check_of_other_objects(tmp_path):
    classic = _series(tmp_path, shape="classic")
    (ds,) = _readings(classic[:1])[0]
    assert _text(check_dataset(ds)) == [
        "ERROR: (0008,0016) SOPClassUID [instance <uid>]: found 1.2.840.10008.5.1.4.1.1.4 "
        "(MR Image Storage); expected Enhanced MR or Enhanced CT Image Storage (IHE RAD TF-2 Table 4.8-6)"]
    del ds.TemporalPositionIdentifier
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    assert not is_perfusion_candidate(ds)
    assert check_dataset(ds) == []
    assert _text(check_series([ds])) == [
        "INFO: (0008,0008) ImageType [instance <uid>: not checked]: found ORIGINAL\\PRIMARY\\M; "
        "expected a perfusion object (value 3 PERFUSION) for the PERF rules to apply "
        "(IHE RAD TF-2 Table 4.8.4.1.2.5.2-1)"]


def _pointer_index(ds: Dataset, keyword: str) -> int:
    tag = pydicom.datadict.tag_for_keyword(keyword)
    return [int(d.DimensionIndexPointer) for d in ds.DimensionIndexSequence].index(tag)


def test_dimension_index_values_must_count_one_per_pointer(tmp_path):
    def one(dss):
        fc = _frame_contents(dss[0])[6]
        fc.DimensionIndexValues = list(fc.DimensionIndexValues)[:2]

    def every(dss):
        for fc in _frame_contents(dss[0]):
            fc.DimensionIndexValues = list(fc.DimensionIndexValues)[:2]

    assert _both(_series(tmp_path / "one", one)) == [
        f"{DIV}, frame 7 (1 of 15)]: found 2 values for 3 pointers; {CONTENT}"]
    assert _both(_series(tmp_path / "every", every)) == [
        f"{DIV}, frames 1, 2, 3, 4, 5, 6, 7, 8 … (15 of 15)]: found 2 values for 3 pointers; {CONTENT}"]

    def every_part(dss):
        for ds in dss:
            for fc in _frame_contents(ds):
                fc.DimensionIndexValues = list(fc.DimensionIndexValues)[:2]

    def no_tpi_in_two_parts(dss):
        del _frame_contents(dss[0])[1].TemporalPositionIndex
        del _frame_contents(dss[2])[3].TemporalPositionIndex

    assert _both(_series(tmp_path / "parts", every_part, shape="concat")) == [
        "ERROR: (0020,9157) DimensionIndexValues [concatenation of <uid>, frames 1, 2, 3, 4, 5, 6, 7, 8 … "
        f"(15 of 15)]: found 2 values for 3 pointers; {CONTENT}"]
    assert _both(_series(tmp_path / "tpi", no_tpi_in_two_parts, shape="concat"))[0] == (
        TPI_ABSENT.replace("instance", "concatenation of").format("frames 2, 14 (2 of 15)"))


def test_one_index_per_stack_id_names_the_stack(tmp_path):
    def change(dss):
        j = _pointer_index(dss[0], "StackID")
        fc = _frame_contents(dss[0])[2]
        div = list(fc.DimensionIndexValues)
        div[j] = div[j] + 1
        fc.DimensionIndexValues = div

    def and_times(dss):  # two frames judged alone for their time, one of them the one with index 2
        change(dss)
        t = _pointer_index(dss[0], "TemporalPositionIndex")
        for i in (2, 5):
            fc = _frame_contents(dss[0])[i]
            div = list(fc.DimensionIndexValues)
            div[t] = div[t] + 1
            fc.DimensionIndexValues = div

    assert _both(_series(tmp_path / "one", change)) == [
        f"{DIV}]: found Stack ID 1 → indices [1, 2]; expected one index per Stack ID (PS3.3 C.7.6.17.1)"]
    assert _both(_series(tmp_path / "times", and_times)) == [
        f"{DIV}, frame 3 (1 of 15)]: found TemporalPositionIndex 1 vs index 2; {CONTENT}",
        f"{DIV}, frame 6 (1 of 15)]: found TemporalPositionIndex 2 vs index 3; {CONTENT}",
        f"{DIV}]: found Stack ID 1 → indices [1, 2]; expected one index per Stack ID (PS3.3 C.7.6.17.1)"]


def test_a_single_dimension_index_value_per_frame(tmp_path):
    def change(dss):
        ds = dss[0]
        tpi = ds.DimensionIndexSequence[_pointer_index(ds, "TemporalPositionIndex")]
        ds.DimensionIndexSequence = Sequence([tpi])
        for i, fc in enumerate(_frame_contents(ds)):
            fc.DimensionIndexValues = fc.TemporalPositionIndex + (i == 4)

    pointers = ("expected pointers StackID → InStackPositionNumber → TemporalPositionIndex "
                "(IHE RAD TF-2 4.8.4.1.2.5.2)")
    assert _both(_series(tmp_path, change)) == [
        f"{POINTER}: found no pointer to StackID (0020,9056); {pointers}",
        f"{POINTER}: found no pointer to InStackPositionNumber (0020,9057); {pointers}",
        f"{DIV}, frame 5 (1 of 15)]: found TemporalPositionIndex 2 vs index 3; {CONTENT}"]


def test_a_fourth_dimension_is_part_of_each_cell(tmp_path):
    def change(dss):
        ds = dss[0]
        extra = deepcopy(ds.DimensionIndexSequence[0])
        extra.DimensionIndexPointer = pydicom.tag.Tag("FrameAcquisitionNumber")
        ds.DimensionIndexSequence.append(extra)
        fcs = _frame_contents(ds)
        for fc in fcs:
            fc.DimensionIndexValues = [*fc.DimensionIndexValues, 7]
        fcs[5].DimensionIndexValues = fcs[6].DimensionIndexValues  # frame 6 in frame 7's cell
        fcs[5].InStackPositionNumber = fcs[6].InStackPositionNumber
        fcs[5].TemporalPositionIndex = fcs[6].TemporalPositionIndex
        _drop_frames(ds, [0])

    assert _both(_series(tmp_path, change)) == [
        f"{DIV}, frames 5, 6 (2 of 14)]: found (stack, position, time, …) ('1', 1, 3, 7) in 2 frames; "
        "expected each cell in one frame (PS3.3 C.7.6.17.1)",
        f"{DIV}, stack 1]: found 2 cell(s) of the 3 × 5 × 1 grid missing: position 1, time 1, other (7,); "
        f"position 3, time 2, other (7,); {GRID}"]


def test_long_lists_are_cut(tmp_path):
    def change(dss):
        ds = dss[0]
        fcs = _frame_contents(ds)
        for fc, other in zip(fcs[:7], fcs[7:14], strict=True):  # 7 cells twice, 7 cells empty
            fc.DimensionIndexValues = other.DimensionIndexValues
            fc.InStackPositionNumber = other.InStackPositionNumber
            fc.TemporalPositionIndex = other.TemporalPositionIndex

    # frames, (position, time): the first five of the seven cells held twice
    twice = [("1, 8", "2, 3"), ("2, 9", "3, 3"), ("3, 10", "1, 4"), ("4, 11", "2, 4"), ("5, 12", "3, 4")]
    assert _both(_series(tmp_path, change)) == [
        f"{DIV}, frames {f} (2 of 15)]: found (stack, position, time) ('1', {c}) in 2 frames; "
        "expected each cell in one frame (PS3.3 C.7.6.17.1)" for f, c in twice
    ] + [f"{DIV}, stack 1]: found 7 cell(s) of the 3 × 5 grid missing: position 1, time 1; position 1, "
         "time 2; position 1, time 3; position 2, time 1; position 2, time 2; position 3, time 1 …; " + GRID]


def test_header_corners(tmp_path):
    ds = _readings(_series(tmp_path))[0][0]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    del ds.DimensionIndexSequence[0].FunctionalGroupPointer
    other = deepcopy(ds)
    del other.ImageType
    del other.DimensionIndexSequence
    assert _text(check_dataset(ds)) == [
        "ERROR: (0008,0008) ImageType [instance <uid>]: found value 3 absent; expected value 3 PERFUSION "
        "(IHE RAD TF-2 Table 4.8.4.1.2.5.2-1)",
        "ERROR: (0020,9167) FunctionalGroupPointer [instance <uid>, dimension item 1]: found absent for "
        "StackID; expected FrameContentSequence (0020,9111) (IHE RAD TF-2 4.8.4.1.2.5.2)"]
    assert _text(check_dataset(other)) == [
        "ERROR: (0008,0008) ImageType [instance <uid>]: found absent; expected "
        "ORIGINAL\\PRIMARY\\PERFUSION\\… (IHE RAD TF-2 Table 4.8.4.1.2.5.2-1)",
        "ERROR: (0020,9222) DimensionIndexSequence [instance <uid>]: found absent; expected StackID → "
        "InStackPositionNumber → TemporalPositionIndex (IHE RAD TF-2 4.8.4.1.2.5.2)"]



def test_a_frame_without_its_position_is_a_cell_of_its_own(tmp_path):
    def change(dss):
        del _frame_contents(dss[0])[3].InStackPositionNumber

    assert _both(_series(tmp_path, change)) == [
        f"{DIV}, frame 4 (1 of 15)]: found InStackPositionNumber None vs index 1; {CONTENT}",
        f"{DIV}, stack 1]: found 5 cell(s) of the 4 × 5 grid missing: position 1, time 2; position None, "
        f"time 1; position None, time 3; position None, time 4; position None, time 5; {GRID}"]



def _enhanced_variant(ds: Dataset, image_type3: str, frame_type3: str, tpi_pointer: bool) -> Dataset:
    ds = deepcopy(ds)
    ds.ImageType = ["ORIGINAL", "PRIMARY", image_type3]
    shared = ds.SharedFunctionalGroupsSequence[0]
    for kw in ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence"):
        if kw in shared:
            shared[kw].value[0].FrameType = ["ORIGINAL", "PRIMARY", frame_type3, "NONE"]
    if not tpi_pointer:
        ds.DimensionIndexSequence = Sequence(ds.DimensionIndexSequence[:2])
    return ds


@pytest.mark.parametrize("technique", ["dsc", "ctp"])
def test_what_counts_as_a_perfusion_object(tmp_path, technique):
    for enhanced in (r[0] for r in _readings(_series(tmp_path / "e", technique=technique))):
        assert is_perfusion_candidate(_enhanced_variant(enhanced, "OTHER", "PERFUSION", False))  # Frame Type
        assert is_perfusion_candidate(_enhanced_variant(enhanced, "OTHER", "OTHER", True))  # its pointer
        assert is_perfusion_candidate(_enhanced_variant(enhanced, "PERFUSION", "OTHER", False))  # Image Type
        assert not is_perfusion_candidate(_enhanced_variant(enhanced, "OTHER", "OTHER", False))
        first = _enhanced_variant(enhanced, "OTHER", "OTHER", False)  # the first frame's own Frame Type
        kw = next(k for k in ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence")
                  if k in first.SharedFunctionalGroupsSequence[0])
        item = deepcopy(first.SharedFunctionalGroupsSequence[0][kw].value[0])
        item.FrameType = ["ORIGINAL", "PRIMARY", "PERFUSION", "NONE"]
        second, one = deepcopy(first), deepcopy(first)
        setattr(first.PerFrameFunctionalGroupsSequence[0], kw, Sequence([item]))
        setattr(second.PerFrameFunctionalGroupsSequence[1], kw, Sequence([item]))
        one.SharedFunctionalGroupsSequence[0][kw].value[0].FrameType = "PERFUSION"  # one value: no value 3
        assert is_perfusion_candidate(first)
        assert not is_perfusion_candidate(second)
        assert not is_perfusion_candidate(one)
    classic = _readings(_series(tmp_path / "c", shape="classic", technique=technique))[0][0]
    assert is_perfusion_candidate(classic)
    classic.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert is_perfusion_candidate(classic)  # by its Temporal Position Identifier
    del classic.TemporalPositionIdentifier
    assert not is_perfusion_candidate(classic)
    classic.ImageType = ["ORIGINAL", "PRIMARY", "PERFUSION"]
    assert is_perfusion_candidate(classic)
    classic.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture: never by its frames
    classic.ImageType = ["DERIVED", "SECONDARY"]
    classic.TemporalPositionIdentifier = 1
    assert not is_perfusion_candidate(classic)


def test_frames_of_a_concatenation_are_numbered_across_its_parts(tmp_path):
    _, files = make("dsc", "concat", tmp_path, size=SIZE, seed=3, parts=2)
    ds = pydicom.dcmread(files[1])
    del _frame_contents(ds)[2].TemporalPositionIndex
    ds.save_as(files[1], enforce_file_format=True)
    whole = _both(files)
    part = _both(files[1:], lambda headers: check_dataset(headers[0]))
    assert whole == [TPI_ABSENT.replace("instance", "concatenation of").format("frame 11 (1 of 15)")]
    assert part == [TPI_ABSENT.format("frame 3 (1 of 7)")]


def test_an_unknown_pointer_is_named_by_its_tag(tmp_path):
    ds = _readings(_series(tmp_path))[0][0]
    ds.DimensionIndexSequence[1].FunctionalGroupPointer = 0x00191010
    assert _text(check_dataset(ds)) == [
        "ERROR: (0020,9167) FunctionalGroupPointer [instance <uid>, dimension item 2]: found (0019,1010) "
        "(0019,1010) for InStackPositionNumber; expected FrameContentSequence (0020,9111) "
        "(IHE RAD TF-2 4.8.4.1.2.5.2)"]



def test_frame_type_absent_in_every_frame(tmp_path):
    def change(dss):
        del dss[0].SharedFunctionalGroupsSequence[0].MRImageFrameTypeSequence

    assert _both(_series(tmp_path, change)) == [
        "ERROR: (0008,9007) FrameType [instance <uid>, frames 1, 2, 3, 4, 5, 6, 7, 8 … (15 of 15)]: found "
        "absent; expected ORIGINAL\\PRIMARY\\PERFUSION\\… (IHE RAD TF-2 Table 4.8.4.1.2.5.2-1)"]


def test_equal_only_for_the_same_int64():
    """The columnar reading skips the frames whose value is surely the integer given; all others are
    judged one by one, so ``_equal`` must never say yes wrongly, and says no where unsure."""
    values = [3, None, "3", 3.0, [3], True, 200, 2**62 + 1, -(2**63), 2**63 - 1, -(2**63) - 1, 2**63]
    given = [3, 3, 3, 3, 3, 1, 200, 2**62, -(2**63), 2**63 - 1, 0, 0]
    col = Column(values, np.arange(len(values))[::-1].copy())  # codes pick the values back to front
    got = _equal(col, np.array(given[::-1], np.int64))
    expected = [True, False, False, False, False, False, True, False, True, True, False, False]
    assert got[::-1].tolist() == expected


def test_series_level_findings(tmp_path):
    mr = _readings(_series(tmp_path / "mr", shape="classic"))[0]
    ct = _readings(_series(tmp_path / "ct", shape="classic", technique="ctp"))[0]
    del mr[0].SeriesInstanceUID  # the series is named after the first header's
    assert _text(check_series([mr[0], ct[0]])) == [
        "ERROR: (0008,0016) SOPClassUID [series ]: found 2 classic image(s): CT Image Storage, MR Image "
        "Storage; expected one Enhanced MR or Enhanced CT instance (IHE RAD TF-2 Table 4.8-6)"]
    per_time = _readings(_series(tmp_path / "pt", shape="per-time"))[0]
    assert _text(check_series(per_time[:2]))[-1] == (
        "ERROR: (0008,0018) SOPInstanceUID [series <uid>]: found 2 separate Enhanced instances; expected all "
        "perfusion images in a single instance (or one concatenation) (IHE RAD TF-2 4.8.4.1.2.5.2)")
    other = deepcopy(mr[0])
    other.ImageType = None
    del other.TemporalPositionIdentifier
    assert _text(check_series([other])) == [
        "INFO: (0008,0008) ImageType [instance <uid>: not checked]: found absent; expected a perfusion "
        "object (value 3 PERFUSION) for the PERF rules to apply (IHE RAD TF-2 Table 4.8.4.1.2.5.2-1)"]


def test_a_dimension_item_without_its_pointer(tmp_path):
    ds = _readings(_series(tmp_path))[0][0]
    blank = deepcopy(ds.DimensionIndexSequence[0])
    del blank.DimensionIndexPointer
    ds.DimensionIndexSequence.insert(0, blank)
    assert _text(check_dataset(ds))[0] == (
        "ERROR: (0020,9165) DimensionIndexPointer [instance <uid>]: found CommandGroupLength → StackID → "
        "InStackPositionNumber → TemporalPositionIndex; expected StackID → InStackPositionNumber → "
        "TemporalPositionIndex first, in that order (IHE RAD TF-2 4.8.4.1.2.5.2)")


def test_values_of_a_fourth_dimension_are_sorted(tmp_path):
    def change(dss):
        ds = dss[0]
        extra = deepcopy(ds.DimensionIndexSequence[0])
        extra.DimensionIndexPointer = pydicom.tag.Tag("FrameAcquisitionNumber")
        ds.DimensionIndexSequence.append(extra)
        for i, fc in enumerate(_frame_contents(ds)):  # 40 before 3 in a set's order: sorted, 3 comes first
            fc.DimensionIndexValues = [*fc.DimensionIndexValues, 3 if i == 14 else 40]

    assert _both(_series(tmp_path, change)) == [
        f"{DIV}, stack 1]: found 15 cell(s) of the 3 × 5 × 2 grid missing: position 1, time 1, other (3,); "
        "position 1, time 2, other (3,); position 1, time 3, other (3,); position 1, time 4, other (3,); "
        f"position 1, time 5, other (3,); position 2, time 1, other (3,) …; {GRID}"]


def test_six_missing_cells_are_all_named(tmp_path):
    paths = _series(tmp_path, lambda dss: _drop_frames(dss[0], [0, 1, 2, 3, 4, 5]))
    assert _both(paths) == [
        f"{DIV}, stack 1]: found 6 cell(s) of the 3 × 5 grid missing: position 1, time 1; position 1, "
        f"time 2; position 2, time 1; position 2, time 2; position 3, time 1; position 3, time 2; {GRID}"]




def test_a_one_valued_frame_type(tmp_path):
    def change(dss):
        item = deepcopy(dss[0].SharedFunctionalGroupsSequence[0].MRImageFrameTypeSequence[0])
        item.FrameType = "ORIGINAL"
        dss[0].PerFrameFunctionalGroupsSequence[4].MRImageFrameTypeSequence = Sequence([item])

    assert _both(_series(tmp_path, change)) == [
        "ERROR: (0008,9007) FrameType [instance <uid>, frame 5 (1 of 15)]: found value 3 absent; expected "
        "value 3 PERFUSION (IHE RAD TF-2 Table 4.8.4.1.2.5.2-1)"]


def test_parts_are_taken_in_concatenation_order(tmp_path):
    """Parts sorted by In-concatenation Number (a part without one first); the object is named after the
    first part's source SOP Instance UID."""
    _, files = make("dsc", "concat", tmp_path, size=SIZE, seed=3, parts=2)
    a, b = (pydicom.dcmread(f) for f in files)
    del b.InConcatenationNumber, b.SOPInstanceUIDOfConcatenationSource  # part 2 now sorts first
    del _frame_contents(a)[1].TemporalPositionIndex
    del _frame_contents(b)[1].TemporalPositionIndex
    for ds, f in ((a, files[0]), (b, files[1])):
        ds.save_as(f, enforce_file_format=True)
    for headers in _readings(files):
        found = [f for f in _text(check_series(headers)) if "TemporalPositionIndex" in f]
        named = TPI_ABSENT.replace("instance <uid>", "concatenation of ")
        assert found == [named.format("frames 10, 2 (2 of 15)")]
