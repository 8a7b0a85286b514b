"""``perfnode check`` judges each series by what it is: ASL and diffusion are not held to the contrast
perfusion (PERF) rules, derived objects (a vendor's perfusion map, perfnode's own maps) by the rules for
derived objects, and the facts it reports are the ones the report measures."""

from __future__ import annotations

import json

import pytest
from pydicom.data import get_testdata_file

from perfnode.cli import main
from perfnode.phantoms import make
from perfnode.qc.series import report_files


def check_json(capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["check", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_asl_is_not_asked_for_contrast_perfusion_attributes(tmp_path, capsys):
    make("asl", "single", tmp_path)
    code, report = check_json(capsys, str(tmp_path / "series01"))
    (series,) = report["series"]
    assert series["technique"] == "asl" and series["object"] == "acquisition"
    (perf,) = series["sections"]["IHE PERF profile"]
    assert perf["severity"] == "info" and "not a contrast perfusion object" in perf["found"]
    every = [f for findings in series["sections"].values() for f in findings]
    assert not [f for f in every if "Contrast" in f["keyword"] or "value 3" in f["found"]]
    assert code == 0 and report["errors"] == 0


def test_a_vendor_derived_perfusion_map_is_judged_as_a_derived_object(capsys):
    """pydicom's eCT_Supplemental.dcm: an Enhanced CT rCBF map (Image Type DERIVED PRIMARY PERFUSION RCBF)."""
    path = get_testdata_file("eCT_Supplemental.dcm")
    code, report = check_json(capsys, path)
    (series,) = report["series"]
    assert series["object"] == "derived"
    assert list(series["sections"]) == ["Derived object"]
    found = series["sections"]["Derived object"]
    assert not [f for f in found if f["severity"] == "error"], found
    assert any(f["keyword"] == "RealWorldValueMappingSequence" and f["severity"] == "info" for f in found)
    assert not [f for f in found if "ORIGINAL" in f["expected"] or "TemporalPositionIndex" in f["found"]]
    assert code == 0


def test_perfnodes_own_maps_are_derived_objects_with_their_provenance(tmp_path, capsys):
    make("dsc", "single", tmp_path / "dsc", seed=2)
    assert main(["maps", str(tmp_path / "dsc"), "--out", str(tmp_path / "out"), "--no-report"]) == 0
    (maps_dir,) = list((tmp_path / "out").glob("*/maps"))
    code, report = check_json(capsys, str(maps_dir))
    (series,) = report["series"]
    assert series["object"] == "derived" and list(series["sections"]) == ["Derived object"]
    found = series["sections"]["Derived object"]
    assert report["errors"] == 0 and code == 0
    assert any(f["found"].startswith("perfnode provenance: ") and "DSC" in f["found"].upper() for f in found)
    # DSC flow is not calibrated: sent as relative CBF (issue 14)
    assert any("rCBF (DCM 126397) in {ratio}" in f["found"] for f in found)


def test_check_and_report_state_the_same_facts(tmp_path, capsys):
    """Baseline dynamics, temporal resolution and the technique: measured once, the same in both."""
    make("dsc", "single", tmp_path, seed=4)
    _, report = check_json(capsys, str(tmp_path / "series01"))
    (series,) = report["series"]
    _, analysis = report_files([tmp_path / "series01"], tmp_path / "report")
    qc = json.loads((tmp_path / "report" / "qc.json").read_text())
    assert series["technique"] == qc["technique"] == "dsc"
    for name in ("baseline_dynamics", "temporal_resolution_s", "n_dynamics", "bolus_arrival_time_s"):
        assert series["facts"][name]["value"] == pytest.approx(qc["facts"][name]["value"]), name
    assert series["facts"]["baseline_dynamics"]["value"] > 0  # measured, not "not measurable"
