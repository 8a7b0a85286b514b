"""The one frame reader (dicom/groups.py) on the real vendor layouts: per-frame before shared, private
attributes through their creator, classic images as one frame — against pydicom read directly."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from perfnode.dicom.groups import FunctionalGroups, Private, frame_value, functional_groups
from perfnode.dicom.vendors import GE_B_VALUE, PHILIPS_FG, PHILIPS_LABEL_TYPE, PHILIPS_SCALE_SLOPE
from perfnode.phantoms import Size, make
from tests.real_data import series_files


def test_siemens_pixel_measures_and_orientation_per_frame():
    ds = pydicom.dcmread(series_files("siemens_xa30_bold_enh")[0], stop_before_pixels=True)
    assert "PixelMeasuresSequence" not in ds.SharedFunctionalGroupsSequence[0]
    for i in (0, 17, 32):
        item = ds.PerFrameFunctionalGroupsSequence[i]
        assert frame_value(ds, i, "PixelMeasuresSequence", "PixelSpacing") == \
            list(item.PixelMeasuresSequence[0].PixelSpacing)
        assert frame_value(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient") == \
            list(item.PlaneOrientationSequence[0].ImageOrientationPatient)
    # shared macros still found from a frame
    tr = ds.SharedFunctionalGroupsSequence[0].MRTimingAndRelatedParametersSequence[0].RepetitionTime
    assert float(frame_value(ds, 5, "MRTimingAndRelatedParametersSequence", "RepetitionTime")) == float(tr)


def test_canon_shared_pixel_measures_raw_reading_equals_parsed():
    path = series_files("canon_dwi_enh")[0]
    fast = FunctionalGroups(pydicom.dcmread(path, defer_size=1 << 20, stop_before_pixels=True))
    parsed = pydicom.dcmread(path, stop_before_pixels=True)
    _ = parsed.PerFrameFunctionalGroupsSequence[0]
    slow = FunctionalGroups(parsed)
    assert fast.raw is not None and slow.raw is None  # the columnar byte-level path on a real file
    shared = parsed.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    for path_ in [("PixelMeasuresSequence", "PixelSpacing"),
                  ("PlanePositionSequence", "ImagePositionPatient"),
                  ("MRDiffusionSequence", "DiffusionBValue"),
                  ("FrameContentSequence", "DimensionIndexValues"),
                  ("FrameVOILUTSequence", "WindowCenter")]:
        assert fast.column(*path_).tolist() == slow.column(*path_).tolist(), path_
    assert fast.value(100, "PixelMeasuresSequence", "PixelSpacing") == [float(x) for x in shared]


def test_philips_private_attributes_through_their_creator():
    ds = pydicom.dcmread(series_files("philips_asl_3dpcasl_enh")[0], stop_before_pixels=True)
    fg = functional_groups(ds)
    for i in (0, 111, 112, 223):
        item = ds.PerFrameFunctionalGroupsSequence[i]
        inner = item[item.private_block(0x2005, "Philips MR Imaging DD 005").get_tag(0x0F)].value[0]
        label = inner.private_block(0x2005, "Philips MR Imaging DD 005")[0x29].value
        ss = inner.private_block(0x2005, "Philips MR Imaging DD 001")[0x0E].value
        assert fg.value(i, PHILIPS_FG, PHILIPS_LABEL_TYPE) == label
        assert fg.value(i, PHILIPS_FG, PHILIPS_SCALE_SLOPE) == pytest.approx(ss)
    # a creator that does not reserve a block: nothing, not a wrong element
    assert fg.value(0, PHILIPS_FG, Private("Another Vendor", 0x2005, 0x29)) is None


def test_classic_image_read_as_one_frame():
    ds = pydicom.dcmread(series_files("ge_dwi_classic")[3], stop_before_pixels=True)
    assert frame_value(ds, 0, "MREchoSequence", "EffectiveEchoTime") == float(ds.EchoTime)
    assert frame_value(ds, 0, "PlanePositionSequence", "ImagePositionPatient") == \
        list(ds.ImagePositionPatient)
    assert frame_value(ds, 0, "MRDiffusionSequence", "DiffusionBValue") == float(ds.DiffusionBValue)
    assert int(frame_value(ds, 0, GE_B_VALUE)[0]) == 1000
    epi = pydicom.dcmread(series_files("ge_epi_multiphase_classic")[12], stop_before_pixels=True)
    tpi = frame_value(epi, 0, "FrameContentSequence", "TemporalPositionIndex")
    assert tpi == epi.TemporalPositionIdentifier
    assert float(frame_value(epi, 0, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime")) == \
        float(epi.TriggerTime)


def test_private_attributes_in_raw_defined_length_items(tmp_path):
    """A private functional group in items the columnar path reads (defined lengths), vs pydicom."""
    _, files = make("dsc", "single", tmp_path, size=Size(nx=4, ny=4, nz=2, nt=3))
    ds = pydicom.dcmread(files[0])
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        block = item.private_block(0x0029, "PERFNODE TEST", create=True)
        inner = pydicom.Dataset()
        inner.private_block(0x0029, "PERFNODE TEST", create=True).add_new(0x01, "DS", str(i * 1.5))
        block.add_new(0x10, "SQ", pydicom.Sequence([inner]))
    ds.save_as(files[0], enforce_file_format=True)
    fast = FunctionalGroups(pydicom.dcmread(files[0], defer_size=1 << 20))
    assert fast.raw is not None
    path = (Private("PERFNODE TEST", 0x0029, 0x10), Private("PERFNODE TEST", 0x0029, 0x01))
    values = fast.column(*path).tolist()
    np.testing.assert_allclose(values, np.arange(len(values)) * 1.5)
