"""CT perfusion of a stroke: an ischaemic core (CBF 10) inside a penumbra (CBF 25), grey matter 55.

Issue 14: fitted voxel by voxel without denoising, the core's CBF came out about 2× high (measured here:
+171 % at SNR 30). The node's CT setting (perfnode.techniques.ctp: guided TIPS denoising, AIF scaled by
the venous output, exponential-residue fit with the flow tied to the area ratio) gets the core and the
ratios right where the contrast-to-noise after denoising passes the quality gate, and the gate holds the
maps where it does not. SNR is the arterial peak enhancement (350 HU) over the noise SD (SNR 30:
σ ≈ 12 HU; 100: 3.5 HU). ROIs are drawn 2 voxels inside each region.

At clinical noise (SNR 20–50) the core is not within the issue's 20 % on every noise draw (4 seeds,
SNR 30: core −17…+22 %, penumbra/core −19…+15 %; benchmarks/accuracy.py): its enhancement peaks at
≈ 4 HU under 12 HU of noise per voxel, and its 400 voxels hold too little information. The gate holds
those maps (CNR after denoising ≈ 8–13 < 20)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from perfnode.perfusion.ctp import CtpModel
from perfnode.perfusion.mask import foreground
from perfnode.phantoms import common, ctp
from perfnode.qc.gate import judge
from perfnode.techniques.ctp import DECONVOLUTION, DENOISE


def _roi(truth, region):
    inside = (truth["labels"] == region) & (truth["artery_fraction"] == 0)
    return binary_erosion(inside, structure=np.ones((1, 5, 5)))


def _fit(snr: float, **kw):
    hu, truth = ctp.simulate(4, 64, 64, 60, snr=snr, seed=0, realistic=True)
    mask = foreground(hu, "CT")
    settings = {"method": DECONVOLUTION, "denoise": DENOISE, "vof": "auto", **kw}
    fit = CtpModel(truth["times_s"], **settings).fit(hu, mask=mask, time_axis=0)
    return fit, truth, judge(fit, "ctp", data=hu, mask=mask)


def test_core_and_penumbra_right_when_the_gate_passes():
    fit, truth, gate = _fit(100)
    assert gate.passed, gate.reasons
    core = np.nanmedian(fit.cbf[_roi(truth, common.LESION)])
    penumbra = np.nanmedian(fit.cbf[_roi(truth, common.PENUMBRA)])
    grey = np.nanmedian(fit.cbf[_roi(truth, common.GREY)])
    assert core == pytest.approx(10.0, rel=0.20)  # measured +2 % (seeds 1–3: −9…+5 %)
    assert penumbra / core == pytest.approx(25.0 / 10.0, rel=0.15)  # measured −2 % (−8…+6 %)
    assert grey / core == pytest.approx(55.0 / 10.0, rel=0.15)  # measured −6 % (−10…+2 %)
    pv = common.REALISTIC["artery_core_fraction"]
    assert fit.provenance["vof_scale"] == pytest.approx(1 / pv, rel=0.05)
    assert "TIPS" in fit.provenance["denoising"] and "guided" in fit.provenance["denoising"]
    assert "tied" in fit.provenance["residue_model"]


@pytest.mark.parametrize("snr", [10, 20, 30, 50])  # the noise sweep below SNR 100
def test_at_clinical_noise_the_gate_holds_the_maps(snr):
    fit, truth, gate = _fit(snr)  # CNR after denoising ≈ 3, 5.3, 7.7, 13
    assert not gate.passed and any("contrast-to-noise" in r for r in gate.reasons)
    if snr >= 20:  # denoising still helps: the core no longer comes out twice too high
        assert np.nanmedian(fit.cbf[_roi(truth, common.LESION)]) < 1.6 * 10.0  # measured +50, +22, +9 %


def test_without_denoising_the_core_is_overestimated_twofold_and_held():
    fit, truth, gate = _fit(30, method="osvd", denoise=False)
    assert np.nanmedian(fit.cbf[_roi(truth, common.LESION)]) > 2 * 10.0  # the finding
    assert not gate.passed and any("contrast-to-noise" in r for r in gate.reasons)
