"""Every IHE PERF / PS3.3 rule: a failing phantom (exactly that finding) and passing ones."""

from __future__ import annotations

import pydicom
import pytest

from perfnode.dicom.findings import Severity
from perfnode.dicom.frames import expand
from perfnode.dicom.perf import check_dataset, check_series
from perfnode.phantoms import RULES, SHAPES, Size, make
from tests.dicom import sample

SIZE = Size(nx=8, ny=8, nz=3, nt=5)


def series_headers(folder):
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in expand([folder / "series01"])]


@pytest.mark.parametrize("technique", ["dsc", "ctp", "dce"])
@pytest.mark.parametrize("shape", ["single", "concat"])
def test_valid_objects_have_no_findings(tmp_path, technique, shape):
    make(technique, shape, tmp_path, size=SIZE)
    assert check_series(series_headers(tmp_path)) == []


def test_contrast_free_techniques_only_warn_about_the_contrast_agent(tmp_path):
    make("asl", "single", tmp_path, size=SIZE)
    findings = check_series(series_headers(tmp_path))
    assert [(f.severity, f.keyword) for f in findings] == [(Severity.WARNING, "ContrastBolusAgentSequence")]


#: Enhanced CT differs from Enhanced MR in its frame type macro and contrast agent: those rules on CT too.
CASES = [("dsc", r) for r in sorted(RULES)] + [
    ("ctp", r) for r in ("frame-type-value1", "frame-type-value3", "contrast-missing", "route-missing",
                         "duplicate-frame", "concat-attribute")]


@pytest.mark.parametrize(("technique", "rule"), CASES)
def test_each_broken_rule_is_found(tmp_path, rule, technique):
    r = RULES[rule]
    make(technique, r.shape or "concat", tmp_path, break_rule=rule, size=SIZE, seed=11)
    findings = check_series(series_headers(tmp_path))
    if not r.keyword:  # "shuffled" is valid
        assert findings == []
        return
    hits = [f for f in findings if f.keyword == r.keyword and f.severity == r.severity]
    assert hits, findings
    assert all(f.rule and f.tag.startswith("(") and f.found and f.expected for f in hits)
    others = [f for f in findings if f not in hits]
    if rule == "concat-part-missing":  # the missing part's frames also leave the grid incomplete
        assert {f.keyword for f in others} <= {"DimensionIndexValues"}
    else:
        assert others == [], others


def test_findings_cite_rules_and_places(tmp_path):
    make("dsc", "single", tmp_path, break_rule="frame-type-value3", size=SIZE, seed=2)
    (f,) = check_series(series_headers(tmp_path))
    assert f.tag == "(0008,9007)" and f.keyword == "FrameType"
    assert f.found == "value 3 OTHER" and f.expected == "value 3 PERFUSION"
    assert f.rule == "IHE RAD TF-2 Table 4.8.4.1.2.5.2-1"
    assert "(1 of 15)" in f.where


def test_missing_cell_is_named(tmp_path):
    make("dsc", "single", tmp_path, break_rule="missing-frame", size=SIZE, seed=5)
    (f,) = check_series(series_headers(tmp_path))
    assert "1 cell(s) of the 3 × 5 grid missing: position" in f.found


def test_per_instance_check_of_a_concatenation_part_does_not_demand_the_others(tmp_path):
    _, files = make("dsc", "concat", tmp_path, size=SIZE)
    part = pydicom.dcmread(files[1], stop_before_pixels=True)
    assert check_dataset(part) == []
    assert check_series([part])  # as a whole series, parts 1 and 3 are missing
    assert {f.keyword for f in check_series([part])} >= {"InConcatenationNumber"}


@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_against_the_single_instance_rule(tmp_path, shape):
    make("dsc", shape, tmp_path, size=SIZE)
    keywords = {f.keyword for f in check_series(series_headers(tmp_path))}
    expected = {"single": set(), "concat": set(), "per-time": {"SOPInstanceUID"}, "classic": {"SOPClassUID"}}
    assert keywords == expected[shape]


def test_real_samples():
    ect = pydicom.dcmread(sample("eCT_Supplemental.dcm"))  # DERIVED perfusion map, 2 frames
    found = {(f.keyword, f.found) for f in check_series([ect])}
    assert ("ImageType", "value 1 DERIVED") in found
    assert ("FrameType", "value 1 DERIVED") in found
    assert ("DimensionIndexPointer", "no pointer to TemporalPositionIndex (0020,9128)") in found
    assert ("TemporalPositionIndex", "absent") in found
    emr = pydicom.dcmread(sample("emri_small.dcm"))  # a T1 volume: not a perfusion object
    (info,) = check_series([emr])
    assert info.severity == Severity.INFO and info.found == "ORIGINAL\\PRIMARY\\T1\\NONE"
    assert check_dataset(emr) == []
