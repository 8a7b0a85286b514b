"""The forward models reproduce their own ground truth (closed forms, stated tolerances)."""

from __future__ import annotations

import numpy as np
import pytest

from perfnode.phantoms import asl, ctp, dce, dsc, ivim
from perfnode.phantoms.common import ARTERY, GREY, LESION, WHITE, convolve_residue


def test_convolution_matches_numpy_convolve():
    rng = np.random.default_rng(3)
    a, r = rng.random((30, 4)), rng.random((30, 4))
    out = convolve_residue(a, r, 0.5)
    for v in range(4):
        np.testing.assert_allclose(
            out[:, v], 0.5 * np.convolve(a[:, v], r[:, v])[:30], rtol=1e-10, atol=1e-12
        )


def test_dsc_central_volume_theorem_and_signal_equation():
    # Long acquisition so that the bolus passes completely: CBV = (kH/ρ) ∫Ct / ∫Ca.
    signal, t = dsc.simulate(nz=1, ny=16, nx=16, nt=160, dt_s=0.5)
    conc, aif, labels = t["concentration_mM"], t["aif_mM"], t["labels"]
    for region, cbv in ((GREY, 4.0), (WHITE, 2.0), (LESION, 1.5)):
        v = labels == region
        ratio = t["kh"] / t["rho_g_per_ml"] * conc[:, v].sum(0) / aif.sum() * 100
        np.testing.assert_allclose(ratio, cbv, rtol=0.02)  # 2 %: residue tail beyond 80 s
    # S = S0·exp(−TE·k·C) inverts exactly
    back = -np.log(signal / t["s0"][None]) / t["te_s"] / t["k_r2star_per_s_per_mM"]
    np.testing.assert_allclose(back, conc, atol=1e-9)
    np.testing.assert_allclose(t["mtt_s"][labels == GREY], 4.0 / 60.0 * 60.0, rtol=1e-12)
    # the artery voxels carry the AIF, and the tissue bolus arrives later (delay > 0)
    art = labels == ARTERY
    np.testing.assert_allclose(conc[:, art][:, 0], aif)
    assert np.argmax(conc[:, labels == LESION].mean(1)) > np.argmax(aif)


def test_ctp_baseline_and_cbv_in_hu():
    hu, t = ctp.simulate(nz=1, nt=160, dt_s=0.5)
    labels = t["labels"]
    np.testing.assert_allclose(hu[0], t["baseline_hu"])  # no contrast before the bolus
    enh = hu - t["baseline_hu"][None]
    g = labels == GREY
    cbv = t["kh"] / t["rho_g_per_ml"] * enh[:, g].sum(0) / t["aif_hu"].sum() * 100
    np.testing.assert_allclose(cbv, 4.0, rtol=0.02)


def test_dce_vfa_gives_t1_and_tofts_plateau():
    signal, t = dce.simulate(nz=1, nt=40, dt_s=6.0)
    labels = t["labels"]
    # DESPOT1 linearisation of the VFA images: S/sinα = E1·S/tanα + M0(1−E1) — exact without noise.
    a = np.deg2rad(t["vfa_flip_angles_deg"])[:, None]
    s = t["vfa_signal"].reshape(len(a), -1)
    y, x = s / np.sin(a), s / np.tan(a)
    slope = ((x - x.mean(0)) * (y - y.mean(0))).sum(0) / ((x - x.mean(0)) ** 2).sum(0)
    t1 = -t["tr_s"] / np.log(slope)
    np.testing.assert_allclose(t1.reshape(labels.shape), t["t10_s"], rtol=1e-6)
    # Before the bolus the dynamic signal is the pre-contrast SPGR signal.
    pre = dce.spgr(t["m0"], 1 / t["t10_s"], t["tr_s"], t["flip_deg"])
    np.testing.assert_allclose(signal[0], pre, rtol=1e-12)
    # Extended Tofts: the lesion leaks most (highest late concentration).
    late = t["concentration_mM"][-1]
    assert late[labels == LESION].mean() > late[labels == GREY].mean() > 0


def test_asl_white_paper_inversion_returns_cbf():
    signal, t = asl.simulate(nz=1, n_pairs=4)
    control, label = signal[:, 0, 0].mean(0), signal[:, 0, 1].mean(0)
    pld, tau, t1b = t["plds_s"][0], t["label_duration_s"], t["t1_blood_s"]
    m0 = t["m0"]
    cbf = (
        6000
        * t["lambda"]
        * (control - label)
        * np.exp(pld / t1b)
        / (2 * t["alpha"] * t1b * m0 * (1 - np.exp(-tau / t1b)))
    )
    labels = t["labels"]
    for region in (GREY, WHITE, LESION):
        np.testing.assert_allclose(
            cbf[labels == region], t["cbf_ml_per_100g_per_min"][labels == region], rtol=1e-9
        )


def test_ivim_biexponential():
    signal, t = ivim.simulate(nz=1)
    b = t["b_values_s_per_mm2"]
    np.testing.assert_allclose(signal[b == 0][0], t["s0"])
    g = t["labels"] == GREY
    # at high b the pseudo-diffusion part has vanished: log-slope between b = 400 and 800 gives D
    s400, s800 = signal[b == 400][0][g], signal[b == 800][0][g]
    d = np.log(s400 / s800) / 400
    np.testing.assert_allclose(d, t["d_mm2_per_s"][g], rtol=1e-2)  # f·e^(−b·D*) left: < 1 %
    assert (t["directions"][b > 0] != 0).any(axis=1).all()


@pytest.mark.parametrize("mod", [dsc, ctp, dce, ivim])
def test_noise_follows_snr_and_seed(mod):
    a, _ = mod.simulate(nz=1, snr=20, seed=1)
    b, _ = mod.simulate(nz=1, snr=20, seed=1)
    c, _ = mod.simulate(nz=1, snr=20, seed=2)
    clean, _ = mod.simulate(nz=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0 < np.std(a - clean) < np.abs(clean).max()


@pytest.mark.parametrize("mod", [dsc, dce, ivim])
def test_snr_is_that_of_the_first_tissue_images(mod):
    """``--snr X`` means the same for every MR phantom: mean tissue signal of the first image over σ."""
    noisy, truth = mod.simulate(nz=4, snr=25, seed=3)
    clean, _ = mod.simulate(nz=4)
    tissue = truth["labels"] > 0
    first = clean[0][tissue]
    sigma = np.std((noisy - clean)[0][tissue & (clean[0] > 0.5 * first.mean())])  # Rician ≈ Gaussian there
    assert first.mean() / sigma == pytest.approx(25, rel=0.15)
