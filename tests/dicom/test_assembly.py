"""4-D assembly: every shape gives the same volume bit for bit, in order, with timing and geometry."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from perfnode.dicom.frames import AssemblyError, assemble, expand
from perfnode.phantoms import Size, make
from perfnode.phantoms.objects import build, simulate
from tests.dicom import sample

SIZE = Size(nx=12, ny=10, nz=3, nt=6)


def expected_values(phantom, k=0):
    """The image set's real values, extra axis sorted like the assembler sorts it, singletons dropped."""
    s = phantom.image_sets[k]
    values = s.values()
    keys = s.dimension_keys()
    if keys:

        def key(x):
            out = []
            for k_ in keys:
                v = x[k_]
                out += list(v) if isinstance(v, tuple) else [v]
            return out

        order = sorted(range(len(s.extra)), key=lambda i: key(s.extra[i]))
        return values[order]
    return values[0]


@pytest.mark.parametrize("technique", ["dsc", "ctp", "dce", "ivim"])
def test_all_shapes_assemble_to_the_same_volume(tmp_path, technique):
    volumes = {}
    for shape in ("single", "concat", "per-time", "classic"):
        phantom, files = make(technique, shape, tmp_path / shape, size=SIZE, snr=20, seed=7)
        series1 = [f for f in files if f.parent.name == "series01"]
        volumes[shape] = assemble(reversed(series1))  # any order of files
    ref = volumes["single"]
    np.testing.assert_array_equal(ref.data, expected_values(phantom))
    for shape, v in volumes.items():
        assert v.data.dtype == np.float32
        np.testing.assert_array_equal(v.data, ref.data, err_msg=shape)
        np.testing.assert_allclose(v.times_s, ref.times_s, atol=1e-6)
        np.testing.assert_allclose(v.geometry.positions, ref.geometry.positions)
    if technique == "ivim":
        d = ref.extra_dims["diffusion"]
        assert d.shape == (22, 4) and d[0].tolist() == [0, 0, 0, 0] and d[-1, 0] == 800
    else:
        np.testing.assert_allclose(ref.times_s, phantom.truth["times_s"], atol=1e-6)


def test_shuffled_frames_and_parts_in_any_order_come_out_right(tmp_path):
    phantom, files = make("dsc", "concat", tmp_path, break_rule="shuffled", size=SIZE, snr=15, seed=3)
    series1 = [f for f in files if f.parent.name == "series01"]
    first = pydicom.dcmread(series1[0], stop_before_pixels=True)
    tpis = [pf.FrameContentSequence[0].TemporalPositionIndex for pf in first.PerFrameFunctionalGroupsSequence]
    assert tpis != sorted(tpis)  # really shuffled in the file
    v = assemble([series1[2], series1[0], series1[1]])
    np.testing.assert_array_equal(v.data, expected_values(phantom))
    assert v.data.shape == (6, 3, 10, 12)


def test_timing_geometry_and_source_frames(tmp_path):
    phantom, files = make("ctp", "concat", tmp_path, size=SIZE, snr=10, seed=1)
    v = assemble(files)
    np.testing.assert_allclose(v.times_s, np.arange(6) * 1.5, atol=1e-6)
    assert v.time_source == "FrameAcquisitionDateTime"
    g = v.geometry
    np.testing.assert_allclose(g.normal, [0, 0, 1])
    np.testing.assert_allclose(g.positions[:, 2], [-10, -5, 0])
    assert g.slice_spacing == pytest.approx(5.0) and list(g.pixel_spacing) == [2.0, 2.0]
    assert g.frame_of_reference_uid == phantom.study.frame_of_reference_uid
    # HU: rescale applied (intercept −1024); background is air
    assert v.data[0, 0, 0, 0] == pytest.approx(-1000, abs=60)
    # each (t, z) names the frame it came from: read that frame back and compare
    for t, z in [(0, 0), (3, 2), (5, 1)]:
        uid, frame = v.source_frame(t, z)
        path = next(f for f in files if pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID == uid)
        ds = pydicom.dcmread(path)
        raw = ds.pixel_array[frame - 1] if int(ds.NumberOfFrames) > 1 else ds.pixel_array
        np.testing.assert_array_equal(v.data[t, z], raw.astype(np.float32) - 1024)


def test_datasets_in_memory_and_compressed_files_give_the_same_volume(tmp_path):
    from pydicom.uid import RLELossless

    phantom = simulate("dsc", SIZE, snr=12, seed=5)
    dss = build(phantom, phantom.image_sets[0], "single")
    from_memory = assemble(dss)
    ds = dss[0]
    ds.compress(RLELossless)
    path = tmp_path / "rle.dcm"
    ds.save_as(path, enforce_file_format=True)
    np.testing.assert_array_equal(assemble([path]).data, from_memory.data)


def test_classic_series_ordered_by_time_without_temporal_identifier(tmp_path):
    phantom = simulate("dsc", SIZE, snr=12, seed=5)
    dss = build(phantom, phantom.image_sets[0], "classic")
    for ds in dss:
        del ds.TemporalPositionIdentifier
        del ds.NumberOfTemporalPositions
    rng = np.random.default_rng(0)
    v = assemble([dss[i] for i in rng.permutation(len(dss))])
    np.testing.assert_array_equal(v.data, expected_values(phantom))
    assert v.time_source == "AcquisitionDateTime"


def test_missing_and_inconsistent_parts_are_named(tmp_path):
    _, files = make("dsc", "concat", tmp_path / "a", size=SIZE, break_rule="concat-part-missing")
    with pytest.raises(
        AssemblyError, match=r"\(0020,9162\) InConcatenationNumber.*part\(s\) \[2\] of 3 missing"
    ):
        assemble(expand([tmp_path / "a" / "series01"]))
    _, files = make("dsc", "single", tmp_path / "b", size=SIZE, break_rule="missing-frame", seed=2)
    with pytest.raises(
        AssemblyError, match=r"1 missing frame cell\(s\) of the 6 × 3 grid: t=\d, z=-?\d+\.0 mm"
    ):
        assemble(files)
    _, files = make("dsc", "single", tmp_path / "c", size=SIZE, break_rule="duplicate-frame")
    with pytest.raises(AssemblyError, match="1 duplicated frame cell"):
        assemble(files)
    _, files = make("dsc", "single", tmp_path / "d", size=SIZE, break_rule="temporal-index-missing")
    with pytest.raises(AssemblyError, match=r"\(0020,9128\) TemporalPositionIndex missing in 1 frame"):
        assemble(files)
    _, files = make("dce", "single", tmp_path / "e", size=SIZE)
    with pytest.raises(AssemblyError, match=r"\(0020,000E\) SeriesInstanceUID: 2 series mixed"):
        assemble(files)


def test_real_enhanced_ct_sample_reads_and_sorts_along_the_normal():
    path = sample("eCT_Supplemental.dcm")
    v = assemble([path])
    ds = pydicom.dcmread(path)
    assert v.data.shape == (1, 2, 512, 512)
    normal = v.geometry.normal
    d = v.geometry.positions @ normal
    assert d[0] < d[1]  # sorted along the normal
    # rescale (intercept −1024, slope 1) applied to the frame that sits at each position
    for z in range(2):
        _, frame = v.source_frame(0, z)
        np.testing.assert_array_equal(v.data[0, z], ds.pixel_array[frame - 1].astype(np.float32) - 1024)
    assert v.time_source == "ContentTime"


@pytest.mark.parametrize(
    "name",
    ["emri_small.dcm", "emri_small_big_endian.dcm", "emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm"],
)
def test_real_enhanced_mr_samples_without_functional_groups_are_refused_by_name(name):
    path = sample(name)
    ds = pydicom.dcmread(path)
    assert ds.pixel_array.shape == (10, 64, 64)  # the sample itself decodes
    with pytest.raises(AssemblyError, match=r"\(5200,9230\) PerFrameFunctionalGroupsSequence missing"):
        assemble([path])
