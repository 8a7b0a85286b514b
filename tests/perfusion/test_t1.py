"""VFA T1 mapping: ground truth across noise levels, B1 correction, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from perfnode.perfusion.t1 import VFAModel, spgr_signal

FA = np.array([2.0, 5.0, 10.0, 15.0, 20.0])
TR = 0.004


def _signals(t1, m0, b1=1.0, sd=0.0, seed=0):
    alpha = np.deg2rad(FA) * np.asarray(b1)[..., None]
    s = spgr_signal(m0[..., None], 1.0 / t1[..., None], alpha, TR)
    return s + sd * np.random.default_rng(seed).standard_normal(s.shape)


@pytest.mark.parametrize("method", ["nonlinear", "linear", "two_angle"])
@pytest.mark.parametrize(("sd", "tol"), [
    (0.0, 1e-8),   # noise-free: all three methods are exact inversions of the same equation
    (2.0, 0.05),   # SNR ≈ 250 at the Ernst angle: median |error| of T1 within 5 %
])
def test_vfa_recovers_t1(method, sd, tol):
    rng = np.random.default_rng(1)
    t1 = rng.uniform(0.3, 2.5, (4, 8, 8))
    m0 = rng.uniform(3000, 6000, (4, 8, 8))
    fit = VFAModel(FA, TR, method=method).fit(_signals(t1, m0, sd=sd))
    assert fit.t1_s.shape == (4, 8, 8)
    assert np.median(np.abs(fit.t1_s / t1 - 1)) < tol
    if sd == 0:
        np.testing.assert_allclose(fit.m0, m0, rtol=1e-6)


def test_b1_map_corrects_the_flip_angle():
    rng = np.random.default_rng(2)
    t1, m0 = rng.uniform(0.5, 2.0, 50), rng.uniform(1000, 2000, 50)
    b1 = rng.uniform(0.8, 1.2, 50)
    s = _signals(t1, m0, b1=b1)
    uncorrected = VFAModel(FA, TR).fit(s)
    corrected = VFAModel(FA, TR).fit(s, b1=b1)
    np.testing.assert_allclose(corrected.t1_s, t1, rtol=1e-6)
    assert np.max(np.abs(uncorrected.t1_s / t1 - 1)) > 0.2  # T1 error ≈ 2·(B1 − 1) without correction


def test_unfittable_voxels_are_nan_with_a_reason():
    s = _signals(np.array([1.0, 1.0]), np.array([1000.0, 1000.0]))
    s[1] = 0.0  # no signal at all
    for method in ("nonlinear", "linear"):
        fit = VFAModel(FA, TR, method=method).fit(s)
        assert np.isfinite(fit.r1_per_s[0]) and np.isnan(fit.r1_per_s[1])
        assert sum(fit.failures.values()) == 1


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="milliseconds"):
        VFAModel(FA, 4.0)
    with pytest.raises(ValueError, match="flip angles"):
        VFAModel(FA, TR).fit(np.ones((3, 4)))
    with pytest.raises(ValueError, match="method"):
        VFAModel(FA, TR, method="magic")
