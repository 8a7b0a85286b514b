"""CT perfusion of a stroke: an ischaemic core (CBF 10) inside a penumbra (CBF 25) at clinical noise.

Issue 14: fitted voxel by voxel without denoising, the core's CBF came out about 2× high (measured here:
+171 % at SNR 30). With TIPS denoising (Mendrik 2011), the automatic AIF scaled by the venous output
and oSVD (the node's CT setting, perfnode.techniques.ctp), the numbers a stroke team reads are right.
SNR is the arterial peak enhancement (350 HU) over the noise SD: 30 is σ ≈ 12 HU, per-voxel noise of thin
CTP source images. ROIs are drawn 2 voxels inside each region (the filter's reach)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from perfnode.perfusion.ctp import CtpModel
from perfnode.perfusion.mask import foreground
from perfnode.phantoms import common, ctp
from perfnode.qc.gate import judge


def _roi(truth, region):
    inside = (truth["labels"] == region) & (truth["artery_fraction"] == 0)
    return binary_erosion(inside, structure=np.ones((1, 5, 5)))


@pytest.fixture(scope="module")
def stroke():
    hu, truth = ctp.simulate(4, 64, 64, 60, snr=30, seed=0, realistic=True)
    return hu, truth, foreground(hu, "CT")


def test_core_and_penumbra_at_clinical_noise(stroke):
    hu, truth, mask = stroke
    fit = CtpModel(truth["times_s"], method="osvd", denoise=True, vof="auto").fit(hu, mask=mask, time_axis=0)
    core = np.nanmedian(fit.cbf[_roi(truth, common.LESION)])
    penumbra = np.nanmedian(fit.cbf[_roi(truth, common.PENUMBRA)])
    assert core == pytest.approx(10.0, rel=0.20)  # measured −1 %
    assert penumbra / core == pytest.approx(25.0 / 10.0, rel=0.15)  # measured −12 %
    pv = common.REALISTIC["artery_core_fraction"]
    assert fit.provenance["vof_scale"] == pytest.approx(1 / pv, rel=0.05)
    assert "TIPS" in fit.provenance["denoising"]
    gate = judge(fit, "ctp", data=hu, mask=mask)
    assert gate.passed, gate.reasons


def test_without_denoising_the_core_is_overestimated_and_the_gate_holds_it(stroke):
    hu, truth, mask = stroke
    fit = CtpModel(truth["times_s"], method="osvd", vof="auto").fit(hu, mask=mask, time_axis=0)
    core = np.nanmedian(fit.cbf[_roi(truth, common.LESION)])
    assert core > 2 * 10.0  # the finding
    gate = judge(fit, "ctp", data=hu, mask=mask)
    assert not gate.passed and any("contrast-to-noise" in r for r in gate.reasons)
