"""End-to-end DCE on perfnode's own phantom: VFA T1 map → signal → concentration → extended Tofts."""

from __future__ import annotations

import numpy as np

from perfnode.perfusion.dce import DCEModel, measured_aif, semi_quantitative
from perfnode.perfusion.signal import spgr_to_concentration
from perfnode.perfusion.t1 import VFAModel
from perfnode.phantoms import common
from perfnode.phantoms import dce as phantom


def test_phantom_pipeline_recovers_truth():
    signal, truth = phantom.simulate(nt=60, dt_s=2.0)
    labels = truth["labels"]
    tissue = (labels > 0) & (labels != common.ARTERY)
    vfa = VFAModel(truth["vfa_flip_angles_deg"], truth["tr_s"]).fit(truth["vfa_signal"], mask=labels > 0,
                                                                    axis=0)
    # noise-free: same SPGR equation on both sides, so T1 and concentration are exact to rounding
    np.testing.assert_allclose(vfa.t1_s[labels > 0], truth["t10_s"][labels > 0], rtol=1e-9)
    onset = int(np.searchsorted(truth["times_s"], min(30.0, truth["times_s"][-1] / 4)))
    conc = spgr_to_concentration(signal, truth["tr_s"], truth["flip_deg"], vfa.t1_s, truth["r1_per_mM_per_s"],
                                 baseline=onset, time_axis=0, mask=labels > 0)
    np.testing.assert_allclose(conc.concentration_mM[labels > 0],
                               np.moveaxis(truth["concentration_mM"], 0, -1)[labels > 0], atol=1e-9)
    fit = DCEModel(truth["times_s"], truth["aif_plasma_mM"], model="extended_tofts").fit(
        conc.concentration_mM, mask=tissue)
    # The phantom convolves on its 2 s frame grid (rectangle rule); perfnode integrates the
    # piecewise-linear AIF exactly. That discretisation difference is ≈ 1 % (≈ 3 % at 6 s frames).
    np.testing.assert_allclose(fit.ktrans_per_min[tissue], truth["ktrans_per_min"][tissue], rtol=0.02)
    np.testing.assert_allclose(fit.ve[tissue], truth["ve"][tissue], rtol=0.02)
    np.testing.assert_allclose(fit.vp[tissue], truth["vp"][tissue], atol=0.005)
    assert np.all(np.isnan(fit.ktrans_per_min[~tissue]))
    semi = semi_quantitative(conc.concentration_mM, truth["times_s"], mask=tissue)
    lesion = labels == common.LESION
    white = labels == common.WHITE
    assert np.nanmedian(semi.iauc60_mM_s[lesion]) > 2 * np.nanmedian(semi.iauc60_mM_s[white])


def test_phantom_with_automatically_measured_aif():
    """The artery voxels of the phantom are found, and their blood curve converted to plasma is the AIF."""
    signal, truth = phantom.simulate(nt=60, dt_s=2.0)
    labels = truth["labels"]
    conc = np.moveaxis(truth["concentration_mM"], 0, -1)
    aif, info = measured_aif(conc, truth["times_s"], mask=labels > 0, hematocrit=truth["hct"])
    assert all(labels[v] == common.ARTERY for v in info["voxels"])
    np.testing.assert_allclose(aif, truth["aif_plasma_mM"], rtol=1e-9, atol=1e-12)
    lesion = labels == common.LESION
    fit = DCEModel(truth["times_s"], aif, model="extended_tofts").fit(conc, mask=lesion)
    np.testing.assert_allclose(fit.ktrans_per_min[lesion], truth["ktrans_per_min"][lesion], rtol=0.02)
