"""Phantom signals written in the real vendor layouts assemble back to exactly the phantom."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from perfnode.dicom.frames import assemble
from perfnode.phantoms.real_layout import template_shape, write_real_layout
from tests.real_data import series_files

LAYOUTS = {
    "siemens_xa30_bold_enh": "per-time-point",
    "philips_asl_3dpcasl_enh": "multi-frame",
    "philips_asl_multiphase_pwi_enh": "multi-frame",
    "canon_dwi_enh": "multi-frame",
    "ge_epi_multiphase_classic": "classic",
}


def phantom(shape, nt, seed=0):
    """A bolus-like signal: baseline 1000 with a dip over time, varying in space."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    base = 800 + 400 * rng.random((z, y, x))
    t = np.arange(nt)
    dip = 1 - 0.4 * np.exp(-0.5 * ((t - nt / 2) / 2.0) ** 2)
    return base[None] * dip[:, None, None, None] + rng.normal(0, 5, (nt, z, y, x))


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_real_layout_phantom_assembles_back_bit_exactly(tmp_path, name):
    template = series_files(name)
    shape = template_shape(template)
    nt = 12
    signal = phantom(shape, nt)
    times = np.arange(nt) * 1.5
    out = write_real_layout(template, signal, times, tmp_path / name, te_ms=30.0, seed=name)
    assert out.layout == LAYOUTS[name]
    v = assemble(out.files)
    assert v.axes == ("t", "z") and v.data.shape == (nt, *shape)
    np.testing.assert_array_equal(v.data, out.expected)
    np.testing.assert_allclose(v.data, signal, atol=out.slope / 2 + 1e-3)
    np.testing.assert_allclose(v.times_s, times, atol=1e-4)
    assert not v.incomplete
    # real header layout kept: vendor, SOP class, private data
    src = pydicom.dcmread(template[0], stop_before_pixels=True)
    new = pydicom.dcmread(out.files[0], stop_before_pixels=True)
    assert new.Manufacturer == src.Manufacturer and new.SOPClassUID == src.SOPClassUID
    assert new.SeriesInstanceUID != src.SeriesInstanceUID
    if "PerFrameFunctionalGroupsSequence" in src:
        assert [e.tag for e in new.PerFrameFunctionalGroupsSequence[0]] == \
            [e.tag for e in src.PerFrameFunctionalGroupsSequence[0]] + \
            ([] if "MRArterialSpinLabelingSequence" not in new.PerFrameFunctionalGroupsSequence[0] else [])
        assert len({i.FrameContentSequence[0].TemporalPositionIndex
                    for i in new.PerFrameFunctionalGroupsSequence}) == (1 if out.layout == "per-time-point"
                                                                         else nt)


def test_asl_with_m0_inside_and_alternating_label_control_on_the_siemens_layout(tmp_path):
    template = series_files("siemens_xa30_bold_enh")
    shape = template_shape(template)
    contexts = ["M_ZERO_SCAN"] + ["LABEL", "CONTROL"] * 4
    signal = phantom(shape, len(contexts), seed=2)
    out = write_real_layout(template, signal, np.arange(9) * 4.0, tmp_path, asl_context=contexts, seed="asl")
    v = assemble(out.files)
    assert v.axes == ("asl_context", "t", "z") and v.data.shape == (2, 4, *shape)
    assert v.asl_context_source == "(0018,9257) ASLContext"
    np.testing.assert_array_equal(v.m0[0], out.expected[0])
    np.testing.assert_array_equal(v.data[1], out.expected[1::2])  # LABEL
    np.testing.assert_array_equal(v.data[0], out.expected[2::2])  # CONTROL
    assert any("alternating" in n and "1 M0 volume" in n for n in v.notes)
    assert v.asl_parameters == {}  # the BOLD template says nothing about labelling: nothing invented


def test_asl_in_blocks_on_the_philips_layout(tmp_path):
    template = series_files("philips_asl_3dpcasl_enh")
    shape = template_shape(template)
    contexts = ["CONTROL"] * 3 + ["LABEL"] * 3 + ["M_ZERO_SCAN"]
    signal = phantom(shape, len(contexts), seed=3)
    out = write_real_layout(template, signal, np.arange(7) * 4.0, tmp_path, asl_context=contexts)
    v = assemble(out.files)
    assert v.data.shape == (2, 3, *shape) and v.m0.shape == (1, *shape)
    np.testing.assert_array_equal(v.data[0], out.expected[:3])
    np.testing.assert_array_equal(v.data[1], out.expected[3:6])
    assert any("in blocks" in n for n in v.notes)


def test_multi_pld_alternating_asl_pairs_within_each_delay(tmp_path):
    """M0 first, then per post-labelling delay label/control pairs (one instance per time point); the
    M0 carries a delay of its own. Pairs are formed within each delay."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    template = series_files("siemens_xa30_bold_enh")
    shape = template_shape(template)
    plds = [0.0] + [1000.0] * 4 + [2000.0] * 4  # M0, then 2 pairs at 1 s, 2 pairs at 2 s
    contexts = ["M_ZERO_SCAN"] + ["LABEL", "CONTROL"] * 4
    signal = phantom(shape, len(contexts), seed=4)
    out = write_real_layout(template, signal, np.arange(9) * 4.0, tmp_path, asl_context=contexts)
    for k, path in enumerate(out.files):
        ds = pydicom.dcmread(path)
        for item in ds.PerFrameFunctionalGroupsSequence:
            mod = Dataset()
            mod.InversionTimes = [plds[k]]
            item.MRModifierSequence = Sequence([mod])
        ds.save_as(path, enforce_file_format=True)
    v = assemble(out.files)
    assert v.axes == ("inversion_time_ms", "asl_context", "t", "z")
    assert v.extra_dims["inversion_time_ms"].tolist() == [1000.0, 2000.0]  # the M0's delay is no value
    assert v.data.shape == (2, 2, 2, *shape)
    np.testing.assert_array_equal(v.data[0, 1], out.expected[[1, 3]])  # label at 1 s
    np.testing.assert_array_equal(v.data[1, 0], out.expected[[6, 8]])  # control at 2 s
    np.testing.assert_array_equal(v.m0[0], out.expected[0])
    assert v.asl_parameters["post_labelling_delay_ms"][0] == [1000.0, 2000.0]
