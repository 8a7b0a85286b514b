"""Parametric Maps on perfnode's own PERF phantoms (Enhanced MR/CT, single object and concatenation):
ground-truth maps in, the same values and the source's geometry out, dciodvfy-clean."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from perfnode.dicom import frames
from perfnode.dicom.parametric_map import MapGeometry, build_parametric_maps, frame_order, map_values
from perfnode.dicom.provenance import read_provenance
from perfnode.phantoms import objects
from tests.dicom.test_parametric_map import dciodvfy_errors, save_all

CASES = [  # technique, shape, truth maps → quantity names
    ("dsc", "single", {"cbf_ml_per_100g_per_min": "cbf", "cbv_ml_per_100g": "cbv", "mtt_s": "mtt"}),
    ("ctp", "concat", {"cbf_ml_per_100g_per_min": "cbf", "mtt_s": "mtt"}),
    ("dce", "concat", {"ktrans_per_min": "ktrans", "ve": "ve", "vp": "vp"}),
]


@pytest.mark.parametrize(("technique", "shape", "names"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_truth_maps_on_phantom(tmp_path, technique, shape, names):
    phantom = objects.simulate(technique)
    sources = objects.build(phantom, phantom.image_sets[0], shape)
    src_dir, out_dir = tmp_path / "src", tmp_path / "out"
    src_dir.mkdir()
    out_dir.mkdir()
    sources = [pydicom.dcmread(p) for p in save_all(sources, src_dir)]
    volume = frames.assemble(sources)
    truth = {name: np.asarray(phantom.truth[name], dtype=np.float32) for name in names}
    geom = MapGeometry.from_geometry(volume.geometry, sources[0].Rows, sources[0].Columns)
    assert geom == MapGeometry.from_datasets(sources)  # the assembler and the map writer agree on the grid
    pms = build_parametric_maps(
        sources,
        truth,
        geometry=volume.geometry,
        uid_seed=f"phantom-{technique}",
        provenance={"technique": technique, "model": "ground truth"},
    )
    assert len(pms) == len(names)
    nt = len(phantom.truth["times_s"])
    for (name, values), path in zip(truth.items(), save_all(pms, out_dir), strict=True):
        assert dciodvfy_errors(path) == [], (name, path)
        ds = pydicom.dcmread(path)
        q, got = map_values(ds)
        assert q is not None and q.key == names[name]
        assert np.array_equal(got, values)  # float32 exact, z in the assembler's order
        assert ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
        order, dist = frame_order(ds)
        assert np.allclose(dist, np.asarray(volume.geometry.positions) @ volume.geometry.normal, atol=1e-4)
        # each map frame references every time point of its slice, across all concatenation parts
        uids = {s.SOPInstanceUID for s in sources}
        for k, j in enumerate(order):
            items = ds.PerFrameFunctionalGroupsSequence[j].DerivationImageSequence[0].SourceImageSequence
            assert len(items) == nt
            refs = {(it.ReferencedSOPInstanceUID, int(it.ReferencedFrameNumber)) for it in items}
            want = {volume.source_frame(t, k) for t in range(nt)}
            assert refs == want and {r[0] for r in refs} <= uids
        assert read_provenance(ds)["technique"] == technique
