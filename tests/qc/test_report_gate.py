"""Issue 14: ``perfnode report`` said "Data quality: passed — every applicable rule passed" for the DSC
phantom at SNR 20 whose MTT map held values down to −40 s. The quality gate's verdict is now the
report's first line and impossible values are masked and counted."""

from __future__ import annotations

import json

import numpy as np

from perfnode.phantoms import make
from perfnode.pipeline.analysis import fit_series
from perfnode.qc.series import report_files


def test_report_of_a_noisy_dsc_series_says_first_that_its_maps_are_not_reliable(tmp_path):
    make("dsc", "single", tmp_path / "dsc", seed=0, snr=20)
    steps: list[str] = []
    page, a = report_files([tmp_path / "dsc"], tmp_path / "out", fitter=fit_series, progress=steps.append)
    assert steps[0].startswith("assembling") and any(s.startswith("fitting the DSC model") for s in steps)
    html = page.read_text()
    verdict = html.index("Maps not reliable because")
    assert verdict < html.index("Protocol compliance")  # before everything else
    summary = json.loads((tmp_path / "out" / "qc.json").read_text())
    gate = summary["quality_gate"]
    assert gate["passed"] is False and gate["verdict"].startswith("not reliable because")
    assert np.nanmin(a.fit.maps["mtt_s"]) > 0  # no negative transit time shown
    assert "out_of_range" in gate["maps"]["mtt_s"]  # counted (masking itself: tests/qc/test_gate.py)
    assert gate["measures"]["tissue_cnr"] < gate["thresholds"]["min_tissue_cnr"]


def test_report_of_a_clean_series_says_reliable(tmp_path):
    make("dsc", "single", tmp_path / "dsc", seed=0)
    page, _ = report_files([tmp_path / "dsc"], tmp_path / "out", fitter=fit_series)
    assert "Maps reliable: every quality-gate check passed" in page.read_text()
