"""Issue 13, over the network: on every real layout (multi-frame and classic) a DSC series and a DCE series
with its variable-flip-angle T1 series, sent with DCMTK ``storescu`` to ``perfnode serve``; the maps
arrive at a DCMTK ``storescp`` within the synthetic phantoms' tolerances, and pass dciodvfy. Each node
gets the DSC of one layout and the DCE of the next, so every layout goes through both jobs."""

from __future__ import annotations

import time

import highdicom as hd
import pytest
from pydicom import dcmread

from perfnode.dicom.parametric_map import map_values
from perfnode.dicom.provenance import read_provenance
from tests.dicom.test_parametric_map import dciodvfy_errors
from tests.pipeline.test_pipeline_end_to_end import StoreSCP, config, jobs_json, send_series, wait_for
from tests.real_layout_studies import CLASSIC, MULTI_FRAME, check_dce, check_dsc, dce_study, dsc_study

pytestmark = pytest.mark.slow

DSC_MAPS = {"rcbf", "rcbv", "mtt", "tmax", "ttp", "bat", "quality"}
DCE_MAPS = {"ktrans", "kep", "ve", "vp", "quality"}
#: in an order where neighbours come from different real studies (the two Philips series share one, and
#: the test tells the DSC maps from the DCE maps by their study)
LAYOUTS = ["siemens_xa30_bold_enh", "siemens_xa10_bold_enh", "siemens_xa60_dwi_enh",
           "philips_asl_3dpcasl_enh",
           "canon_dwi_enh", "philips_asl_multiphase_pwi_enh", "ge_epi_multiphase_classic"]
assert sorted(LAYOUTS) == sorted([*MULTI_FRAME, *CLASSIC])
#: (DSC layout, DCE layout): each layout once as DSC and once as DCE
PAIRS = [(LAYOUTS[i], LAYOUTS[i - 1]) for i in range(len(LAYOUTS))]


@pytest.mark.parametrize(("dsc_layout", "dce_layout"), PAIRS)
def test_real_layout_dsc_and_dce_through_the_node(dsc_layout, dce_layout, tmp_path, node_factory):
    dsc = dsc_study(dsc_layout, tmp_path / "dsc")
    dce = dce_study(dce_layout, tmp_path / "dce")
    scp = StoreSCP(tmp_path / "received").start()
    try:
        node = node_factory(["--config", str(config(tmp_path, scp))])
        send_series(dsc.series, node.port)
        send_series(dce.folders[1], node.port)  # the T1 series first: the DCE job finds it in the study
        send_series(dce.series, node.port)

        def finished() -> bool:
            jobs = [j for j in jobs_json(node) if j["analysis"] in ("dsc", "dce")]
            return len(jobs) == 2 and all(j["state"] in ("done", "held", "failed") for j in jobs)

        wait_for(finished, 600, "the DSC and DCE jobs")
        wait_for(lambda: len(scp.files()) >= len(DSC_MAPS) + len(DCE_MAPS), 120, "the maps at storescp")
        time.sleep(1)
        received = [dcmread(p) for p in scp.files()]
    finally:
        scp.stop()
    jobs = {j["series_instance_uid"]: j for j in jobs_json(node)}
    assert jobs[dsc.series_uid]["state"] == "done" and jobs[dce.series_uid]["state"] == "done", jobs
    by_study: dict[str, dict] = {}
    for ds in received:
        quantity, values = map_values(ds)
        by_study.setdefault(str(ds.StudyInstanceUID), {})[quantity.key] = values
    first = {name: dcmread(next(s.series.iterdir()), stop_before_pixels=True) for name, s in
             (("dsc", dsc), ("dce", dce))}
    dsc_maps, dce_maps = (by_study[str(first[k].StudyInstanceUID)] for k in ("dsc", "dce"))
    assert set(dsc_maps) == DSC_MAPS and set(dce_maps) == DCE_MAPS
    check_dsc(dsc_maps, dsc.truth)
    check_dce(dce_maps, dce.truth)
    for ds in received:
        src = first["dsc" if ds.StudyInstanceUID == first["dsc"].StudyInstanceUID else "dce"]
        assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
        hd.pm.ParametricMap.from_dataset(ds)
    dce_study_uid = first["dce"].StudyInstanceUID
    dce_prov = read_provenance(next(ds for ds in received if ds.StudyInstanceUID == dce_study_uid))
    assert dce_prov["t10_source"].startswith("VFA T1 map of series")
    for path in scp.files():
        assert dciodvfy_errors(path) == [], path
