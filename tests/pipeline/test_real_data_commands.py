"""Every real scanner series (tests/data/real-data): ``perfnode check`` gives findings, never a traceback;
``perfnode maps`` either writes maps that pass dciodvfy and read back with highdicom, or refuses in one
line naming the reason. Run in-process through ``perfnode.cli.main`` (an exception would fail the test);
one run of the installed executable over the whole folder checks that stderr carries no traceback."""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest

from perfnode.cli import main
from perfnode.dicom.parametric_map import map_values
from perfnode.dicom.provenance import read_provenance
from tests.dicom.test_parametric_map import dciodvfy_errors
from tests.nodes import perfnode, run
from tests.real_data import REAL_DATA, SERIES

#: Other series of the same study a series is analysed with (the M0 scan of the Siemens pCASL run).
STUDY = {"siemens_ve11_pcasl_mosaic": ("siemens_ve11_pcasl_m0_mosaic",)}

_ADC_ONLY = "ADC only: IVIM needs three or more b-values"
_NO_M0 = "CBF needs an M0 image: none in the series and none usable in the study (no M0 series in the study)"
#: What each real series gives: (status, technique, maps sent, words the notes / the refusal must contain).
EXPECTED: dict[str, tuple[str, str | None, set[str], tuple[str, ...]]] = {
    "siemens_xa30_bold_enh": ("refused", None, set(), (
        "(0008,0008) ImageType value 3 FMRI",
        "incomplete series: 8 of 20 temporal positions (0020,0105) present")),
    "siemens_xa10_bold_enh": ("refused", None, set(), (
        "DSC needs at least 8 time points",
        "the series has 4 (times from (0018,9074) FrameAcquisitionDateTime)")),
    "siemens_xa60_dwi_enh": ("written", "dwi", {"adc", "quality"}, (_ADC_ONLY, "b = 0, 1000 s/mm²")),
    "siemens_ve11_pcasl_mosaic": ("written", "asl", {"cbf", "quality"}, ()),
    "siemens_ve11_pcasl_m0_mosaic": ("refused", None, set(), ("companion series (M0)",)),
    "philips_asl_3dpcasl_enh": ("written", "asl", {"delta_m"}, (_NO_M0,)),
    "philips_asl_multiphase_pwi_enh": ("written", "asl", {"delta_m"}, (
        "scanner-made perfusion-weighted (control − label) images at 8 inflow times 300–2050 ms "
        "((0020,9153) NominalCardiacTriggerDelayTime)", _NO_M0, "mean over the 8 inflow times")),
    "ge_epi_multiphase_classic": ("refused", None, set(), ("no curve qualifies as an arterial input",)),
    "ge_dwi_classic": ("written", "dwi", {"adc", "quality"}, (_ADC_ONLY, "b = 0, 1000 s/mm²")),
    "canon_dwi_enh": ("written", "dwi", {"adc", "quality"}, (_ADC_ONLY, "b = 0, 1500 s/mm²")),
}


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
    status, technique, sent, words = EXPECTED[name]
    assert entry["status"] == status, entry
    said = entry["reason"] + " ".join(entry.get("notes") or [])
    assert all(w in said for w in words), (words, said)
    if entry["status"] == "refused":
        assert entry["reason"] and "\n" not in entry["reason"]
        return
    assert entry["technique"] == technique
    assert entry["maps"]
    values = {}
    for path in entry["maps"]:
        assert dciodvfy_errors(path) == [], path
        ds = pydicom.dcmread(path)
        pm = hd.pm.ParametricMap.from_dataset(ds)
        assert pm.FrameOfReferenceUID == pydicom.dcmread(
            next(p for p in (REAL_DATA / name).iterdir()), stop_before_pixels=True).FrameOfReferenceUID
        quantity, v = map_values(ds)
        values[quantity.key] = v
    assert set(values) == sent
    if "adc" in values:  # brain and water-like phantoms: 0.3–3.5 × 10⁻³ mm²/s where fitted
        adc = values["adc"][np.isfinite(values["adc"])]
        if name == "ge_dwi_classic":  # its b 1000 images carry the b 0 images' pixel data, byte for byte
            assert float(np.abs(adc).max()) < 1e-8
        else:
            assert 0.3e-3 < float(np.median(adc[adc > 0])) < 3.5e-3
    if name == "siemens_ve11_pcasl_mosaic":  # CBF with the study's M0 series (a separate series)
        m0_uid = pydicom.dcmread(REAL_DATA / "siemens_ve11_pcasl_m0_mosaic" / "0001.dcm",
                                 stop_before_pixels=True).SeriesInstanceUID
        prov = read_provenance(pydicom.dcmread(entry["maps"][0], stop_before_pixels=True))
        assert prov["m0_source"] == f"M0 series {m0_uid}"
        assert prov["pld_source"].startswith("Siemens protocol") and prov["defaults_used"] == {}
        assert 10 < float(np.nanmedian(values["cbf"])) < 100
    if name == "philips_asl_multiphase_pwi_enh":  # the scanner's control − label images: positive
        assert float(np.nanmedian(values["delta_m"])) > 0


@pytest.mark.slow  # the installed executable over all real series (~1 min on a loaded machine)
def test_no_traceback_from_the_executable(tmp_path):
    for args in (["check", str(REAL_DATA)], ["maps", str(REAL_DATA), "--out", str(tmp_path), "--no-report"]):
        res = run(perfnode(*args), timeout=900)
        assert res.returncode in (0, 1), res.stderr
        assert "Traceback" not in res.stderr + res.stdout
        for line in res.stderr.splitlines():  # non-DICOM files (README, licences): one line each
            assert not line.startswith(" "), line
