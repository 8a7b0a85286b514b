"""DCE models against the OSIPI DCE reference data, with the tolerances of DCEmodels_data.py."""

from __future__ import annotations

import numpy as np
import pytest

from perfnode.perfusion.dce import DCEModel
from perfnode.perfusion.population_aif import parker_aif
from tests.perfusion.refdata import arr, cases, read_rows

TOFTS = "dce/dce_DRO_data_tofts.csv"
PATLAK = "dce/patlak_sd_0.02_delay_0.csv"


def _close(value, ref, atol, rtol):
    np.testing.assert_allclose(float(value), ref, atol=atol, rtol=rtol)


@pytest.mark.parametrize("method", ["nlls", "linear"])
@pytest.mark.parametrize("row", cases(TOFTS))
def test_tofts_qiba_dro(row, method):
    fit = DCEModel(arr(row["t"]), arr(row["ca"]), model="tofts", method=method).fit(arr(row["C"]))
    _close(fit.ktrans_per_min, float(row["Ktrans"]), 0.005, 0.1)
    _close(fit.ve, float(row["ve"]), 0.05, 0)


@pytest.mark.parametrize("row", cases(TOFTS))
def test_tofts_qiba_dro_delayed(row):
    """OSIPI's delayed variant: tissue curve shifted right by 10 samples (5 s), delay fitted within ±10 s."""
    c = arr(row["C"])
    c_delayed = np.concatenate([np.zeros(10), c[:-10]])
    t = arr(row["t"])
    fit = DCEModel(t, arr(row["ca"]), model="tofts", fit_delay=True).fit(c_delayed)
    _close(fit.ktrans_per_min, float(row["Ktrans"]), 0.005, 0.1)
    _close(fit.ve, float(row["ve"]), 0.05, 0)
    _close(fit.delay_s, float(row["arterialdelay"]) + t[10], 1.0, 0)


@pytest.mark.parametrize("method", ["nlls", "linear"])
@pytest.mark.parametrize("row", cases(PATLAK))
def test_patlak(row, method):
    fit = DCEModel(arr(row["t"]), arr(row["cp_aif"]), model="patlak", method=method).fit(arr(row["C_t"]))
    _close(fit.vp, float(row["vp"]), 0.025, 0)
    _close(fit.ps_per_min, float(row["ps"]), 0.005, 0.1)


def test_parker_aif_reproduces_patlak_file_aif():
    rows = read_rows(PATLAK)
    t, cp = arr(rows[0]["t"]), arr(rows[0]["cp_aif"])
    np.testing.assert_allclose(parker_aif(t, hematocrit=0.42, t_start_s=10.0), cp, atol=5e-5, rtol=0)
    assert t[np.argmax(cp)] == 20.25


def test_patlak_with_parker_population_aif_all_cases_in_one_call():
    """The whole file as one (9, t) volume, the AIF built from the Parker formula instead of the column."""
    rows = read_rows(PATLAK)
    c = np.stack([arr(r["C_t"]) for r in rows])
    fit = DCEModel(arr(rows[0]["t"]), "parker", model="patlak", hematocrit=0.42, aif_start_s=10.0).fit(c)
    ref_vp = np.array([float(r["vp"]) for r in rows])
    ref_ps = np.array([float(r["ps"]) for r in rows])
    np.testing.assert_allclose(fit.vp, ref_vp, atol=0.025, rtol=0)
    np.testing.assert_allclose(fit.ps_per_min, ref_ps, atol=0.005, rtol=0.1)
    assert fit.provenance["aif"].startswith("Parker")
