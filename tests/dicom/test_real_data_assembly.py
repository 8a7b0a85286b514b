"""Every real vendor series in tests/data/real-data assembles to the right shape, axes, timing and slices.

Expected values are read from the headers here with pydicom directly (not through perfnode's reader)."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest

from perfnode.dicom.frames import AssemblyError, assemble
from tests.real_data import REAL_DATA, SERIES, series_files


def read(name: str) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in series_files(name)]


def per_frame(ds, *path):
    out = []
    for item in ds.PerFrameFunctionalGroupsSequence:
        v = item
        for kw in path[:-1]:
            v = v[kw][0]
        out.append(v.get(path[-1]))
    return out


def along_normal(positions, orientation) -> np.ndarray:
    o = np.asarray(orientation, float)
    return np.asarray(positions, float) @ np.cross(o[:3], o[3:])


def dt_seconds(values) -> np.ndarray:
    from datetime import datetime

    t = [datetime.strptime(str(v).split("+")[0], "%Y%m%d%H%M%S.%f") for v in values]
    return np.array([(x - min(t)).total_seconds() for x in t])


@pytest.mark.parametrize("name", SERIES)
def test_every_series_assembles_or_gives_a_one_line_reason(name):
    try:
        v = assemble(series_files(name))
    except AssemblyError as e:
        assert "\n" not in str(e)
        return
    assert v.data.dtype == np.float32 and np.isfinite(v.data).all()
    assert v.data.ndim == len(v.axes) + 2
    assert v.frame_times_s.shape == v.data.shape[:-2]


def test_siemens_xa30_bold_incomplete_time_series():
    dss = read("siemens_xa30_bold_enh")
    v = assemble(series_files("siemens_xa30_bold_enh"))
    assert v.data.shape == (8, 33, 64, 64) and v.axes == ("t", "z")
    assert v.incomplete
    assert [str(w) for w in v.warnings][0].startswith("8 of 20 temporal positions (0020,0105) present")
    # time points: the earliest Frame Acquisition DateTime of each instance (TR 1 s)
    fad = [dt for ds in dss for dt in per_frame(ds, "FrameContentSequence", "FrameAcquisitionDateTime")]
    secs = dt_seconds(fad).reshape(8, 33)
    np.testing.assert_allclose(v.times_s, secs.min(axis=1), atol=1e-6)
    np.testing.assert_allclose(np.diff(v.times_s), 1.0, atol=0.01)
    assert v.time_source == "FrameAcquisitionDateTime"
    # slice timing kept: frames of one volume have their own times (multiband order)
    assert np.ptp(v.frame_times_s[0]) > 0.5
    ds = dss[0]
    ori = per_frame(ds, "PlaneOrientationSequence", "ImageOrientationPatient")[0]
    pos = per_frame(ds, "PlanePositionSequence", "ImagePositionPatient")
    expected = np.sort(along_normal(pos, ori))
    np.testing.assert_allclose(expected, along_normal(v.geometry.positions, ori), atol=1e-3)
    spacing = per_frame(ds, "PixelMeasuresSequence", "PixelSpacing")[0]
    np.testing.assert_allclose(v.geometry.pixel_spacing, [float(x) for x in spacing])
    # the pixels of one frame, where its position says
    t, z = 5, 7
    uid, frame = v.source_frame(t, z)
    src = next(d for d in dss if d.SOPInstanceUID == uid)
    np.testing.assert_array_equal(v.data[t, z], src.pixel_array[frame - 1].astype(np.float32))


def test_siemens_xa10_bold_per_time_point_instances():
    v = assemble(series_files("siemens_xa10_bold_enh"))
    assert v.data.shape == (4, 6, 64, 64) and not v.incomplete
    np.testing.assert_allclose(np.diff(v.times_s), 0.5, atol=0.01)


def test_siemens_xa60_dwi_temporal_index_is_the_diffusion_axis():
    dss = read("siemens_xa60_dwi_enh")
    v = assemble(series_files("siemens_xa60_dwi_enh"))
    assert v.axes == ("diffusion", "t", "z") and v.data.shape == (7, 1, 10, 64, 64)
    b = []
    for ds in sorted(dss, key=lambda d: int(d.InstanceNumber)):
        diff = ds.PerFrameFunctionalGroupsSequence[0].MRDiffusionSequence[0]
        b.append(float(diff.get("DiffusionBValue") or 0))
    d = v.extra_dims["diffusion"]
    assert sorted(d[:, 0].tolist()) == sorted(b) == [0] + [1000] * 6
    dirs = d[d[:, 0] == 1000, 1:]
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-3)
    assert len({tuple(np.round(x, 3)) for x in dirs}) == 6
    assert any("TemporalPositionIndex counts the diffusion volumes" in n for n in v.notes)
    assert not v.incomplete  # 7 of 7


def test_siemens_ve11_mosaic_unpacked_with_csa_geometry_and_asl_convention():
    import nibabel.nicom.csareader as csa

    dss = read("siemens_ve11_pcasl_mosaic")
    v = assemble(series_files("siemens_ve11_pcasl_mosaic"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hdr = csa.get_csa_header(dss[0], "image")
    n = csa.get_n_mosaic(hdr)
    normal = np.asarray(csa.get_slice_normal(hdr), float)
    assert n == 20 == v.data.shape[-3]
    tile = dss[0].Rows // int(np.ceil(np.sqrt(n)))  # 360 / 5 = 72 (not 60: ⌈√20⌉ tiles per row)
    assert v.data.shape == (2, 3, 20, tile, tile) == (2, 3, 20, 72, 72)
    assert v.axes == ("asl_context", "t", "z")
    assert v.extra_dims["asl_context"].tolist() == ["CONTROL", "LABEL"]
    np.testing.assert_allclose(v.geometry.normal, normal, atol=1e-5)
    d = v.geometry.positions @ normal
    np.testing.assert_allclose(np.diff(d), float(dss[0].SpacingBetweenSlices), atol=1e-3)
    assert "convention" in v.asl_context_source
    assert any("not stated in any standard attribute" in x for x in v.notes)
    # instance 1 is label, 2 control (the convention): pairs by instance order
    by_number = sorted(dss, key=lambda d: int(d.InstanceNumber))
    uid_label, _ = v.source_frame(1, 0, 0)
    uid_control, _ = v.source_frame(0, 0, 0)
    assert uid_label == by_number[0].SOPInstanceUID and uid_control == by_number[1].SOPInstanceUID
    # slice k of image 1 is tile k of the mosaic
    img = by_number[0].pixel_array
    np.testing.assert_array_equal(v.data[1, 0, 6], img[72:144, 72:144].astype(np.float32))
    # times: Acquisition Time per image (pairs 2 × 2.54 s apart) + each slice's CSA offset
    assert v.time_source == "AcquisitionTime"
    np.testing.assert_allclose(np.diff(v.times_s), 5.08, atol=0.01)
    offsets = np.asarray(hdr["tags"]["MosaicRefAcqTimes"]["items"][:n], float) / 1000
    np.testing.assert_allclose(v.frame_times_s[1, 0] - v.frame_times_s[1, 0].min(), offsets - offsets.min(),
                               atol=1e-3)


def test_siemens_ve11_m0_mosaic_is_one_volume():
    v = assemble(series_files("siemens_ve11_pcasl_m0_mosaic"))
    assert v.data.shape == (1, 20, 72, 72) and v.axes == ("t", "z")


def test_philips_pcasl_label_type_from_the_private_attribute():
    ds = read("philips_asl_3dpcasl_enh")[0]
    v = assemble(series_files("philips_asl_3dpcasl_enh"))
    assert v.axes == ("asl_context", "t", "z") and v.data.shape == (2, 8, 14, 80, 80)
    assert "2005" in v.asl_context_source and "Philips MR Imaging DD 005" in v.asl_context_source
    assert v.asl_parameters == {}  # PLD 2000 ms is not in any standard attribute of this object
    block = ds.PerFrameFunctionalGroupsSequence[0].private_block(0x2005, "Philips MR Imaging DD 005")
    labels = []
    for item in ds.PerFrameFunctionalGroupsSequence:
        inner = item[block.get_tag(0x0F)].value[0]
        labels.append(str(inner.private_block(0x2005, "Philips MR Imaging DD 005")[0x29].value))
    assert labels[:112] == ["CONTROL"] * 112 and labels[112:] == ["LABEL"] * 112
    # control of repeat 3, slice 5 is the frame whose private label, TPI and position say so
    for c, name in enumerate(["CONTROL", "LABEL"]):
        uid, frame = v.source_frame(c, 2, 4)
        item = ds.PerFrameFunctionalGroupsSequence[frame - 1]
        assert labels[frame - 1] == name
        assert item.FrameContentSequence[0].TemporalPositionIndex == 3
    # Philips floating-point values: stored × RS / (RS × SS)
    uid, frame = v.source_frame(0, 0, 0)
    item = ds.PerFrameFunctionalGroupsSequence[frame - 1]
    inner = item[block.get_tag(0x0F)].value[0]
    ss = float(inner.private_block(0x2005, "Philips MR Imaging DD 001")[0x0E].value)
    rs = float(item.PixelValueTransformationSequence[0].RescaleSlope)
    expected = ds.pixel_array[frame - 1].astype(np.float64) * rs / (rs * ss)
    np.testing.assert_allclose(v.data[0, 0, 0], expected, rtol=1e-6)
    assert any("Philips floating-point" in n for n in v.notes)
    times = dt_seconds(per_frame(ds, "FrameContentSequence", "FrameAcquisitionDateTime"))
    assert np.allclose(v.times_s, np.unique(times)[:8])


def test_philips_multiphase_pwi_trigger_delay_axis():
    ds = read("philips_asl_multiphase_pwi_enh")[0]
    v = assemble(series_files("philips_asl_multiphase_pwi_enh"))
    assert v.axes == ("trigger_delay_ms", "t", "z") and v.data.shape == (8, 1, 6, 80, 80)
    delays = np.array(per_frame(ds, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"))
    tpi = per_frame(ds, "FrameContentSequence", "TemporalPositionIndex")
    assert set(tpi) == {1}
    z = along_normal(per_frame(ds, "PlanePositionSequence", "ImagePositionPatient"),
                     per_frame(ds, "PlaneOrientationSequence", "ImageOrientationPatient")[0])
    first_slice = delays[np.isclose(z, z.min())]
    np.testing.assert_allclose(v.extra_dims["trigger_delay_ms"], np.sort(first_slice))
    assert v.extra_dims["trigger_delay_ms"][0] == 300 and v.extra_dims["trigger_delay_ms"][-1] == 2050
    # per slice the delay shifts by a few ms: kept per cell
    cells = v.cell_values["trigger_delay_ms"][:, 0, :]
    assert (np.ptp(cells, axis=1) > 0).all() and (np.ptp(cells, axis=1) < 200).all()


def test_ge_multiphase_epi_timing_from_trigger_time():
    dss = read("ge_epi_multiphase_classic")
    v = assemble(series_files("ge_epi_multiphase_classic"))
    assert v.data.shape == (10, 10, 64, 64) and v.axes == ("t", "z")
    assert len({str(d.AcquisitionTime) for d in dss}) == 1
    assert v.time_source == "TriggerTime"
    trig = {(int(d.TemporalPositionIdentifier), round(float(along_normal(d.ImagePositionPatient,
                                                                         d.ImageOrientationPatient)), 3)):
            float(d.TriggerTime) / 1000 for d in dss}
    t0 = min(trig.values())
    starts = [min(s for (p, _), s in trig.items() if p == k) - t0 for k in range(1, 11)]
    np.testing.assert_allclose(v.times_s, starts, atol=1e-6)
    np.testing.assert_allclose(np.median(np.diff(v.times_s)), 1.0, atol=0.01)
    z = v.geometry.positions @ v.geometry.normal
    for k in range(10):
        for j in range(10):
            assert v.frame_times_s[k, j] == pytest.approx(trig[(k + 1, round(float(z[j]), 3))] - t0)


def test_ge_dwi_b0_without_b_value_is_b_zero():
    dss = read("ge_dwi_classic")
    v = assemble(series_files("ge_dwi_classic"))
    assert v.axes == ("diffusion", "t", "z") and v.data.shape == (7, 1, 2, 256, 256)
    without = [d for d in dss if "DiffusionBValue" not in d]
    assert len(without) == 2  # the b 0 images
    d = v.extra_dims["diffusion"]
    assert d[0].tolist() == [0, 0, 0, 0] and (d[1:, 0] == 1000).all()
    ge_b = sorted({int(str(d[0x0043, 0x1039].value[0])) for d in dss})
    assert ge_b == [0, 1000]
    gx = sorted(float(x[0x0019, 0x10BB].value) for x in dss if "DiffusionBValue" in x)
    assert sorted(d[1:, 1].tolist() * 2) == pytest.approx(gx)


def test_canon_dwi_time_first_dimension_order():
    ds = read("canon_dwi_enh")[0]
    v = assemble(series_files("canon_dwi_enh"))
    assert v.axes == ("diffusion", "t", "z") and v.data.shape == (13, 1, 40, 80, 80)
    pointers = [int(d.DimensionIndexPointer) for d in ds.DimensionIndexSequence]
    assert pointers[0] == 0x00209128  # time first
    b = np.array([float(x.get("DiffusionBValue") or 0) for x in
                  (i.MRDiffusionSequence[0] for i in ds.PerFrameFunctionalGroupsSequence)])
    assert sorted(v.extra_dims["diffusion"][:, 0].tolist()) == sorted(np.unique(b[::40]).tolist() * 1 +
                                                                        [1500.0] * 11)
    z = along_normal(per_frame(ds, "PlanePositionSequence", "ImagePositionPatient"),
                     ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient)
    np.testing.assert_allclose(v.geometry.positions @ v.geometry.normal, np.unique(np.round(z, 3)), atol=1e-3)


@pytest.mark.parametrize("what", ["text", "readme", "truncated", "missing", "empty", "short-pixels",
                                  "short-mosaic"])
def test_non_dicom_and_truncated_files_give_one_line_errors(tmp_path, what):
    path = tmp_path / "f"
    if what == "text":
        path.write_text("not DICOM\n")
    elif what == "readme":
        path = REAL_DATA / "README.md"
    elif what == "truncated":
        path.write_bytes((REAL_DATA / "canon_dwi_enh" / "3000.dcm").read_bytes()[:200_000])
    elif what == "empty":
        path.write_bytes(b"")
    elif what == "short-pixels":
        path.write_bytes((REAL_DATA / "ge_dwi_classic" / "i22.MRDC.1").read_bytes()[:-100])
    elif what == "short-mosaic":
        path.write_bytes((REAL_DATA / "siemens_ve11_pcasl_mosaic" / "0001.dcm").read_bytes()[:-500])
    with pytest.raises(AssemblyError) as e:
        assemble([path])
    assert "\n" not in str(e.value) and str(path) in str(e.value) or "PerFrame" in str(e.value)


def test_asl_parameters_come_from_the_header(tmp_path):
    from perfnode.phantoms import make

    _, files = make("asl", "single", tmp_path, seed=11)
    v = assemble([f for f in files if f.parent.name == "series01"])
    ds = pydicom.dcmread([f for f in files if f.parent.name == "series01"][0], stop_before_pixels=True)
    def macro(kw):
        for group in (ds.PerFrameFunctionalGroupsSequence[0], ds.SharedFunctionalGroupsSequence[0]):
            if kw in group:
                return group[kw][0]

    pulse_us = float(macro("MRArterialSpinLabelingSequence").ASLSlabSequence[0].ASLPulseTrainDuration)
    tis = macro("MRModifierSequence").InversionTimes
    ti = float(tis[0] if hasattr(tis, "__len__") else tis)
    assert v.asl_parameters["labelling_duration_ms"][0] == pytest.approx(pulse_us / 1000)
    assert v.asl_parameters["post_labelling_delay_ms"][0] == pytest.approx(ti)
    assert v.asl_parameters["labelling_type"][0] == "PCASL"
    assert "background_suppression" not in v.asl_parameters
