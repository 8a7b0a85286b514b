"""Bolus arrival / baseline detection (perfnode.perfusion.baseline) on curves with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from perfnode.perfusion.baseline import detect_bolus

from .dsc_sim import gamma_variate


def test_arrival_of_noise_free_gamma_variates_with_known_onsets() -> None:
    # gamma variates (α = 3, β = 1.5 s, peak at onset + 4.5 s) sampled every 1 s with onsets 8–20 s:
    # ((t−t0)/4.5)³·exp(3 − (t−t0)/1.5) passes 10 % of the peak s10 after the onset (solved here), so
    # the first frame above 10 % is frame ceil(onset + s10)
    t = np.arange(60.0)
    onsets = np.array([8.0, 10.5, 15.0, 20.0])
    curves = np.stack([gamma_variate(t, t0=o) for o in onsets])
    s10 = brentq(lambda s: (s / 4.5) ** 3 * np.exp(3 - s / 1.5) - 0.1, 0.01, 4.5)
    assert s10 == pytest.approx(0.949, abs=1e-3)
    b = detect_bolus(curves, skip=0)
    np.testing.assert_array_equal(b.arrival, np.ceil(onsets + s10).astype(int))
    np.testing.assert_array_equal(b.peak_index, [13, 15, 20, 25])  # sampled maximum (right-skewed)
    np.testing.assert_array_equal(b.stop, b.arrival - 1)
    assert b.frames == (0, int(b.stop.min()))


def test_signal_drop_with_noise_and_skipped_first_frame() -> None:
    # DSC signal: 1000 with noise SD 10, first frame brighter (steady state not reached), bolus
    # dropping the signal from 25 s; pass −signal. Arrival within one frame of the 10 % crossing.
    rng = np.random.default_rng(0)
    t = np.arange(0.0, 90.0, 1.5)
    signal = 1000.0 * np.exp(-0.03 * gamma_variate(t, t0=25.0)) + rng.normal(0, 10.0, t.size)
    signal[0] = 1400.0
    b = detect_bolus(-signal, skip=1)
    expected = int(np.ceil((25.0 + 0.949) / 1.5))
    assert abs(int(b.arrival[0]) - expected) <= 1
    assert b.start == 1 and 10 <= b.frames[1] <= expected


def test_given_level_and_too_short_curve() -> None:
    c = np.array([[0.0, 0.0, 0.0, 0.1, 1.0, 3.0, 2.0, 1.0]])
    assert detect_bolus(c, skip=0, level=0.0).arrival[0] == 4  # 10 % of 3 = 0.3: frame 4 is above
    with pytest.raises(ValueError, match="too short"):
        detect_bolus(np.ones((1, 4)), skip=1, min_baseline=2)
