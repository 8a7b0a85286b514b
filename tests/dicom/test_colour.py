"""Colour renderings: valid Multi-frame True Color SC, labelled not-for-quantitative-use, colours right."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pydicom
import pytest

from perfnode.dicom.colour import MULTIFRAME_TRUE_COLOR_SC, NOT_FOR_QUANTITATIVE_USE, colourise, render_colour
from perfnode.dicom.parametric_map import build_parametric_maps, frame_order
from tests.dicom.test_parametric_map import classic_series, dciodvfy_errors


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    src = classic_series(nz=3, nt=2, rows=20, cols=16)
    cbf = np.tile(np.linspace(0.0, 100.0, 16, dtype=np.float32), (3, 20, 1))
    cbf[:, 0, 0] = np.nan
    cbf[2] += 5  # the top slice is brighter: frame order must follow the slice order
    pm = build_parametric_maps(src, {"cbf": cbf}, uid_seed="colour-job")[0]
    sc = render_colour(pm, uid_seed="colour-job", vmin=0.0, vmax=100.0)
    path = tmp_path_factory.mktemp("sc") / "sc.dcm"
    sc.save_as(path, enforce_file_format=True)
    return pm, sc, path, cbf


def test_passes_dciodvfy(rendered):
    assert dciodvfy_errors(rendered[2]) == []


def test_labelled_not_for_quantitative_use(rendered):
    pm, _, path, _ = rendered
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == MULTIFRAME_TRUE_COLOR_SC
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.BurnedInAnnotation == "YES"
    assert NOT_FOR_QUANTITATIVE_USE in ds.SeriesDescription
    assert NOT_FOR_QUANTITATIVE_USE in ds.ImageComments
    assert ds.SeriesInstanceUID != pm.SeriesInstanceUID
    assert ds.StudyInstanceUID == pm.StudyInstanceUID and ds.PatientID == pm.PatientID
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == pm.SOPInstanceUID
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated) == (3, "RGB", 8)


def test_pixels_carry_the_map_colours_bar_and_caption(rendered):
    _, _, path, cbf = rendered
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array
    assert frames.shape[0] == 3 and frames.shape[-1] == 3
    factor = 256 // 20 + 1  # small maps are upscaled for legible text
    assert frames.shape[1] > 20 * factor and frames.shape[2] > 16 * factor  # + caption, + colour bar
    cmap = mpl.colormaps["turbo"]
    # column 15 of slice 0 holds 100 = vmax → the top colour of the map
    top = (np.asarray(cmap(1.0)[:3]) * 255 + 0.5).astype(int)
    assert np.abs(frames[0, 5 * factor, 15 * factor].astype(int) - top).max() <= 1
    low = (np.asarray(cmap(0.0)[:3]) * 255 + 0.5).astype(int)
    assert np.abs(frames[0, 5 * factor, 0].astype(int) - low).max() <= 1
    assert (frames[0, 0, 0] == 0).all()  # NaN → black
    # slice order: the last frame is the top slice (values + 5) → at column 1 a warmer colour than frame 0
    assert not np.array_equal(frames[0, 5 * factor, factor], frames[2, 5 * factor, factor])
    bar = frames[0, : 20 * factor, 16 * factor :]
    assert (bar.reshape(-1, 3).max(axis=1) > 0).mean() > 0.1  # the colour bar and its labels are drawn
    caption = frames[0, 20 * factor :, :]
    yellow = (caption[..., 0] > 150) & (caption[..., 1] > 150) & (caption[..., 2] < 100)
    assert yellow.sum() > 50  # the burned-in warning text
    locations = [float(v) for v in ds.SliceLocationVector]
    assert locations == sorted(locations) and len(locations) == 3
    assert ds.FrameIncrementPointer == 0x00182005


def test_deterministic_uids(rendered):
    pm, sc, _, _ = rendered
    again = render_colour(pm, uid_seed="colour-job", vmin=0.0, vmax=100.0)
    assert (again.SOPInstanceUID, again.SeriesInstanceUID) == (sc.SOPInstanceUID, sc.SeriesInstanceUID)
    other = render_colour(pm, uid_seed="other-job")
    assert other.SOPInstanceUID != sc.SOPInstanceUID


def test_colourise_clips_and_blacks_out_nan():
    values = np.array([[[-10.0, 0.0, 50.0, 100.0, 1e9, np.nan]]])
    rgb = colourise(values, 0.0, 100.0, "gray")
    assert rgb.dtype == np.uint8
    assert rgb[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255, 0]


def _patient_xyz(position, orientation, spacing, r: float, c: float) -> np.ndarray:
    o = np.asarray(orientation, dtype=float)
    return np.asarray(position, float) + c * float(spacing[1]) * o[:3] + r * float(spacing[0]) * o[3:]


def test_map_part_lies_over_the_source_slices(rendered):
    pm, _, path, _ = rendered
    ds = pydicom.dcmread(path)
    assert ds.FrameOfReferenceUID == pm.FrameOfReferenceUID
    factor = 256 // 20 + 1
    pm_shared, sc_shared = pm.SharedFunctionalGroupsSequence[0], ds.SharedFunctionalGroupsSequence[0]
    ori = pm_shared.PlaneOrientationSequence[0].ImageOrientationPatient
    assert np.allclose(sc_shared.PlaneOrientationSequence[0].ImageOrientationPatient, ori)
    pm_sp = pm_shared.PixelMeasuresSequence[0].PixelSpacing
    sc_sp = sc_shared.PixelMeasuresSequence[0].PixelSpacing
    assert np.allclose(np.asarray(sc_sp, float) * factor, np.asarray(pm_sp, float))
    pm_pos = [
        pm.PerFrameFunctionalGroupsSequence[j].PlanePositionSequence[0].ImagePositionPatient
        for j in frame_order(pm)[0]
    ]  # ascending along the normal, as the colour frames are
    for k, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        sc_pos = frame.PlanePositionSequence[0].ImagePositionPatient
        for r, c in ((0, 0), (7, 3), (19, 15)):
            centre = (factor - 1) / 2
            a = _patient_xyz(pm_pos[k], ori, pm_sp, r, c)
            b = _patient_xyz(sc_pos, ori, sc_sp, r * factor + centre, c * factor + centre)
            assert np.allclose(a, b, atol=1e-3)
