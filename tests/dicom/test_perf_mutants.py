"""PERF rules that a deliberate bug once disabled without any test noticing (issue 16 item 7):
"Temporal Position Index equals its Dimension Index Value", "one index per Stack ID", and the naming of
whole time points that are missing. Each is checked on the columnar (raw bytes) and the frame-by-frame
(parsed) reading."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.sequence import Sequence

from perfnode.dicom.perf import check_series
from perfnode.phantoms import Size, make

SIZE = Size(nx=6, ny=6, nz=3, nt=4)


def _edit(tmp_path, change):
    _, files = make("dsc", "single", tmp_path, size=SIZE, seed=1)
    path = next(f for f in files if f.parent.name == "series01")
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)
    return path


def _both_readings(path):
    raw = pydicom.dcmread(path, defer_size=1 << 20, stop_before_pixels=True)
    parsed = pydicom.dcmread(path, stop_before_pixels=True)
    _ = parsed.PerFrameFunctionalGroupsSequence[0]  # parsed by pydicom: the frame-by-frame path
    return check_series([raw]), check_series([parsed])


def _pointer_index(ds, tag):
    return [int(d.DimensionIndexPointer) for d in ds.DimensionIndexSequence].index(tag)


def test_temporal_position_index_must_equal_its_dimension_index_value(tmp_path):
    def change(ds):
        j = _pointer_index(ds, 0x00209128)
        fc = ds.PerFrameFunctionalGroupsSequence[4].FrameContentSequence[0]
        div = list(fc.DimensionIndexValues)
        div[j] = div[j] % 4 + 1  # another time point's index; TPI itself unchanged
        fc.DimensionIndexValues = div

    for findings in _both_readings(_edit(tmp_path, change)):
        hits = [f for f in findings
                if f.keyword == "DimensionIndexValues" and "TemporalPositionIndex" in f.found]
        assert len(hits) == 1, findings
        assert "frame 5 " in hits[0].where and "vs index" in hits[0].found


def test_one_dimension_index_per_stack_id(tmp_path):
    def change(ds):
        j = _pointer_index(ds, 0x00209056)
        fc = ds.PerFrameFunctionalGroupsSequence[2].FrameContentSequence[0]
        div = list(fc.DimensionIndexValues)
        div[j] = div[j] + 1  # Stack ID "1" given index 2 in this frame only
        fc.DimensionIndexValues = div

    for findings in _both_readings(_edit(tmp_path, change)):
        hits = [f for f in findings if f.expected == "one index per Stack ID"]
        assert len(hits) == 1, findings
        assert "→ indices [1, 2]" in hits[0].found


@pytest.mark.parametrize("gone", [2, 3])
def test_whole_missing_time_points_are_named(tmp_path, gone):
    def change(ds):
        keep = [i for i in ds.PerFrameFunctionalGroupsSequence
                if i.FrameContentSequence[0].TemporalPositionIndex != gone]
        ds.PerFrameFunctionalGroupsSequence = Sequence(keep)
        ds.NumberOfFrames = len(keep)
        frame = ds.Rows * ds.Columns * 2
        ds.PixelData = ds.PixelData[: frame * len(keep)]

    for findings in _both_readings(_edit(tmp_path, change)):
        grid = [f for f in findings if "grid missing" in f.found]
        assert len(grid) == 1, findings
        assert "3 cell(s) of the 3 × 4 grid missing" in grid[0].found
        assert grid[0].found.count(f"time {gone}") == 3
