"""The raw-bytes reader of per-frame functional groups agrees with pydicom's parsed sequences."""

from __future__ import annotations

import pydicom
import pytest

from perfnode.dicom.frames import frame_table
from perfnode.dicom.groups import FunctionalGroups
from perfnode.phantoms import Size, make
from tests.dicom import sample


def tables(path, raw: bool = True):
    fast = pydicom.dcmread(path, defer_size=1 << 20)
    slow = pydicom.dcmread(path)
    _ = slow.PerFrameFunctionalGroupsSequence[0]  # parsed by pydicom: the fallback path
    assert (FunctionalGroups(fast).raw is not None) == raw and FunctionalGroups(slow).raw is None
    return frame_table(fast), frame_table(slow)


@pytest.mark.parametrize("technique", ["dsc", "ctp", "dce", "asl", "ivim"])
def test_raw_and_parsed_frame_tables_agree(tmp_path, technique):
    _, files = make(technique, "single", tmp_path, size=Size(nx=6, ny=6, nz=2, nt=4), break_rule="shuffled")
    for path in files:
        fast, slow = tables(path)
        assert fast == slow
        assert all(f.times for f in fast) and (technique == "ctp" or any(f.extra for f in fast))


def test_raw_reader_on_a_real_sample():
    # undefined-length sequences: pydicom parses them while reading, so both paths are pydicom's
    fast, slow = tables(sample("eCT_Supplemental.dcm"), raw=False)
    assert fast == slow and len(fast) == 2


def test_values_per_frame_override_shared(tmp_path):
    _, files = make(
        "dsc", "single", tmp_path, size=Size(nx=6, ny=6, nz=2, nt=3), break_rule="frame-type-value1", seed=4
    )
    fg = FunctionalGroups(pydicom.dcmread(files[0], defer_size=1 << 20))
    types = [fg.value(i, "MRImageFrameTypeSequence", "FrameType") for i in range(len(fg))]
    assert sum(t[0] == "DERIVED" for t in types) == 1 and sum(t[0] == "ORIGINAL" for t in types) == 5
    assert fg.value(0, "PixelMeasuresSequence", "PixelSpacing") == [2.0, 2.0]
    assert fg.value(0, "FrameContentSequence", "DimensionIndexValues") is not None
