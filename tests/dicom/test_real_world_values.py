"""Per-frame rescale: Modality rescale where a frame has one, else its Real World Value Mapping."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from perfnode.dicom.frames import assemble
from perfnode.phantoms import Size, make


def test_frames_without_rescale_use_their_real_world_value_mapping(tmp_path):
    _, files = make("dsc", "single", tmp_path, size=Size(nx=4, ny=4, nz=2, nt=3), seed=2)
    path = next(f for f in files if f.parent.name == "series01")
    ds = pydicom.dcmread(path)
    ref = assemble([path])
    shared = ds.SharedFunctionalGroupsSequence[0]
    for kw in ("PixelValueTransformationSequence",):
        if kw in shared:
            del shared[kw]
    slopes = []
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        if "PixelValueTransformationSequence" in item:
            del item.PixelValueTransformationSequence
        rwv = Dataset()
        rwv.RealWorldValueSlope, rwv.RealWorldValueIntercept = 0.5 + i, -3.0
        rwv.RealWorldValueFirstValueMapped, rwv.RealWorldValueLastValueMapped = 0, 65535
        item.RealWorldValueMappingSequence = Sequence([rwv])
        slopes.append(0.5 + i)
    for kw in ("RescaleSlope", "RescaleIntercept"):
        if kw in ds:
            del ds[kw]
    ds.save_as(path, enforce_file_format=True)
    v = assemble([path])
    px = pydicom.dcmread(path).pixel_array
    for t in range(3):
        for z in range(2):
            _, frame = v.source_frame(t, z)
            want = px[frame - 1].astype(np.float32) * np.float32(slopes[frame - 1]) - np.float32(3.0)
            np.testing.assert_array_equal(v.data[t, z], want)
    assert v.data.shape == ref.data.shape
