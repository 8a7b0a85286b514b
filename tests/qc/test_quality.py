"""Data-quality measures against ground truth, and the finding each raises when its threshold is crossed."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import ndimage

from perfnode.perfusion.base import FitResult
from perfnode.qc import quality
from perfnode.qc.compliance import check_series
from tests.qc import synth
from tests.qc.test_compliance import PROTOCOLS, rule_ids


def dsc_quality(**kw):
    headers, times, data, aif, aif_signal = synth.dsc(**kw)
    return headers, times, data, aif, aif_signal


def run(headers, data, aif=None, aif_signal=None, fit=None):
    r = check_series(
        headers,
        data=data,
        aif=aif,
        aif_signal=aif_signal,
        fit=fit,
        spacing_mm=(5.0, 2.0, 2.0),
        protocols=PROTOCOLS,
    )
    return r


def test_missing_frame_is_counted_and_raises_one_error():
    headers, times, data, aif, sig = dsc_quality(drop=(60,))
    f = quality.time_step_facts(times)
    assert f["missing_frames"].value == 1
    assert f["time_step_irregularity"].value == pytest.approx(0.0, abs=1e-9)
    r = run(headers, data, aif, sig)
    assert r.protocol == [] and rule_ids(r.quality) == ["dsc.q.missing_frames"]
    assert r.quality[0].severity == "error" and "2.5 s" in r.quality[0].found


def test_jitter_is_measured():
    t = np.arange(50) * 1.25
    t[20] += 0.3 * 1.25
    f = quality.time_step_facts(t)
    assert f["time_step_irregularity"].value == pytest.approx(0.3, abs=1e-9)
    assert f["missing_frames"].value == 0


def test_bolus_arrival_against_the_sampled_truth():
    t = np.arange(80) * 1.0
    g = synth.gamma(t, 20.3, 50.0)
    curve = 100.0 + g
    data = np.broadcast_to(curve[:, None, None], (80, 4, 4)).copy()
    f = quality.bolus_facts(data, t, falls=False, mask=np.ones((4, 4), bool))
    truth = int(np.argmax(g > 0.1 * g.max()))  # first sample above 10 % of the peak enhancement
    assert f["baseline_dynamics"].value == truth
    assert f["bolus_arrival_time_s"].value == pytest.approx(t[truth])
    assert 20 < truth <= 23


def test_no_bolus_is_an_error_and_leaves_baseline_undetermined():
    rng = np.random.default_rng(1)
    headers, times, data, aif, sig = dsc_quality()
    flat = data[:20].mean(axis=0) + rng.normal(0, 5.0, data.shape)  # the object, but no bolus
    r = run(headers, flat)
    assert "baseline_dynamics" not in r.facts
    assert r.facts["bolus_cnr"].value < 5
    assert rule_ids(r.quality) == ["dsc.q.bolus"]
    # the compliance rule that needs the bolus says it could not be measured, at info level
    assert [(x.severity, "not measurable" in x.found) for x in r.protocol] == [("info", True)]


def test_baseline_tsnr_matches_the_noise():
    headers, times, data, aif, sig = dsc_quality(noise=30.0)
    r = run(headers, data, aif, sig)
    assert r.facts["baseline_tsnr"].value == pytest.approx(900.0 / 30.0, rel=0.1)
    assert rule_ids(r.quality) == []
    _, _, noisy, _, _ = dsc_quality(noise=90.0)
    r = run(headers, noisy, aif, sig)
    assert r.facts["baseline_tsnr"].value == pytest.approx(10.0, rel=0.15)
    assert rule_ids(r.quality) == ["dsc.q.baseline_tsnr"]


def test_motion_is_measured_in_mm():
    headers, times, data, aif, sig = dsc_quality()
    moved = data.copy()
    moved[70:] = ndimage.shift(data[70:], (0, 0, 1.5, -2.25), order=3, mode="nearest")
    shifts = quality.displacements(moved)
    assert np.allclose(shifts[:70], 0, atol=0.1)
    assert np.allclose(shifts[70:], [0.0, 1.5, -2.25], atol=0.15)
    r = run(headers, moved, aif, sig)
    assert r.facts["motion_max_mm"].value == pytest.approx(np.hypot(3.0, 4.5), abs=0.3)
    assert rule_ids(r.quality) == ["dsc.q.motion"]
    assert run(headers, data, aif, sig).facts["motion_max_mm"].value < 0.2


def test_aif_width_against_the_analytic_curve():
    t = np.arange(100) * 1.25
    aif = synth.gamma(t, 20.0, 8.0)
    fine = np.arange(0, 125, 0.001)
    g = synth.gamma(fine, 20.0, 8.0)
    above = fine[g >= g.max() / 2]
    f = quality.aif_facts(aif, t)
    assert f["aif_fwhm_s"].value == pytest.approx(above[-1] - above[0], abs=0.25)
    assert f["aif_peak_at_end"].value is False and f["aif_flat_top_samples"].value == 1


def test_truncated_aif():
    headers, times, data, aif, sig = dsc_quality()
    late = synth.gamma(times, times[-4], 8.0)  # bolus arrives three points before the end
    r = run(headers, data, late)
    assert set(rule_ids(r.quality)) == {"dsc.q.aif_truncated", "dsc.q.aif_tail"}
    cut = synth.gamma(times, times[-7], 8.0)  # peak inside, cut off on the way down
    r = run(headers, data, cut)
    assert r.facts["aif_peak_at_end"].value is False
    assert rule_ids(r.quality) == ["dsc.q.aif_tail"]


def test_clipped_and_saturated_aif():
    headers, times, data, aif, sig = dsc_quality()
    clipped = np.minimum(aif, 0.6 * aif.max())
    r = run(headers, data, clipped, sig)
    assert r.facts["aif_flat_top_samples"].value >= 3
    assert rule_ids(r.quality) == ["dsc.q.aif_clipping"]
    saturated = np.maximum(900.0 * np.exp(-0.12 * 6 * aif), 5.0)  # signal into the noise floor
    r = run(headers, data, aif, saturated)
    assert r.facts["aif_signal_min_fraction"].value == pytest.approx(5.0 / 900.0)
    assert rule_ids(r.quality) == ["dsc.q.aif_saturation"]


def test_fit_failure_fraction():
    headers, times, data, aif, sig = dsc_quality()
    cbf = np.full((10, 10), 50.0)
    cbf.ravel()[:30] = np.nan
    fit = FitResult(
        maps={"cbf": cbf}, units={"cbf": "mL/100 g/min"}, failures=Counter({"no convergence": 30})
    )
    r = run(headers, data, aif, sig, fit=fit)
    assert r.facts["fit_failure_fraction"].value == pytest.approx(0.3)
    assert rule_ids(r.quality) == ["dsc.q.fit_failures"]
    assert "no convergence: 30" in r.quality[0].found


def test_motion_of_an_enhancing_dce_series():
    """T1 enhancement (artery ×5, lesion) does not read as motion; a real shift does."""
    from perfnode.phantoms import dce

    signal, _ = dce.simulate(nz=4, ny=16, nx=16, snr=30, seed=1)
    assert np.abs(quality.displacements(signal)).max() < 0.05
    moved = signal.copy()
    moved[12:] = ndimage.shift(signal[12:], (0, 0, 1.5, -2.25), order=3, mode="nearest")
    shifts = quality.displacements(moved)
    assert np.abs(shifts[:12]).max() < 0.05
    assert np.allclose(shifts[12:], [0.0, 1.5, -2.25], atol=0.3)  # 16 × 16 blocks: coarser than DSC's 0.15


@pytest.mark.parametrize("slices", [4, 20])
def test_motionless_dsc_with_a_bolus_reads_still_and_a_3mm_shift_reads_3mm(slices):
    """Issue 14: 164.7 mm of "motion" on a motionless DSC series. A phantom whose slices repeat has no
    structure along z: every z shift correlated equally well and the search picked one at random."""
    from perfnode.phantoms import dsc

    signal, truth = dsc.simulate(nz=slices, ny=32, nx=32, nt=60, snr=20, seed=1, realistic=True)
    spacing = (5.0, 2.0, 2.0)
    still = quality.measure(signal, truth["times_s"], falls=True, spacing_mm=spacing)
    assert still["motion_max_mm"].value < 0.5
    moved = signal.copy()
    # 3 mm in x (1.5 voxels) from time point 40, after the bolus
    moved[40:] = ndimage.shift(signal[40:], (0, 0, 0, 1.5), order=1, mode="nearest")
    shifted = quality.measure(moved, truth["times_s"], falls=True, spacing_mm=spacing)
    assert shifted["motion_max_mm"].value == pytest.approx(3.0, abs=0.5)
