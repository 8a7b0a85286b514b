"""Issue 13: a DSC and a DCE series built on every real vendor layout (tests/data/real-data: real headers,
functional groups and private data; phantom signal, tests/real_layout_studies.py) give maps within the
synthetic phantoms' tolerances through ``perfnode maps``, run as a user runs it; every map passes dciodvfy
with no errors and reads back with highdicom. Over the network (storescu → perfnode serve → storescp):
one Enhanced multi-frame layout (Siemens XA30) and the classic one (GE), both techniques."""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest

from perfnode.cli import main
from perfnode.dicom.parametric_map import map_values
from perfnode.dicom.provenance import read_provenance
from perfnode.phantoms.real_layout import slice_offsets
from tests.dicom.test_parametric_map import dciodvfy_errors
from tests.real_data import series_files
from tests.real_layout_studies import (
    CLASSIC,
    MULTI_FRAME,
    SLICES,
    check_dce,
    check_dsc,
    dce_study,
    dsc_study,
)

pytestmark = pytest.mark.slow

DSC_MAPS = {"rcbf", "rcbv", "mtt", "tmax", "ttp", "bat", "quality"}
DCE_MAPS = {"ktrans", "kep", "ve", "vp", "quality"}


def maps_command(folders, out, capsys) -> list[dict]:
    code = main(["maps", *map(str, folders), "--out", str(out), "--json", "--no-report"])
    outcomes = json.loads(capsys.readouterr().out)
    assert code == 0, outcomes
    return outcomes


def read_maps(paths) -> tuple[dict[str, np.ndarray], list[pydicom.Dataset]]:
    dss = [pydicom.dcmread(p) for p in paths]
    return {q.key: v for q, v in (map_values(ds) for ds in dss)}, dss


def valid(paths, source_folder) -> None:
    """Every map: no dciodvfy error, reads back with highdicom, on the source's Frame of Reference."""
    src = pydicom.dcmread(next(source_folder.iterdir()), stop_before_pixels=True)
    for path in paths:
        assert dciodvfy_errors(path) == [], path
        pm = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(path))
        assert pm.FrameOfReferenceUID == src.FrameOfReferenceUID
        assert pm.StudyInstanceUID == src.StudyInstanceUID


@pytest.mark.parametrize("name", [*MULTI_FRAME, *CLASSIC])
def test_dsc_on_a_real_layout_through_perfnode_maps(name, tmp_path, capsys):
    study = dsc_study(name, tmp_path / "in")
    (entry,) = [o for o in maps_command(study.folders, tmp_path / "out", capsys)
                if o["series_instance_uid"] == study.series_uid]
    assert entry["status"] == "written" and entry["technique"] == "dsc", entry
    assert "stated by the header" in entry["decision"]
    maps, dss = read_maps(entry["maps"])
    assert set(maps) == DSC_MAPS
    check_dsc(maps, study.truth)
    # the template's slice timing (Siemens multiband, GE interleaved) is corrected; Philips/Canon have none
    slice_timed = slice_offsets(series_files(name), SLICES).max() > 0.1
    assert read_provenance(dss[0])["slice_timing"].startswith("applied") == slice_timed
    valid(entry["maps"], study.series)


@pytest.mark.parametrize("name", [*MULTI_FRAME, *CLASSIC])
def test_dce_with_its_t1_series_on_a_real_layout_through_perfnode_maps(name, tmp_path, capsys):
    study = dce_study(name, tmp_path / "in")
    outcomes = maps_command(study.folders, tmp_path / "out", capsys)
    (entry,) = [o for o in outcomes if o["series_instance_uid"] == study.series_uid]
    assert entry["status"] == "written" and entry["technique"] == "dce", entry
    (vfa,) = [o for o in outcomes if o is not entry]
    assert vfa["status"] == "refused" and "companion series (variable-flip-angle T1)" in vfa["reason"]
    maps, dss = read_maps(entry["maps"])
    assert set(maps) == DCE_MAPS
    check_dce(maps, study.truth)
    assert read_provenance(dss[0])["t10_source"].startswith("VFA T1 map of series")
    valid(entry["maps"], study.series)
