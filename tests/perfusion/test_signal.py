"""SPGR signal → concentration: round trip against the forward model, baseline rule, failures."""

from __future__ import annotations

import numpy as np
import pytest

from perfnode.perfusion.signal import baseline_frames, relative_enhancement, spgr_to_concentration
from perfnode.perfusion.t1 import spgr_signal


def test_round_trip_is_exact_for_a_volume_with_time_first():
    rng = np.random.default_rng(0)
    t1 = rng.uniform(0.5, 2.0, (3, 4, 5))
    conc = np.concatenate([np.zeros((3, 4, 5, 5)), rng.uniform(0, 3, (3, 4, 5, 20))], axis=-1)
    s = spgr_signal(1000.0, 1 / t1[..., None] + 4.5 * conc, np.deg2rad(12.0), 0.004)
    fit = spgr_to_concentration(np.moveaxis(s, -1, 0), 0.004, 12.0, t1, 4.5, baseline=5, time_axis=0)
    np.testing.assert_allclose(fit.concentration_mM, conc, atol=1e-10)
    np.testing.assert_allclose(fit.r1_per_s, 1 / t1[..., None] + 4.5 * conc, rtol=1e-10)
    assert fit.units["concentration_mM"] == "mM" and fit.provenance["baseline_frames"] == [0, 1, 2, 3, 4]


def test_impossible_signal_and_missing_t1_are_nan_with_reasons():
    s = spgr_signal(1000.0, np.full((3, 10), 1 / 1.2), np.deg2rad(30.0), 0.004)
    s[0, 7] = 1e6  # above the fully relaxed SPGR limit
    t1 = np.array([1.2, np.nan, 1.2])
    s[2] = 0.0
    fit = spgr_to_concentration(s, 0.004, 30.0, t1, 4.5, baseline=3)
    assert np.isnan(fit.concentration_mM[0, 7]) and np.isfinite(fit.concentration_mM[0, :7]).all()
    assert np.isnan(fit.concentration_mM[1:]).all()
    assert fit.failures == {"no valid pre-contrast T1": 1, "baseline signal not positive": 1,
                            "frames with signal beyond the SPGR limit (NaN)": 1}


def test_baseline_specs():
    assert baseline_frames(3, 10).tolist() == [0, 1, 2]
    assert baseline_frames((1, 4), 10).tolist() == [1, 2, 3]
    assert baseline_frames(slice(2, 4), 10).tolist() == [2, 3]
    with pytest.raises(ValueError, match="outside"):
        baseline_frames((5, 12), 10)
    with pytest.raises(ValueError, match="milliseconds"):
        spgr_to_concentration(np.ones((2, 10)), 4.0, 10.0, 1.0, 4.5)


def test_relative_enhancement():
    s = np.array([[100.0, 100.0, 100.0, 150.0, 250.0, 200.0], [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]])
    e = relative_enhancement(s.T, baseline=3, time_axis=0)
    np.testing.assert_allclose(e[:, 0], [0, 0, 0, 0.5, 1.5, 1.0])
    assert np.isnan(e[:, 1]).all()
