"""The HTML report: its content, its pictures, the ``perfnode report`` command, and a real browser's view."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from perfnode.commands import report as report_command
from perfnode.perfusion.base import FitResult
from perfnode.qc.compliance import check_series
from perfnode.qc.report import write_report
from tests.qc import synth
from tests.qc.test_compliance import PROTOCOLS


def _png(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"), dtype=float)


def _fit(shape) -> FitResult:
    nz, ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    cbf = np.broadcast_to(20.0 + 60.0 * xx / nx, shape).astype(np.float32).copy()
    cbv = np.broadcast_to(1.0 + 4.0 * yy / ny, shape).astype(np.float32).copy()
    cbf[0, :2, :2] = cbv[0, :2, :2] = np.nan  # the four voxels whose fit failed
    return FitResult(
        maps={"cbv": cbv, "cbf": cbf},
        units={"cbf": "mL/100 g/min", "cbv": "mL/100 g"},
        failures=Counter({"no convergence": 4}),
        provenance={"method": "oSVD", "aif_voxels": [(0, 12, 12)], "baseline_frames": (1, 29)},
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    headers, times, data, aif, aif_signal = synth.dsc(te_ms=45.0, shape=(2, 24, 24))
    fit = _fit(data.shape[1:])
    qc = check_series(
        headers, data=data, aif=aif, aif_signal=aif_signal, fit=fit, spacing_mm=(5, 2, 2), protocols=PROTOCOLS
    )
    out = tmp_path_factory.mktemp("report")
    index = write_report(
        out,
        qc=qc,
        title="ep2d_perf <DSC> & co",
        times_s=times,
        data=data,
        aif=aif,
        aif_label="concentration (mM)",
        fit=fit,
        spacing_mm=(5, 2, 2),
    )
    return index, qc


def test_page_shows_findings_maps_and_provenance(page):
    index, qc = page
    text = index.read_text()
    assert text.startswith("<!doctype html>")
    assert "ep2d_perf &lt;DSC&gt; &amp; co" in text  # escaped, not injected
    assert [f.rule for f in qc.protocol] == [
        "ESR 2026 Table 1 (DSC): TE 25–35 ms at 3 T (single echo; tissue echo of a multi-echo) [dsc.te.3t]"
    ]
    assert "[dsc.te.3t]" in text and "(0018,0081)" in text and "45 ms" in text
    # CBF is shown before CBV (people look at CBF first), each with its unit
    assert text.index("cbf (mL/100 g/min)") < text.index("cbv (mL/100 g)")
    assert "oSVD" in text and "baseline_frames" in text
    summary = json.loads((index.parent / "qc.json").read_text())
    assert [f["rule"] for f in summary["protocol"]] == [f.rule for f in qc.protocol]
    assert summary["facts"]["echo_time_ms"]["value"] == 45.0
    assert summary["facts"]["fit_failure_fraction"]["value"] == pytest.approx(4 / (2 * 24 * 24))


def test_pictures_are_real_images(page):
    index, _ = page
    for name in ("curves.png", "motion.png", "map_00.png", "map_01.png"):
        px = _png(index.parent / name)
        assert px.shape[0] > 150 and px.shape[1] > 300, name
        assert px.std() > 10, f"{name} is blank"
    assert f'src="{"curves.png"}"' in index.read_text()


def test_page_without_data_says_what_is_missing(tmp_path):
    qc = check_series(synth.ivim(b_values=(0, 50, 800)), protocols=PROTOCOLS)
    index = write_report(tmp_path, qc=qc, title="ivim")
    text = index.read_text()
    assert "No time series was given" in text and "No fitted maps were given" in text
    assert "[ivim.b200]" in text and not (tmp_path / "curves.png").exists()


def _screenshot(index, tmp_path) -> np.ndarray:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            index.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert shot.exists()
    return _png(shot)


@pytest.mark.slow
def test_report_renders_in_a_real_browser(page, tmp_path):
    index, _ = page
    px = _screenshot(index, tmp_path)
    assert px.shape == (1600, 1200, 3)
    assert px.var() > 500, "the screenshot is blank"
    # the dark header band, the amber warning badge and plotted curves are all on screen
    assert (px[:60].mean(axis=(0, 1)) < 80).all()
    amber = (np.abs(px - [214, 137, 16]).sum(axis=2) < 40).sum()
    assert amber > 500
    colours = np.unique((px // 16).reshape(-1, 3), axis=0)
    assert len(colours) > 60, "no pictures: too few distinct colours"


def _run(argv) -> int:
    ap = argparse.ArgumentParser()
    report_command.register(ap.add_subparsers())
    args = ap.parse_args(argv)
    return args.func(args)


@pytest.mark.slow
def test_report_command_on_a_folder(tmp_path, capsys):
    headers, times, data, *_ = synth.dsc(te_ms=45.0, shape=(1, 24, 24))
    synth.write_series(tmp_path / "study" / "dsc", headers, data)
    t2 = synth.study_series()[0]
    synth.write_series(tmp_path / "study" / "t2", [t2], np.full((1, 1, 24, 24), 500.0))
    out = tmp_path / "out"
    assert _run(["report", str(tmp_path / "study"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[dsc.te.3t]" in printed and "report:" in printed
    summary = json.loads((out / "qc.json").read_text())
    assert summary["technique"] == "dsc"
    assert [f["rule"].rsplit("[", 1)[1] for f in summary["protocol"]] == ["dsc.te.3t]"]
    assert summary["facts"]["temporal_resolution_s"]["value"] == pytest.approx(1.25, abs=1e-3)
    assert summary["facts"]["n_dynamics"]["value"] == 100
    # the DSC model ran: maps with units and its AIF
    text = (out / "index.html").read_text()
    assert "cbf (" in text and "ΔR2* (1/s)" not in summary["notes"]
    assert (out / "curves.png").exists() and (out / "map_00.png").exists()


def test_site_protocols_from_the_command_line(tmp_path):
    headers, times, data, *_ = synth.dsc(te_ms=45.0, shape=(1, 24, 24))
    synth.write_series(tmp_path / "dsc", headers, data)
    site = tmp_path / "site"
    site.mkdir()
    (site / "dsc.toml").write_text(
        'technique = "dsc"\n[[rule]]\nid = "dsc.te.3t"\nmax = 50\nsource = "site: long TE accepted"\n'
    )
    out = tmp_path / "out"
    assert (
        _run(["report", str(tmp_path / "dsc"), "--out", str(out), "--protocols", str(site), "--no-fit"]) == 0
    )
    summary = json.loads((out / "qc.json").read_text())
    assert summary["protocol"] == []


def test_unknown_series_uid_is_a_clear_error(tmp_path, capsys):
    from perfnode.errors import NoArchive

    # a data folder without an archive: refused (exit 2 through the CLI), nothing created
    expected = r"1\.2\.3\.4\.5\.6\.7: no such file, folder or stored series \(no archive"
    with pytest.raises(NoArchive, match=expected):
        _run(["report", "1.2.3.4.5.6.7", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "archive")])
    assert not (tmp_path / "archive").exists()


@pytest.mark.slow
def test_report_on_a_series_stored_in_the_archive(node, tmp_path):
    """storescu → perfnode serve → ``perfnode report UID --data DIR``: the study's other series count."""
    from tests.nodes import need, perfnode, run

    headers, times, data, *_ = synth.dsc(shape=(1, 24, 24), n_t=40)
    files = synth.write_series(tmp_path / "dsc", headers, data)
    t2 = synth.study_series()[0]
    t2.StudyInstanceUID = headers[0].StudyInstanceUID
    files += synth.write_series(tmp_path / "t2", [t2], np.full((1, 1, 24, 24), 500.0))
    run([need("storescu"), "-aec", node.ae_title, "127.0.0.1", str(node.port), *map(str, files)], check=True)
    out = tmp_path / "out"
    res = run(
        perfnode(
            "report", headers[0].SeriesInstanceUID, "--out", str(out), "--data", str(node.data), "--no-fit"
        ),
        check=True,
    )
    assert "report:" in res.stdout
    summary = json.loads((out / "qc.json").read_text())
    assert summary["facts"]["n_dynamics"]["value"] == 40
    # the T2 series was found in the study: presence checks are answered, not "not determined"
    assert summary["facts"]["t1_mapping_present"]["value"] is False
    # 40 dynamics of 1.25 s: 50 s, shorter than the 2 min of ESR Table 1; everything else complies
    assert [f["rule"].rsplit("[", 1)[1] for f in summary["protocol"]] == ["dsc.duration]"]


@pytest.mark.slow
def test_report_on_a_stored_asl_series_finds_its_m0_series(node, tmp_path):
    """storescu → perfnode serve → ``perfnode report UID``: the CBF fit uses the stored study's M0
    series, and the maps are in the report."""
    from perfnode.phantoms import make
    from perfnode.qc.series import pick_series, read_headers
    from tests.nodes import need, perfnode, run

    make("asl", "single", tmp_path / "asl")
    files = sorted(str(p) for p in (tmp_path / "asl").rglob("*.dcm"))
    run([need("storescu"), "-aec", node.ae_title, "127.0.0.1", str(node.port), *files], check=True)
    asl, study = pick_series(read_headers([tmp_path / "asl"]))
    assert study, "the phantom writes its M0 scan as a series of its own"
    out = tmp_path / "out"
    res = run(perfnode("report", asl[0].SeriesInstanceUID, "--out", str(out), "--data", str(node.data)),
              check=True)
    assert "report:" in res.stdout
    summary = json.loads((out / "qc.json").read_text())
    assert not [n for n in summary["notes"] if "could not be fitted" in n], summary["notes"]
    assert summary["provenance"]["method"].startswith("single-PLD white paper")
    assert "cbf (" in (out / "index.html").read_text()
