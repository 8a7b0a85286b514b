"""Every valid phantom shape passes dciodvfy; the ground truth is written beside the objects."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from perfnode.phantoms import SHAPES, TECHNIQUES, Size, make
from tests.nodes import need, run

SMALL = Size(nx=8, ny=8, nz=2, nt=4)


def dciodvfy_errors(path) -> list[str]:
    res = run([need("dciodvfy"), str(path)], timeout=60)
    return [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("technique", TECHNIQUES)
def test_every_shape_passes_dciodvfy(tmp_path, technique, shape):
    if technique == "asl" and shape == "classic":
        with pytest.raises(ValueError, match="ASL label/control"):
            make(technique, shape, tmp_path, size=SMALL)
        return
    _, files = make(technique, shape, tmp_path, size=SMALL, snr=30)
    by_series: dict[str, list] = {}
    for f in files:
        by_series.setdefault(f.parent.name, []).append(f)
    checked = 0
    for series_files in by_series.values():
        # every instance of single/concat; first and last of the many-instance shapes
        chosen = series_files if len(series_files) <= 3 else [series_files[0], series_files[-1]]
        for f in chosen:
            assert dciodvfy_errors(f) == [], f
            checked += 1
    assert checked >= 1


def test_truth_files_describe_the_objects(tmp_path):
    phantom, files = make("dsc", "concat", tmp_path, size=SMALL, seed=4, snr=25)
    doc = json.loads((tmp_path / "truth.json").read_text())
    npz = np.load(tmp_path / "truth.npz")
    assert doc["technique"] == "dsc" and doc["shape"] == "concat" and doc["break"] is None
    assert len(doc["series"][0]["files"]) == 3 == len(files)
    assert doc["times_s"] == pytest.approx(list(np.arange(4) * 1.5))
    for key in ("cbf_ml_per_100g_per_min", "cbv_ml_per_100g", "mtt_s", "labels", "aif_mM", "series1_values"):
        assert key in npz.files
    assert npz["labels"].shape == (2, 8, 8)
    assert npz["series1_values"].shape == (1, 4, 2, 8, 8)
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert ds.SeriesInstanceUID == doc["series"][0]["series_instance_uid"]
    assert float(
        ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleSlope
    ) == pytest.approx(doc["series"][0]["rescale_slope"])
    assert (
        ds.MagneticFieldStrength == 3.0
        and ds.SharedFunctionalGroupsSequence[0].MREchoSequence[0].EffectiveEchoTime == 30.0
    )


def test_asl_header_has_labelling_duration_and_post_label_delay(tmp_path):
    _, files = make("asl", "single", tmp_path, size=SMALL)
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    shared = ds.SharedFunctionalGroupsSequence[0]
    asl = ds.PerFrameFunctionalGroupsSequence[0].MRArterialSpinLabelingSequence[0]
    assert asl.ASLSlabSequence[0].ASLPulseTrainDuration == 1_800_000  # µs
    assert shared.MRModifierSequence[0].InversionTimes == 1800.0  # post-label delay, ms
    contexts = {pf.MRArterialSpinLabelingSequence[0].ASLContext for pf in ds.PerFrameFunctionalGroupsSequence}
    assert contexts == {"CONTROL", "LABEL"}


def test_cli_phantom_writes_and_rejects(tmp_path):
    from perfnode.cli import main

    assert (
        main(
            [
                "phantom",
                "ivim",
                "--shape",
                "single",
                "--out",
                str(tmp_path / "a"),
                "--size",
                "8",
                "8",
                "--slices",
                "2",
            ]
        )
        == 0
    )
    assert (tmp_path / "a" / "truth.json").exists()
    assert (
        main(
            ["phantom", "dsc", "--shape", "single", "--out", str(tmp_path / "b"), "--break", "concat-offset"]
        )
        == 2
    )  # needs --shape concat
