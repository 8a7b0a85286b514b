"""DCE without a T1 map: the AIF voxels are converted with the T1 of blood at the field strength
(Alsop et al. 2015: 1650 ms at 3 T), not the tissue default (issue 14: Ktrans −30 %)."""

from __future__ import annotations

import numpy as np
import pydicom

from perfnode.dicom import frames
from perfnode.perfusion.signal import spgr_to_concentration
from perfnode.phantoms import make
from perfnode.pipeline.analysis import fit_series
from perfnode.techniques.dce import DEFAULTS, blood_t1


def test_blood_t1_by_field_strength():
    assert blood_t1(3.0)[0] == 1.65 and blood_t1(1.5)[0] == 1.35
    t1, note = blood_t1(7.0)
    assert t1 == 1.65 and "nearest" in note


def test_aif_without_t1_map_uses_blood_t1(tmp_path):
    make("dce", "single", tmp_path, seed=2, snr=30)
    files = sorted(str(p) for p in (tmp_path / "series01").iterdir())
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    vol = frames.assemble(files)
    truth = np.load(tmp_path / "truth.npz")
    fit = fit_series("dce", vol, headers, [])  # no VFA series in the study
    assert "1650 ms at 3 T" in fit.provenance["aif_t1_blood"]
    aif = np.asarray(fit.provenance["aif_curve"])
    true_peak = truth["aif_blood_mM"].max()
    assert abs(aif.max() / true_peak - 1) < 0.06  # measured 3 %
    # what the tissue default would have given on the same voxels: a clearly wrong AIF
    voxels = tuple(np.array(v) for v in zip(*fit.provenance["aif_voxels_zyx"], strict=True))
    wrong = spgr_to_concentration(vol.data[(slice(None), *voxels)], 0.004, 15.0, DEFAULTS["dce_t10_s"], 4.5,
                                  baseline=tuple(fit.provenance["baseline_frames"]), time_axis=0)
    wrong_peak = np.nanmean(wrong.maps["concentration_mM"], axis=0).max()
    assert wrong_peak / true_peak > 1.15
