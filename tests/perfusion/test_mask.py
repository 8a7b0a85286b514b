"""The one foreground mask (perfnode.perfusion.mask) on phantoms with a known object."""

from __future__ import annotations

import numpy as np

from perfnode.perfusion.mask import foreground
from perfnode.phantoms import ctp, dsc


def test_mr_mask_is_the_head_even_through_the_bolus_and_at_low_snr() -> None:
    signal, truth = dsc.simulate(nz=2, ny=24, nx=24, nt=40, snr=10, seed=3)
    mask = foreground(signal)
    head = truth["labels"] > 0
    # the bolus halves the grey-matter signal for a few frames and drops arterial signal to ~10 %:
    # the temporal median ignores that; Rician background noise (mean ≈ 1.25 σ ≈ 0.11 S0) stays out
    assert np.array_equal(mask, head)


def test_ct_mask_is_soft_tissue_not_air() -> None:
    hu, truth = ctp.simulate(nz=2, ny=16, nx=16, nt=30, snr=20, seed=1)
    assert np.array_equal(foreground(hu, "CT"), truth["labels"] > 0)


def test_single_image_and_empty_input() -> None:
    img = np.zeros((4, 4))
    img[1:3, 1:3] = 100.0
    assert foreground(img, time_axis=None).sum() == 4
    assert not foreground(np.full((3, 2, 2), np.nan)).any()
