"""Protocol compliance: compliant acquisitions raise nothing; each broken parameter raises its one finding."""

from __future__ import annotations

import numpy as np
import pytest

from perfnode.dicom.findings import Severity
from perfnode.qc.compliance import check_series, compliance_findings
from perfnode.qc.rules import RuleError, load_protocols
from tests.qc import synth

PROTOCOLS = load_protocols()


def rule_ids(findings) -> list[str]:
    return [f.rule.rsplit("[", 1)[1].rstrip("]") for f in findings]


def dsc_check(**kw):
    headers, times, data, aif, aif_signal = synth.dsc(**kw)
    return check_series(
        headers, data=data, aif=aif, aif_signal=aif_signal, spacing_mm=(5.0, 2.0, 2.0), protocols=PROTOCOLS
    )


def test_shipped_protocols_cite_their_sources():
    assert set(PROTOCOLS) >= {"dsc", "dce", "asl", "ivim"}
    for proto in PROTOCOLS.values():
        for rule in proto.rules.values():
            assert rule.source, rule.id
            if rule.group == "protocol" and rule.technique in {"dsc", "dce", "ivim"}:
                assert "ESR 2026" in rule.source, rule.id


def test_compliant_dsc_raises_nothing():
    r = dsc_check()
    assert r.technique == "dsc"
    assert r.findings == []
    # the facts were read from the header and measured from the data, not assumed
    assert r.facts["echo_time_ms"].value == 30.0 and r.facts["echo_time_ms"].attribute == "EchoTime"
    assert r.facts["temporal_resolution_s"].value == pytest.approx(1.25)
    assert r.facts["duration_s"].value == pytest.approx(125.0)
    assert r.facts["contrast_dose_mmol_per_kg"].value == pytest.approx(0.1)
    assert 30 <= r.facts["baseline_dynamics"].value <= 34


def test_te_too_long_for_3t_only():
    r = dsc_check(te_ms=45.0, field_t=3.0)
    assert rule_ids(r.findings) == ["dsc.te.3t"]
    f = r.findings[0]
    assert f.severity is Severity.WARNING
    assert (f.tag, f.keyword) == ("(0018,0081)", "EchoTime")
    assert f.found.startswith("45 ms") and "25–35 ms" in f.expected
    assert "ESR 2026 Table 1 (DSC)" in f.rule
    # the same TE is right at 1.5 T
    assert dsc_check(te_ms=45.0, field_t=1.5).findings == []


def test_too_few_baseline_dynamics():
    r = dsc_check(n_base=10, n_t=100)
    assert rule_ids(r.findings) == ["dsc.baseline_dynamics"]
    assert r.facts["baseline_dynamics"].value < 30
    assert r.findings[0].found.startswith("baseline dynamics: ") and "measured" in r.findings[0].found


def test_temporal_resolution_too_coarse():
    r = dsc_check(dt_s=2.0)
    assert rule_ids(r.findings) == ["dsc.temporal_resolution"]
    assert r.findings[0].found.startswith("temporal resolution: 2 s")


def test_wrong_dose_and_flip_angle():
    r = dsc_check(dose_ml=15.0, flip=90.0)
    assert sorted(rule_ids(r.findings)) == ["dsc.contrast_dose", "dsc.flip_angle"]
    dose = next(f for f in r.findings if "dose" in f.rule)
    assert dose.keyword == "ContrastBolusTotalDose" and dose.found.startswith("0.2 mmol/kg")


def test_pld_too_short_and_older_patient():
    assert compliance_findings(synth.asl(), protocols=None) == []
    assert rule_ids(compliance_findings(synth.asl(pld_ms=1500))) == ["asl.pld"]
    # 1800 ms is enough at 45 but not at 75 (ASL white paper)
    older = compliance_findings(synth.asl(age="075Y"))
    assert rule_ids(older) == ["asl.pld.older"]
    assert (older[0].tag, older[0].keyword) == ("(0018,9079)", "InversionTimes")
    # a person says hemodynamic impairment is expected: 2000–2400 ms
    assert rule_ids(compliance_findings(synth.asl(), given=["hemodynamic_impairment=yes"])) == [
        "asl.pld.impaired"
    ]
    assert compliance_findings(synth.asl(pld_ms=2200), given={"hemodynamic_impairment": True}) == []


def test_no_m0():
    assert rule_ids(compliance_findings(synth.asl(m0_frames=False), study=[])) == ["asl.m0"]
    # an M0 series elsewhere in the study counts
    assert compliance_findings(synth.asl(m0_frames=False), study=synth.study_series(m0=True)) == []


def test_pulsed_labelling_and_no_background_suppression():
    found = rule_ids(compliance_findings(synth.asl(kind="PULSED", bgs=False)))
    assert found == ["asl.labelling_type", "asl.background_suppression"]


def test_t1_of_blood_used_by_the_fit_matches_the_field_strength():
    from perfnode.perfusion.base import FitResult

    def fit(t1b_s):
        return FitResult(maps={}, units={}, provenance={"t1_blood_s": t1b_s})

    assert check_series(synth.asl(), fit=fit(1.65), protocols=PROTOCOLS).protocol == []
    f = check_series(synth.asl(), fit=fit(1.35), protocols=PROTOCOLS).protocol  # the 1.5 T value at 3 T
    assert rule_ids(f) == ["asl.t1_blood.3t"] and f[0].found.startswith("t1 blood: 1350 ms")


def test_missing_b_values():
    assert compliance_findings(synth.ivim()) == []
    assert rule_ids(compliance_findings(synth.ivim(b_values=(0, 10, 50, 100, 400, 800)))) == ["ivim.b200"]
    assert rule_ids(compliance_findings(synth.ivim(b_values=(0, 50, 200, 400)))) == ["ivim.b_upper"]
    assert rule_ids(compliance_findings(synth.ivim(b_values=(50, 200, 800)))) == ["ivim.b0"]


def test_too_few_directions():
    f = compliance_findings(synth.ivim(directions=((1, 0, 0), (-1, 0, 0), (0, 1, 0))))
    assert rule_ids(f) == ["ivim.directions"]
    assert f[0].keyword == "DiffusionGradientOrientation" and f[0].found.startswith("2 ")


def test_no_t1_map_and_no_b1_at_3t():
    headers, _ = synth.dce()
    assert compliance_findings(headers, study=synth.study_series()) == []
    assert rule_ids(compliance_findings(headers, study=synth.study_series(t1_vfa=False))) == ["dce.t1_map"]
    assert rule_ids(compliance_findings(headers, study=synth.study_series(b1=False))) == ["dce.b1_map"]
    # no B1 map is needed at 1.5 T
    headers15, _ = synth.dce(field_t=1.5)
    assert compliance_findings(headers15, study=synth.study_series(b1=False)) == []


def test_dce_purpose_changes_the_temporal_resolution_rule():
    headers, _ = synth.dce(dt_s=8.0)
    study = synth.study_series()
    assert compliance_findings(headers, study=study) == []  # permeability (default): ≤ 20 s
    f = compliance_findings(headers, study=study, given=["dce_purpose=perfusion"])
    assert rule_ids(f) == ["dce.temporal_resolution.perfusion"]


def test_unknown_study_is_not_determined_rather_than_absent():
    headers, _ = synth.dce()
    f = compliance_findings(headers)  # study not given
    assert rule_ids(f) == ["dce.t1_map", "dce.b1_map"]
    assert all(x.severity is Severity.INFO and "not determined" in x.found for x in f)


def test_site_rule_file_changes_the_verdict(tmp_path):
    site = tmp_path / "trial"
    site.mkdir()
    (site / "trial-dsc.toml").write_text("""
technique = "dsc"
[[rule]]
id = "dsc.te.3t"
min = 30
max = 32
source = "TRIAL-123 imaging manual §4.2"

[[rule]]
id = "dsc.baseline_dynamics"
enabled = false

[[rule]]
id = "trial.field_strength"
fact = "field_strength_t"
min = 2.5
severity = "error"
source = "TRIAL-123 imaging manual §2: 3 T only"
""")
    site_protocols = load_protocols(site)
    headers, times, data, aif, aif_signal = synth.dsc(te_ms=28.0, n_base=10, field_t=3.0)
    shipped = check_series(headers, data=data, protocols=PROTOCOLS)
    assert rule_ids(shipped.protocol) == ["dsc.baseline_dynamics"]
    trial = check_series(headers, data=data, protocols=site_protocols)
    assert rule_ids(trial.protocol) == ["dsc.te.3t"]
    assert "TRIAL-123" in trial.protocol[0].rule and "30–32 ms" in trial.protocol[0].expected
    h15, _, d15, *_ = synth.dsc(field_t=1.5, te_ms=40.0)
    f = check_series(h15, data=d15, protocols=site_protocols).protocol
    assert rule_ids(f) == ["trial.field_strength"] and f[0].severity is Severity.ERROR


@pytest.mark.parametrize(
    "body, message",
    [
        (
            'technique = "dsc"\n[[rule]]\nid = "x"\nfact = "echo_time_ms"\nmaxx = 3\nsource = "s"',
            "unknown key(s) maxx",
        ),
        (
            'technique = "dsc"\n[[rule]]\nid = "x"\nfact = "echo_tim"\nmax = 3\nsource = "s"',
            "unknown fact 'echo_tim'",
        ),
        ('technique = "dsc"\n[[rule]]\nid = "x"\nfact = "echo_time_ms"\nmax = 3', "cites its source"),
        (
            'technique = "dsc"\n[[rule]]\nid = "x"\nfact = "echo_time_ms"\nmax = "a"\nsource = "s"',
            "max must be a number",
        ),
        ('[[rule]]\nid = "x"', "technique"),
    ],
)
def test_bad_site_file_is_refused_with_a_clear_error(tmp_path, body, message):
    p = tmp_path / "bad.toml"
    p.write_text(body)
    with pytest.raises(RuleError) as exc:
        load_protocols(p)
    assert message in str(exc.value) and "bad.toml" in str(exc.value)


def test_ep_alone_is_not_taken_for_gradient_echo():
    def headers(**kw):
        hs, *_ = synth.dsc(n_t=40)
        for h in hs:
            h.ScanningSequence = "EP"
            for k, v in kw.items():
                setattr(h, k, v)
        return hs

    unknown = compliance_findings(headers())
    f = [x for x in unknown if "dsc.pulse_sequence" in x.rule]
    assert [x.severity for x in f] == ["info"] and "gradient or spin echo not stated" in f[0].found
    # Siemens names its GRE-EPI perfusion sequence *epfid2d1_64: gradient echo after all
    named = compliance_findings(headers(SequenceName="*epfid2d1_64"))
    assert not [x for x in named if "dsc.pulse_sequence" in x.rule]
    spin = compliance_findings(headers(SequenceName="*epse2d1_128"))
    assert [x.severity for x in spin if "dsc.pulse_sequence" in x.rule] == ["warning"]


def test_header_times_without_temporal_positions_use_one_slice():
    """2D multi-slice: every slice has its own AcquisitionTime; the time points are those of one slice."""
    from datetime import timedelta

    from perfnode.qc.facts import frame_times

    headers = []
    for k in range(40):
        for z in range(5):
            ds = synth._mr(
                "1.2.3",
                "1.2.4",
                AcquisitionDate="20261123",
                ImagePositionPatient=[0, 0, 5.0 * z],
                AcquisitionTime=(synth.T0 + timedelta(seconds=1.5 * k + 0.25 * z)).strftime("%H%M%S.%f"),
            )
            headers.append(ds)
    t = frame_times(headers)
    assert t.size == 40 and np.allclose(np.diff(t), 1.5)
