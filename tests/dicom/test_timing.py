"""Frame timing: the first source that every frame has and that varies (one implementation for the
assembly and the QC facts)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from perfnode.dicom.timing import choose
from perfnode.qc.facts import frame_times
from tests.real_data import series_files

T0 = datetime(2026, 1, 1, 12, 0, 0)


def test_a_source_that_does_not_vary_is_passed_over():
    same = [T0] * 4
    trig = [0.0, 1.0, 2.0, 3.5]
    s, kw, start = choose({"AcquisitionTime": same, "TriggerTime": trig})
    assert kw == "TriggerTime" and start is None
    np.testing.assert_allclose(s, trig)


def test_the_first_varying_source_in_order_wins():
    fad = [T0 + timedelta(seconds=2 * i) for i in range(3)]
    acq = [T0 + timedelta(seconds=5 * i) for i in range(3)]
    s, kw, start = choose({"AcquisitionTime": acq, "FrameAcquisitionDateTime": fad, "TriggerTime": [0, 1, 2]})
    assert kw == "FrameAcquisitionDateTime" and start == T0
    np.testing.assert_allclose(s, [0, 2, 4])


def test_nothing_varies_gives_zeros_from_the_first_complete_source():
    s, kw, _ = choose({"FrameAcquisitionDateTime": [T0] * 3, "ContentTime": [T0] * 3})
    assert kw == "FrameAcquisitionDateTime" and (s == 0).all()


def test_no_complete_source_each_frame_its_first_found():
    fad = [T0, None, T0 + timedelta(seconds=3)]
    acq = [None, T0 + timedelta(seconds=1), None]
    s, kw, _ = choose({"FrameAcquisitionDateTime": fad, "AcquisitionTime": acq})
    assert kw == "FrameAcquisitionDateTime/AcquisitionTime"
    np.testing.assert_allclose(s, [0, 0, 3])  # each source from its own earliest value


def test_qc_frame_times_are_the_assembly_times_on_real_data():
    import pydicom

    from perfnode.dicom.frames import assemble

    for name in ("ge_epi_multiphase_classic", "siemens_xa30_bold_enh", "philips_asl_3dpcasl_enh"):
        files = series_files(name)
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        np.testing.assert_allclose(frame_times(headers), assemble(files).times_s, atol=1e-9)


def test_qc_b_values_agree_with_the_assembly_on_ge_dwi():
    """GE b0 images have no DiffusionBValue: check's facts and the assembly both say b = 0 is there."""
    import pydicom

    from perfnode.dicom.frames import assemble
    from perfnode.qc.facts import header_facts

    files = series_files("ge_dwi_classic")
    facts = header_facts([pydicom.dcmread(f, stop_before_pixels=True) for f in files])
    assert facts["b_values"].value == tuple(sorted(set(assemble(files).extra_dims["diffusion"][:, 0])))
    assert facts["b_values"].value == (0.0, 1000.0)
    assert facts["n_diffusion_directions"].value == 6 and "private" in facts["n_diffusion_directions"].source
