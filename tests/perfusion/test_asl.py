"""ASL: CBF (and ATT) recovery on signals simulated with the Buxton general kinetic model.

The simulation integrates Buxton's convolution numerically (delivery · residue · relaxation, 1 ms
steps), independently of the closed forms in perfnode.perfusion.asl:
``ΔM(t) = 2·(M0/λ)·f·∫ c(u)·exp(−(t−u)/T1b) du``, with delivery ``c(u) = α·exp(−ATT/T1b)`` while
labelled blood arrives (pCASL: ATT ≤ u < ATT + τ; PASL: ``c(u) = α·exp(−u/T1b)`` for ATT ≤ u < ATT + TI1).
"""

from __future__ import annotations

import numpy as np
import pytest

from perfnode.perfusion.asl import AslModel, MultiPldAslModel, pair_differences, t1_blood_for

LAM = 0.9


def buxton_delta_m(t_read: np.ndarray, cbf: np.ndarray, att: np.ndarray, m0: np.ndarray, *,
                   labeling: str, duration: float, t1b: float, alpha: float) -> np.ndarray:
    """ΔM at readout times ``t_read`` (s from the start of labelling) for voxels (n,) → (n, len(t_read))."""
    f = cbf / 6000.0  # ml/g/s
    du = 0.001
    out = np.empty((cbf.size, t_read.size))
    for j, t in enumerate(t_read):
        u = np.arange(0.0, t, du) + du / 2  # arrival time of the labelled blood
        arriving = (u[None] >= att[:, None]) & (u[None] < att[:, None] + duration)
        if labeling == "pcasl":
            c = alpha * np.exp(-att[:, None] / t1b) * arriving
        else:
            c = alpha * np.exp(-u[None] / t1b) * arriving
        out[:, j] = (c * np.exp(-(t - u[None]) / t1b)).sum(axis=1) * du
    return 2.0 * (m0 / LAM)[:, None] * f[:, None] * out


def frames_from(delta_m: np.ndarray, control: np.ndarray, rng: np.random.Generator, sd: float,
                n_rep: int = 1) -> np.ndarray:
    """Interleaved control, label frames (control first) with Gaussian noise."""
    c = np.repeat(control[:, None], delta_m.shape[1] * n_rep, axis=1)
    lab = c - np.tile(delta_m, (1, n_rep))
    out = np.empty((delta_m.shape[0], 2 * c.shape[1]))
    out[:, 0::2], out[:, 1::2] = c, lab
    return out + rng.normal(0.0, sd, out.shape) if sd else out


def test_consensus_constants() -> None:
    assert t1_blood_for(3.0) == 1.65 and t1_blood_for(1.5) == 1.35
    m = AslModel("pcasl", pld_s=1.8, labeling_duration_s=1.8)
    assert (m.alpha, m.lam, m.t1b) == (0.85, 0.9, 1.65)
    p = AslModel("pasl", pld_s=1.8, bolus_duration_s=0.8, field_strength_t=1.5)
    assert (p.alpha, p.t1b) == (0.98, 1.35)
    with pytest.raises(ValueError, match=r"\(0018,0087\) MagneticFieldStrength 7 T"):
        AslModel("pcasl", pld_s=1.8, labeling_duration_s=1.8, field_strength_t=7.0)


def test_pair_order_and_odd_frame_count() -> None:
    frames = np.array([[10.0, 9.0, 10.0, 8.0]])
    np.testing.assert_allclose(pair_differences(frames, "control_label"), [[1.0, 2.0]])
    np.testing.assert_allclose(pair_differences(frames, "label_control"), [[-1.0, -2.0]])
    with pytest.raises(ValueError, match="even number"):
        pair_differences(np.ones((1, 5)))


@pytest.mark.parametrize("labeling", ["pcasl", "pasl"])
def test_single_pld_white_paper_recovers_cbf(labeling: str) -> None:
    # Consensus protocols: pCASL τ = PLD = 1.8 s; PASL TI1 = 0.8 s, TI = 1.8 s. ATT 0.5–1.0 s is shorter
    # than PLD (the formula's assumption), so noise-free recovery is exact up to the 1 ms simulation
    # step (0.5 %). With noise (SD 2 % of ΔM per frame, 30 pairs) the median over 200 voxels is within 2 %.
    rng = np.random.default_rng(11)
    cbf = rng.uniform(20, 80, 200)
    att = rng.uniform(0.5, 1.0, 200)
    m0 = rng.uniform(800, 1200, 200)
    dur = 1.8 if labeling == "pcasl" else 0.8
    kw = {"labeling_duration_s": dur} if labeling == "pcasl" else {"bolus_duration_s": dur}
    model = AslModel(labeling, pld_s=1.8, **kw)
    t_read = np.array([1.8 + (dur if labeling == "pcasl" else 0.0)])
    dm = buxton_delta_m(t_read, cbf, att, m0, labeling=labeling, duration=dur, t1b=1.65, alpha=model.alpha)
    fit = model.fit(frames_from(dm, m0 * 0.9, rng, 0.0).reshape(10, 20, -1), m0.reshape(10, 20))
    np.testing.assert_allclose(fit.cbf.ravel(), cbf, rtol=0.005)
    assert fit.units["cbf"] == "ml/100g/min" and np.all(fit.quality == 1.0)
    noisy = frames_from(dm, m0 * 0.9, rng, 0.02 * dm.mean(), n_rep=30)
    nf = model.fit(noisy, m0)
    assert np.median(nf.cbf / cbf) == pytest.approx(1.0, abs=0.02)
    assert fit.provenance["labeling_efficiency"] == model.alpha and fit.provenance["n_pairs"] == 1


def test_bad_m0_is_nan_with_reason() -> None:
    model = AslModel("pcasl", pld_s=1.8, labeling_duration_s=1.8)
    fit = model.fit(np.array([[100.0, 99.0], [100.0, 99.0]]), np.array([1000.0, 0.0]))
    assert np.isfinite(fit.cbf[0]) and np.isnan(fit.cbf[1])
    assert fit.failures["M0 not positive or data not finite"] == 1


PLDS = np.array([0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5])  # Woods et al. 2024 style


def test_multi_pld_pcasl_recovers_cbf_and_att() -> None:
    # Noise free: CBF within 1 % and ATT within 0.02 s (ATT grid 10 ms with parabolic refinement;
    # 1 ms simulation step). ATT 0.5–2.0 s covers arrival before and after some PLDs.
    rng = np.random.default_rng(5)
    n = 300
    cbf, att = rng.uniform(15, 90, n), rng.uniform(0.5, 2.0, n)
    m0 = np.full(n, 1000.0)
    model = MultiPldAslModel("pcasl", plds_s=PLDS, labeling_duration_s=1.8)
    dm = buxton_delta_m(PLDS + 1.8, cbf, att, m0, labeling="pcasl", duration=1.8, t1b=1.65, alpha=0.85)
    fit = model.fit(frames_from(dm, m0, rng, 0.0), m0)
    np.testing.assert_allclose(fit.cbf, cbf, rtol=0.01)
    np.testing.assert_allclose(fit.att_s, att, atol=0.02)
    assert np.all(fit.quality > 0.999) and not fit.failures
    # noise SD 1 ΔM-unit per frame (M0 1000; ΔM ≈ 3–9), 8 repeats: medians of the ratio within 3 %, ATT 0.05 s
    noisy = frames_from(np.tile(dm, (1, 1)), m0, rng, 1.0, n_rep=8)
    model8 = MultiPldAslModel("pcasl", plds_s=np.tile(PLDS, 8), labeling_duration_s=1.8)
    nf = model8.fit(noisy, m0)
    assert np.nanmedian(nf.cbf / cbf) == pytest.approx(1.0, abs=0.03)
    assert np.nanmedian(np.abs(nf.att_s - att)) < 0.05
    assert fit.units == {"cbf": "ml/100g/min", "att_s": "s"}


def test_multi_ti_pasl_recovers_cbf_and_att() -> None:
    rng = np.random.default_rng(6)
    cbf, att = rng.uniform(20, 80, 50), rng.uniform(0.4, 1.2, 50)
    m0 = np.full(50, 1000.0)
    tis = np.array([0.3, 0.6, 0.9, 1.2, 1.5, 1.8, 2.1, 2.4])
    dm = buxton_delta_m(tis, cbf, att, m0, labeling="pasl", duration=0.8, t1b=1.65, alpha=0.98)
    fit = MultiPldAslModel("pasl", plds_s=tis, labeling_duration_s=0.8).fit(frames_from(dm, m0, rng, 0.0), m0)
    np.testing.assert_allclose(fit.cbf, cbf, rtol=0.01)
    np.testing.assert_allclose(fit.att_s, att, atol=0.02)
