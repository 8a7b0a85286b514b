"""Integer Parametric Maps for viewers that cannot show Float Pixel Data (Orthanc's among them).

``integer_maps = true`` on a destination of the AE table: the pipeline sends each map as a 16-bit
unsigned Parametric Map whose Real World Value Mapping slope/intercept give the values back within half
a quantisation step (stated in the LUT Explanation and the provenance); NaN stays "no value".
Orthanc stores them and renders them (its preview of a float map fails).
"""

from __future__ import annotations

import time
import urllib.error

import numpy as np
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO

from perfnode.dicom.parametric_map import map_values
from perfnode.dicom.provenance import read_provenance
from tests.nodes import Node, free_port, need, perfnode, run
from tests.orthanc import Orthanc

PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"


def test_pipeline_sends_16_bit_maps_to_an_integer_destination(tmp_path):
    orthanc = Orthanc(tmp_path / "orthanc").start()
    cfg = tmp_path / "perfnode.toml"
    cfg.write_text(f"""
[peers.ORTHANC]
host = "127.0.0.1"
port = {orthanc.dicom_port}
integer_maps = true

[pipeline]
destinations = ["ORTHANC"]
stable_s = 1
retry_initial_s = 0.5
""")
    node = Node(data=tmp_path / "node", port=free_port(), extra=["--config", str(cfg), "--no-web"])
    try:
        node.start()
        src = tmp_path / "src"
        run(perfnode("phantom", "dsc", "--size", "8", "8", "--slices", "2", "--out", str(src)), check=True)
        res = run([need("storescu"), "-aec", node.ae_title, "+sd", "+r", "+sp", "*.dcm", "127.0.0.1",
                   str(node.port), str(src)])
        assert res.returncode == 0, res.stdout + res.stderr
        deadline = time.monotonic() + 300
        while len(orthanc.rest("GET", "/instances")) < 7 and time.monotonic() < deadline:  # the 7 maps
            time.sleep(0.5)
        maps = {}
        for oid in orthanc.rest("GET", "/instances"):
            ds = dcmread(DicomBytesIO(orthanc.rest("GET", f"/instances/{oid}/file")))
            if str(ds.SOPClassUID) == PARAMETRIC_MAP:
                maps[oid] = ds
        assert len(maps) == 7, node.output()[-3000:]
        oid, ds = next((o, d) for o, d in maps.items() if "MTT" in str(d.ContentLabel))
        assert (ds.BitsAllocated, ds.PixelRepresentation) == (16, 0) and "FloatPixelData" not in ds
        mapping = ds.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        step = float(mapping.RealWorldValueSlope)
        assert (mapping.RealWorldValueFirstValueMapped, mapping.RealWorldValueLastValueMapped) == (1, 65535)
        assert f"step {step:.4g}" in mapping.LUTExplanation
        prov = read_provenance(ds)
        assert prov["map"]["quantisation"]["step"] == step
        # the float map it came from, in the node's archive: values within half a step, NaN where NaN
        float_uid = prov["map"]["quantisation"]["float_sop_instance_uid"]
        [float_file] = [p for p in (node.data / "objects").rglob(f"{float_uid}.dcm")]
        _, want = map_values(dcmread(float_file))
        _, got = map_values(ds)
        assert np.array_equal(np.isnan(want), np.isnan(got))
        finite = np.isfinite(want)
        assert np.max(np.abs(got[finite].astype(float) - want[finite])) <= step / 2 * (1 + 1e-3)
        path = tmp_path / "int.dcm"
        ds.save_as(path, enforce_file_format=True)
        check = run([need("dciodvfy"), str(path)])
        assert [ln for ln in (check.stdout + check.stderr).splitlines() if ln.startswith("Error")] == []
        # Orthanc renders the integer map
        png = orthanc.rest("GET", f"/instances/{oid}/preview")
        assert isinstance(png, bytes) and png.startswith(b"\x89PNG")
    finally:
        node.stop()
        orthanc.stop()


def test_orthanc_cannot_render_a_float_map(tmp_path):
    """Why the option exists: the same kind of map as Float Pixel Data has no preview in Orthanc."""
    src, out = tmp_path / "src", tmp_path / "maps"
    run(perfnode("phantom", "ivim", "--size", "4", "4", "--slices", "1", "--out", str(src)), check=True)
    run(perfnode("maps", str(src), "--out", str(out), "--no-report"), timeout=300, check=True)
    orthanc = Orthanc(tmp_path / "orthanc").start()
    try:
        f = next(out.rglob("maps/*.dcm"))
        oid = orthanc.rest("POST", "/instances", raw=f.read_bytes())["ID"]
        try:
            orthanc.rest("GET", f"/instances/{oid}/preview")
            rendered = True
        except urllib.error.HTTPError:
            rendered = False
        assert not rendered
    finally:
        orthanc.stop()
