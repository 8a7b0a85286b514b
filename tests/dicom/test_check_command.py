"""``perfnode check``: readable and JSON reports, exit status, stored series from a running node's index.

Run in-process through ``perfnode.cli.main`` (the command line parsing is the same), except one run
of the installed ``perfnode`` executable.
"""

from __future__ import annotations

import json

import pytest

from perfnode.phantoms import Size, make
from tests.nodes import need, perfnode, run

SIZE = Size(nx=8, ny=8, nz=2, nt=4)



def check(capsys, *args: str) -> tuple[int, str]:
    from perfnode.cli import main

    capsys.readouterr()
    code = main(["check", *args])
    return code, capsys.readouterr().out


@pytest.mark.slow  # starts the perfnode executable (~10 s on a loaded machine)
def test_valid_folder_exits_zero_with_a_readable_report(tmp_path):
    make("dsc", "concat", tmp_path, size=SIZE)
    res = run(perfnode("check", str(tmp_path)))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "IHE PERF profile:\n    no findings" in res.stdout
    assert "4-D assembly:" in res.stdout and "t=4 × z=2 × y=8 × x=8" in res.stdout
    # a 4-frame test phantom is far from the ESR DSC protocol: the compliance section says so, as
    # warnings (the PERF profile decides the exit status)
    compliance = res.stdout.split("Protocol compliance (ESR):")[1]
    assert "no. baseline dynamics 30 [dsc.baseline_dynamics]" in compliance
    assert "0 error(s), 2 warning(s) in 1 series" in res.stdout


def test_broken_object_exits_non_zero_and_json_names_the_attribute(tmp_path, capsys):
    make("ctp", "single", tmp_path, break_rule="dimension-order", size=SIZE)
    code, out = check(capsys, "--json", str(tmp_path / "series01"))
    assert code == 1
    report = json.loads(out)
    (series,) = report["series"]
    perf = series["sections"]["IHE PERF profile"]
    assert [(f["tag"], f["keyword"], f["severity"]) for f in perf] == [
        ("(0020,9165)", "DimensionIndexPointer", "error")
    ]
    assert perf[0]["rule"] == "IHE RAD TF-2 4.8.4.1.2.5.2"
    assert report["errors"] == 1


def test_nothing_to_check(tmp_path, capsys):
    (tmp_path / "note.txt").write_text("not dicom")
    assert check(capsys, str(tmp_path))[0] == 2
    assert check(capsys, str(tmp_path / "absent"))[0] == 2


def test_stored_series_by_uid_and_recorded_findings(node, tmp_path, capsys):
    """Store a broken concatenation in a real node with DCMTK storescu, then check it from the index."""
    from perfnode.archive.db import Database
    from perfnode.archive.findings import load_findings, record_findings
    from perfnode.archive.models import Instance

    phantom, files = make("dsc", "concat", tmp_path / "in", size=SIZE, break_rule="concat-offset")
    uid = phantom.image_sets[0].series_uid
    res = run([need("storescu"), "-aec", node.ae_title, "127.0.0.1", str(node.port), *map(str, files)])
    assert res.returncode == 0, res.stderr
    code, out = check(capsys, "--series", uid, "--data", str(node.data), "--database", node.database_url)
    assert code == 1, out
    assert "(0020,9228) ConcatenationFrameOffsetNumber" in out

    db = Database(node.database_url)
    try:
        with db.session() as s:
            rows = [(i.id, node.data / i.path) for i in s.query(Instance).order_by(Instance.id)]
        assert len(rows) == 3
        for instance_id, path in rows:
            record_findings(db, instance_id, path)
            record_findings(db, instance_id, path)  # idempotent
        # every part on its own is fine; the offset defect shows at series level only
        assert load_findings(db, uid) == []
        _, files = make("dsc", "single", tmp_path / "bad", size=SIZE, break_rule="image-type-value1")
        record_findings(db, rows[0][0], files[0])
        (pair,) = load_findings(db, instance_id=rows[0][0])
        assert pair[1].keyword == "ImageType" and pair[1].found == "value 1 DERIVED"
    finally:
        db.dispose()
