"""IVIM against OSIPI TF2.4 generic.json with the rules of test_ivim_fit_saved / test_bounds."""

from __future__ import annotations

import numpy as np
import pytest

from perfnode.perfusion.ivim import IVIMModel
from tests.perfusion.refdata import read_json

DATA = read_json("ivim/generic.json")
TISSUES = [k for k in DATA if k != "config"]
PARAMS = [pytest.param(k, id=k) for k in TISSUES]
TOL = {"f": (0.2, 0.1), "D": (5e-4, 0.1), "Dp": (0.1, 0.1)}  # (atol, rtol), tolerances_helper defaults
OSIPI_BOUNDS = {"s0": (0.7, 1.3), "f": (0.0, 1.0), "dstar": (0.005, 0.2), "d": (0.0, 0.005)}


def _signal(name: str) -> tuple[np.ndarray, np.ndarray]:
    e = DATA[name]
    s = np.asarray(e["data"], dtype=float)
    return np.asarray(DATA["config"]["bvalues"], dtype=float), s / s[0]  # normalised to b = 0 first


@pytest.mark.parametrize("method", ["full", "segmented"])
@pytest.mark.parametrize("name", PARAMS)
def test_ivim_generic_tissue(name, method):
    b, s = _signal(name)
    ref = DATA[name]
    bounds = dict(OSIPI_BOUNDS, dstar=(0.01, 0.2)) if ref["f"] == 0 else OSIPI_BOUNDS
    fit = IVIMModel(b, method=method, bounds=bounds).fit(s)
    np.testing.assert_allclose(fit.f, ref["f"], atol=TOL["f"][0], rtol=TOL["f"][1])
    if ref["f"] < 0.8:
        np.testing.assert_allclose(fit.d_mm2_per_s, ref["D"], atol=TOL["D"][0], rtol=TOL["D"][1])
    if ref["f"] > 0.03:
        np.testing.assert_allclose(fit.dstar_mm2_per_s, ref["Dp"], atol=TOL["Dp"][0], rtol=TOL["Dp"][1])


@pytest.mark.parametrize("method", ["full", "segmented"])
@pytest.mark.parametrize("name", PARAMS)
def test_ivim_respects_narrow_bounds(name, method):
    """OSIPI test_bounds: deliberately narrow bounds; fitted f, D, D* must lie inside (1e-10 margin)."""
    b, s = _signal(name)
    bounds = {"s0": (1.1, 1.3), "f": (0.2, 0.3), "dstar": (0.01, 0.02), "d": (0.0008, 0.0012)}
    fit = IVIMModel(b, method=method, bounds=bounds).fit(s)
    for key, name in (("f", "f"), ("d_mm2_per_s", "d"), ("dstar_mm2_per_s", "dstar")):
        lo, hi = bounds[name]
        assert lo - 1e-10 <= float(fit[key]) <= hi + 1e-10, key


def test_all_tissues_in_one_volume():
    """All 14 tissues as one (2, 7, b) volume give the same maps as fitted one by one."""
    b = np.asarray(DATA["config"]["bvalues"], dtype=float)
    vol = np.stack([_signal(n)[1] for n in TISSUES]).reshape(2, 7, -1)
    fit = IVIMModel(b, method="full", bounds=OSIPI_BOUNDS).fit(vol)
    one = np.array([float(IVIMModel(b, method="full", bounds=OSIPI_BOUNDS).fit(_signal(n)[1]).f)
                    for n in TISSUES])
    np.testing.assert_allclose(fit.f.ravel(), one, rtol=1e-5)
    assert fit.quality.shape == (2, 7) and np.all(fit.quality > 0.99)
