"""Every real scanner series (tests/data/real-data): ``perfnode check`` gives findings, never a traceback;
``perfnode maps`` either writes maps that pass dciodvfy and read back with highdicom, or refuses in one
line naming the reason. Run in-process through ``perfnode.cli.main`` (an exception would fail the test);
one run of the installed executable over the whole folder checks that stderr carries no traceback."""

from __future__ import annotations

import json

import highdicom as hd
import pydicom
import pytest

from perfnode.cli import main
from tests.dicom.test_parametric_map import dciodvfy_errors
from tests.nodes import perfnode, run
from tests.real_data import REAL_DATA, SERIES

#: Other series of the same study a series is analysed with (the M0 scan of the Siemens pCASL run).
STUDY = {"siemens_ve11_pcasl_mosaic": ("siemens_ve11_pcasl_m0_mosaic",)}


@pytest.mark.parametrize("name", SERIES)
def test_check_gives_findings(name, capsys):
    code = main(["check", "--json", str(REAL_DATA / name)])
    out = capsys.readouterr()
    report = json.loads(out.out)
    (series,) = report["series"]
    assert code in (0, 1)
    assert series["sections"] and all(isinstance(f, list) for f in series["sections"].values())
    assert not [f for fs in series["sections"].values() for f in fs if "could not run" in f["found"]]


@pytest.mark.parametrize("name", SERIES)
def test_maps_writes_valid_maps_or_refuses_in_one_line(name, tmp_path, capsys):
    folders = [REAL_DATA / name, *(REAL_DATA / other for other in STUDY.get(name, ()))]
    code = main(["maps", *map(str, folders), "--out", str(tmp_path), "--json", "--no-report"])
    outcomes = json.loads(capsys.readouterr().out)
    uid = str(pydicom.dcmread(next(p for p in (REAL_DATA / name).iterdir()), stop_before_pixels=True)
              .SeriesInstanceUID)
    (entry,) = [o for o in outcomes if o["series_instance_uid"] == uid]
    assert code == 0 and entry["status"] in ("written", "refused"), entry
    if entry["status"] == "refused":
        assert entry["reason"] and "\n" not in entry["reason"]
        return
    assert entry["maps"]
    for path in entry["maps"]:
        assert dciodvfy_errors(path) == [], path
        pm = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(path))
        assert pm.FrameOfReferenceUID == pydicom.dcmread(
            next(p for p in (REAL_DATA / name).iterdir()), stop_before_pixels=True).FrameOfReferenceUID


@pytest.mark.slow  # the installed executable over all real series (~1 min on a loaded machine)
def test_no_traceback_from_the_executable(tmp_path):
    for args in (["check", str(REAL_DATA)], ["maps", str(REAL_DATA), "--out", str(tmp_path), "--no-report"]):
        res = run(perfnode(*args), timeout=900)
        assert res.returncode in (0, 1), res.stderr
        assert "Traceback" not in res.stderr + res.stdout
        for line in res.stderr.splitlines():  # non-DICOM files (README, licences): one line each
            assert not line.startswith(" "), line
