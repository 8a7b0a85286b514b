"""The rules read the Enhanced MR objects of ``perfnode/phantoms`` (functional groups), checked against
the phantoms' own protocol: facts equal what the phantom declares; findings follow from the ESR numbers."""

from __future__ import annotations

import numpy as np
import pytest

from perfnode.phantoms import dsc as dsc_phantom
from perfnode.phantoms import ivim as ivim_phantom
from perfnode.phantoms import make
from perfnode.pipeline.analysis import fit_series
from perfnode.qc.series import analyse, pick_series, read_headers
from tests.qc.test_compliance import PROTOCOLS, rule_ids


def _analyse(technique, tmp_path, **kw):
    make(technique, "single", tmp_path / technique)
    headers, study = pick_series(read_headers([tmp_path / technique]))
    return analyse(headers, study=study, protocols=PROTOCOLS, **kw).qc


def test_dsc_phantom_facts_and_findings(tmp_path):
    qc = _analyse("dsc", tmp_path)
    p = dsc_phantom.PROTOCOL
    assert qc.technique == "dsc"
    assert qc.facts["echo_time_ms"].value == pytest.approx(p["te_ms"])
    assert qc.facts["flip_angle_deg"].value == pytest.approx(p["flip_deg"])
    assert qc.facts["field_strength_t"].value == pytest.approx(p["field_t"])
    assert qc.facts["temporal_resolution_s"].value == pytest.approx(1.5)  # phantom default dt
    ids = rule_ids(qc.protocol)
    assert ("dsc.flip_angle" in ids) == (not 60 <= p["flip_deg"] <= 70)
    assert ("dsc.te.3t" in ids) == (not 25 <= p["te_ms"] <= 35)
    assert "dsc.temporal_resolution" not in ids
    # 20 frames of 1.5 s: too short and too few baseline dynamics for the ESR protocol
    assert {"dsc.duration", "dsc.baseline_dynamics"} <= set(ids)


def test_ivim_phantom_is_compliant_or_says_why(tmp_path):
    qc = _analyse("ivim", tmp_path)
    b = set(qc.facts["b_values"].value)
    assert b == {float(x) for x in ivim_phantom.acquisitions()[0]}
    expected = set()
    if 0.0 not in b:
        expected.add("ivim.b0")
    if not any(190 <= x <= 210 for x in b):
        expected.add("ivim.b200")
    if not any(500 <= x <= 1000 for x in b):
        expected.add("ivim.b_upper")
    if qc.facts["n_diffusion_directions"].value < 3:
        expected.add("ivim.directions")
    warnings = {i for i, f in zip(rule_ids(qc.protocol), qc.protocol, strict=True) if f.severity != "info"}
    assert warnings == expected


def test_asl_phantom_labelling_read_from_the_functional_groups(tmp_path):
    qc = _analyse("asl", tmp_path)
    assert qc.technique == "asl"
    assert qc.facts["asl_labelling_type"].value == "PCASL"
    assert qc.facts["labelling_duration_ms"].value == pytest.approx(1800.0)  # stored in µs by the phantom
    assert qc.facts["post_labelling_delay_ms"].value == pytest.approx(1800.0)
    assert qc.facts["m0_present"].value is True
    assert not [f for f in qc.protocol if f.severity != "info"]


@pytest.mark.slow
def test_ivim_report_shows_the_decay_and_fitted_maps(tmp_path):
    import json

    import numpy as np

    from perfnode.qc.series import report_files

    make("ivim", "single", tmp_path / "ivim")
    page, a = report_files([tmp_path / "ivim"], tmp_path / "out", fitter=fit_series)
    b, signal = a.decay
    assert list(b) == sorted({float(x) for x in ivim_phantom.acquisitions()[0]})
    assert np.all(np.diff(signal) < 0)  # signal falls with b, fastest in the pseudo-diffusion regime
    slope_low = -np.diff(np.log(signal[b <= 200])) / np.diff(b[b <= 200])
    slope_high = -np.diff(np.log(signal[b >= 200])) / np.diff(b[b >= 200])
    assert slope_low.mean() > slope_high.mean()
    assert set(a.fit.units) >= {"f", "d_mm2_per_s", "dstar_mm2_per_s"}
    text = page.read_text()
    assert 'src="decay.png"' in text and "f (1)" in text
    assert json.loads((page.parent / "qc.json").read_text())["protocol"] == []


def test_asl_report_shows_control_minus_label(tmp_path):
    from perfnode.qc.series import report_files

    make("asl", "single", tmp_path / "asl")
    page, a = report_files([tmp_path / "asl"], tmp_path / "out")
    dm, unit = a.images["control − label (ΔM)"]
    tissue = dm[np.abs(dm) > 0.05 * np.abs(dm).max()]
    assert tissue.size > 0 and (tissue > 0).mean() > 0.95  # labelled blood lowers the label images
    assert "control − label (ΔM)" in page.read_text()


def _region_median(values, labels, region):
    return float(np.nanmedian(np.asarray(values)[labels == region]))


@pytest.mark.slow
@pytest.mark.parametrize(("technique", "name", "truth_name", "tolerance"), [
    # the tolerances of the pipeline's end-to-end test, which fits with the same function
    ("ctp", "cbf", "cbf_ml_per_100g_per_min", {"rel": 0.35}),
    ("dce", "ktrans_per_min", "ktrans_per_min", {"rel": 0.15, "abs": 0.005}),  # + the VFA T1 series
    ("asl", "cbf", "cbf_ml_per_100g_per_min", {"rel": 0.10}),  # with the folder's M0 series
])
def test_report_fits_what_a_job_fits(tmp_path, technique, name, truth_name, tolerance):
    """``perfnode report`` on a folder fits the technique's model with the pipeline's own function,
    the folder's other series serving as the study (M0, variable-flip-angle T1)."""
    from perfnode.qc.series import report_files

    make(technique, "single", tmp_path / technique, seed=11)
    page, a = report_files([tmp_path / technique], tmp_path / "out", fitter=fit_series)
    assert a.fit is not None, a.notes
    assert not [n for n in a.notes if "could not be fitted" in n]
    truth = np.load(tmp_path / technique / "truth.npz")
    labels = truth["labels"]
    for region in (1, 2, 3):
        assert _region_median(a.fit.maps[name], labels, region) == pytest.approx(
            _region_median(truth[truth_name], labels, region), **tolerance)
    if technique == "dce":
        assert "VFA T1 map of series" in a.fit.provenance["t10_source"]
        assert a.aif is not None and a.aif_label == "concentration (mM)"
    assert f"{name} (" in page.read_text()


def test_report_says_why_a_model_cannot_run(tmp_path):
    """An ASL series without its M0 series: the report is written, shows the perfusion-weighted ΔM and
    says that CBF needs an M0."""
    from perfnode.qc.series import pick_series, report_files

    make("asl", "single", tmp_path / "asl")
    headers, _ = pick_series(read_headers([tmp_path / "asl"]))
    page, a = report_files([h.filename for h in headers], tmp_path / "out", fitter=fit_series)
    assert set(a.fit.maps) == {"delta_m"}
    assert any("CBF needs an M0 image" in n for n in a.notes), a.notes
    assert "CBF needs an M0 image" in page.read_text()
