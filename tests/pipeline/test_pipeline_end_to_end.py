"""The whole point of the node, from the outside: a perfusion series sent with DCMTK ``storescu``
comes back, untouched by hand, as Parametric Maps at a DCMTK ``storescp`` destination.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from perfnode.dicom.parametric_map import map_values
from perfnode.dicom.provenance import read_provenance
from perfnode.phantoms import Size, make
from tests.nodes import free_port, need, perfnode, run, wait_for_port

pytestmark = pytest.mark.slow


class StoreSCP:
    """A DCMTK ``storescp`` writing what it receives into a folder."""

    def __init__(self, folder: Path, ae_title: str = "MAPS") -> None:
        self.folder, self.ae_title, self.port = folder, ae_title, free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> StoreSCP:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([need("storescp"), "-aet", self.ae_title, "-od", str(self.folder),
                                      str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())


def config(tmp_path: Path, scp: StoreSCP, stable_s: float = 1.0) -> Path:
    path = tmp_path / "perfnode.toml"
    path.write_text(f"""
[peers.{scp.ae_title}]
host = "127.0.0.1"
port = {scp.port}

[pipeline]
destinations = ["{scp.ae_title}"]
stable_s = {stable_s}
retry_initial_s = 0.5
retry_max_s = 2
""")
    return path


def send_series(folder: Path, port: int) -> None:
    res = run([need("storescu"), "-aec", "PERFNODE", "+sd", "+r", "+sp", "*.dcm", "127.0.0.1", str(port),
               str(folder)],
              timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def jobs_json(node) -> list[dict]:
    res = run(perfnode("jobs", "--json", "--data", str(node.data)), check=True)
    return json.loads(res.stdout)


#: Maps a DSC analysis sends (one Parametric Map per quantity, see perfnode.techniques.dsc): CBF and CBV
#: as relative maps (DSC is not calibrated).
DSC_MAPS = {"rcbf", "rcbv", "mtt", "tmax", "ttp", "bat", "quality"}


def region_ratios(values: np.ndarray, labels: np.ndarray,
                  keep: np.ndarray | None = None) -> tuple[float, float]:
    """Grey/white and grey/lesion ratios of region medians (voxels in ``keep`` only)."""
    keep = np.ones(labels.shape, bool) if keep is None else keep
    g, w, les = (float(np.nanmedian(values[(labels == r) & keep])) for r in (1, 2, 3))
    return g / w, g / les


def test_dsc_concatenation_comes_back_as_parametric_maps(tmp_path, node_factory):
    phantom_dir = tmp_path / "phantom"
    make("dsc", "concat", phantom_dir, seed=3)
    scp = StoreSCP(tmp_path / "received").start()
    try:
        node = node_factory(["--config", str(config(tmp_path, scp))])
        send_series(phantom_dir, node.port)
        wait_for(lambda: len(scp.files()) >= len(DSC_MAPS), 180, "the maps at storescp")
        time.sleep(1)  # nothing more should arrive
        received = [dcmread(p) for p in scp.files()]
    finally:
        scp.stop()
    assert len(received) == len(DSC_MAPS)  # exactly once each
    assert {str(ds.SOPClassUID) for ds in received} == {"1.2.840.10008.5.1.4.1.1.30"}
    assert len({ds.SeriesInstanceUID for ds in received}) == 1  # one series per analysis
    maps = {q.key: v for q, v in (map_values(ds) for ds in received)}
    assert set(maps) == DSC_MAPS
    truth = np.load(phantom_dir / "truth.npz")
    labels = truth["labels"]
    # Relative maps: region ratios against the ground truth's (model-based deconvolution: measured
    # within 3 %; asserted within 15 %, the issue-14 tolerance)
    for name, key in (("rcbf", "cbf_ml_per_100g_per_min"), ("rcbv", "cbv_ml_per_100g")):
        np.testing.assert_allclose(region_ratios(maps[name], labels), region_ratios(truth[key], labels),
                                   rtol=0.15)
    prov = read_provenance(received[0])
    assert "DSC" in json.dumps(prov).upper() and "parametric" in json.dumps(prov).lower()
    assert prov["quality_gate"]["passed"] is True
    assert not any("NOT RELIABLE" in str(ds.get("ImageComments", "")) for ds in received)
    dciodvfy = run([need("dciodvfy"), str(scp.files()[0])])
    errors = [ln for ln in (dciodvfy.stdout + dciodvfy.stderr).splitlines() if ln.startswith("Error")]
    assert errors == []
    (job,) = [j for j in jobs_json(node) if j["analysis"] == "dsc"]
    assert job["state"] == "done" and job["destinations"] == ["MAPS"]


def flagged_config(tmp_path: Path, scp: StoreSCP, policy: str) -> Path:
    path = config(tmp_path, scp)
    path.write_text(path.read_text() + f'on_quality_failure = "{policy}"\n')
    return path


REALISTIC_DSC = Size(nx=32, ny=32, nz=4, nt=60)


def test_dsc_at_clinical_noise_sent_when_reliable_held_when_not(tmp_path, node_factory):
    """Issue 14, end to end: a realistic DSC phantom (partial-volume artery, vein, recirculation) at SNR 20
    comes back with relative maps within 15 % of the truth's region ratios; the same at SNR 10 fails the
    quality gate and is held: archived, not sent, and ``perfnode jobs`` says why."""
    make("dsc", "single", tmp_path / "snr20", seed=3, snr=20, size=REALISTIC_DSC, realistic=True)
    make("dsc", "single", tmp_path / "snr10", seed=4, snr=10, size=REALISTIC_DSC, realistic=True)
    scp = StoreSCP(tmp_path / "received").start()
    try:
        node = node_factory(["--config", str(config(tmp_path, scp))])  # default: on_quality_failure = hold
        for name in ("snr20", "snr10"):
            send_series(tmp_path / name, node.port)

        def finished() -> bool:
            states = [j["state"] for j in jobs_json(node) if j["analysis"] == "dsc"]
            return len(states) == 2 and set(states) <= {"done", "held", "failed"}

        wait_for(finished, 300, "both DSC jobs to finish")
        time.sleep(1)
        received = [dcmread(p) for p in scp.files()]
    finally:
        scp.stop()
    jobs = {j["series_instance_uid"]: j for j in jobs_json(node) if j["analysis"] == "dsc"}
    first = {name: dcmread(next((tmp_path / name / "series01").iterdir()), stop_before_pixels=True)
             for name in ("snr20", "snr10")}
    uid = {name: ds.SeriesInstanceUID for name, ds in first.items()}
    assert first["snr20"].StudyInstanceUID != first["snr10"].StudyInstanceUID
    assert jobs[uid["snr20"]]["state"] == "done"
    held = jobs[uid["snr10"]]
    assert held["state"] == "held" and "not reliable because" in held["error"]
    assert "contrast-to-noise" in held["error"]
    listing = run(perfnode("jobs", "--data", str(node.data)), check=True).stdout
    assert "held" in listing and "not reliable because" in listing
    # only the SNR 20 maps arrived, and they are right
    assert {ds.StudyInstanceUID for ds in received} == {first["snr20"].StudyInstanceUID}
    maps = {q.key: v for q, v in (map_values(ds) for ds in received)}
    assert set(maps) == DSC_MAPS
    truth = np.load(tmp_path / "snr20" / "truth.npz")
    labels, pure = truth["labels"], truth["artery_fraction"] == 0
    for name, key in (("rcbf", "cbf_ml_per_100g_per_min"), ("rcbv", "cbv_ml_per_100g")):
        np.testing.assert_allclose(region_ratios(maps[name], labels, pure), region_ratios(truth[key], labels),
                                   rtol=0.15)
    prov = read_provenance(received[0])
    gate = prov["quality_gate"]
    assert gate["passed"] is True and gate["measures"]["tissue_cnr"] >= gate["thresholds"]["min_tissue_cnr"]
    assert all(tuple(v) in {tuple(x) for x in np.argwhere(truth["artery_fraction"] > 0.5)}
               for v in prov["aif_voxels"])


def test_unreliable_maps_sent_flagged_when_configured(tmp_path, node_factory):
    make("dsc", "single", tmp_path / "snr10", seed=4, snr=10, size=REALISTIC_DSC, realistic=True)
    scp = StoreSCP(tmp_path / "received").start()
    try:
        node = node_factory(["--config", str(flagged_config(tmp_path, scp, "send_flagged"))])
        send_series(tmp_path / "snr10", node.port)
        wait_for(lambda: len(scp.files()) >= len(DSC_MAPS), 300, "the flagged maps at storescp")
        time.sleep(1)
        received = [dcmread(p) for p in scp.files()]
    finally:
        scp.stop()
    assert len(received) == len(DSC_MAPS)
    by_name = {map_values(ds)[0].key: ds for ds in received}
    for name in ("rcbf", "rcbv", "mtt"):
        assert by_name[name].ImageComments.startswith("NOT RELIABLE (perfnode quality gate): ")
        assert "contrast-to-noise" in by_name[name].ImageComments
    prov = read_provenance(received[0])
    assert prov["quality_gate"]["passed"] is False
    assert prov["quality_gate"]["verdict"].startswith("not reliable because")
    (job,) = [j for j in jobs_json(node) if j["analysis"] == "dsc"]
    assert job["state"] == "done"


def children(pid: int) -> list[int]:
    """Process ids of ``pid``'s children (Linux /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def test_destination_down_then_up_and_kill_during_delivery(tmp_path, node_factory):
    """Maps wait for a destination that is down; a node killed meanwhile resumes; each map arrives once."""
    phantom_dir = tmp_path / "phantom"
    make("dsc", "single", phantom_dir, seed=5)
    scp = StoreSCP(tmp_path / "received")  # not started: the destination is down
    node = node_factory(["--config", str(config(tmp_path, scp))])
    send_series(phantom_dir, node.port)
    wait_for(lambda: any(j["state"] == "running" and j["output_series_uid"] for j in jobs_json(node)),
             120, "the analysis to finish and delivery to start")
    workers = children(node.proc.pid)  # the analysis worker processes
    assert workers
    node.stop(signal.SIGKILL)  # killed while retrying the delivery
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 30,
             "the killed node's workers to exit")
    node.start()  # same data folder and port
    scp.start()
    try:
        wait_for(lambda: len(scp.files()) >= len(DSC_MAPS), 180, "the maps after restart")
        wait_for(lambda: [j["state"] for j in jobs_json(node) if j["analysis"] == "dsc"] == ["done"], 60,
                 "the job to be done")
        time.sleep(1)
        received = scp.files()
    finally:
        scp.stop()
    uids = [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in received]
    assert len(uids) == len(set(uids)) == len(DSC_MAPS)  # nothing sent twice
    (job,) = [j for j in jobs_json(node) if j["analysis"] == "dsc"]
    assert job["state"] == "done"


def test_maps_offline_command(tmp_path):
    phantom_dir = tmp_path / "phantom"
    make("dsc", "per-time", phantom_dir, seed=7)
    out = tmp_path / "out"
    res = run(perfnode("maps", str(phantom_dir), "--out", str(out), "--json", "--no-report", "--colour"),
              timeout=300)
    assert res.returncode == 0, res.stderr
    (summary,) = json.loads(res.stdout)
    assert summary["technique"] == "dsc"
    names = {Path(p).stem for p in summary["maps"]}
    assert {"rcbf", "rcbv", "mtt_s", "tmax_s"} <= names
    source = dcmread(next((phantom_dir / "series01").iterdir()), stop_before_pixels=True)
    colour = [p for p in summary["maps"] if Path(p).parent.name == "colour"]
    quantitative = [p for p in summary["maps"] if Path(p).parent.name == "maps"]
    assert sorted(Path(p).stem for p in colour) == sorted(Path(p).stem for p in quantitative)
    for p in colour:  # one colour rendering per map, labelled as such, valid
        sc = dcmread(p, stop_before_pixels=True)
        assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7.4" and sc.BurnedInAnnotation == "YES"
        assert "NOT FOR QUANTITATIVE USE" in sc.SeriesDescription
    check = run([need("dciodvfy"), colour[0]])
    assert [ln for ln in (check.stdout + check.stderr).splitlines() if ln.startswith("Error")] == []
    for p in summary["maps"]:
        pm = dcmread(p, stop_before_pixels=True)
        # the maps overlay the source: same study, same frame of reference
        assert pm.StudyInstanceUID == source.StudyInstanceUID
        assert pm.FrameOfReferenceUID == source.FrameOfReferenceUID


def region_median(values: np.ndarray, labels: np.ndarray, region: int) -> float:
    return float(np.nanmedian(values[labels == region]))


def test_every_technique_end_to_end(tmp_path, node_factory):
    """CT perfusion, DCE (with its VFA T1 series), ASL (with its M0 series) and IVIM phantoms, sent
    together; each comes back as maps whose region values match the phantom's ground truth."""
    techniques = ("ctp", "dce", "asl", "ivim")
    for t in techniques:
        make(t, "single", tmp_path / "phantoms" / t, seed=11)
    scp = StoreSCP(tmp_path / "received").start()
    try:
        node = node_factory(["--config", str(config(tmp_path, scp))])
        send_series(tmp_path / "phantoms", node.port)

        def analysed() -> bool:
            states = {j["analysis"]: j["state"] for j in jobs_json(node) if j["analysis"] != "none"}
            return set(states) == set(techniques) and set(states.values()) <= {"done", "refused", "failed"}

        wait_for(analysed, 300, "every analysis to finish")
        jobs = {j["analysis"]: j for j in jobs_json(node) if j["analysis"] != "none"}
        assert {t: j["state"] for t, j in jobs.items()} == dict.fromkeys(techniques, "done"), jobs
        time.sleep(1)
        received = [dcmread(p) for p in scp.files()]
    finally:
        scp.stop()
    by_technique: dict[str, dict[str, np.ndarray]] = {}
    for ds in received:
        technique = str(ds.SeriesDescription).split()[1].lower()  # "perfnode DCE maps"
        q, values = map_values(ds)
        by_technique.setdefault(technique, {})[q.key] = values
    assert set(by_technique) == set(techniques)

    def truth(t: str) -> tuple[np.lib.npyio.NpzFile, np.ndarray]:
        npz = np.load(tmp_path / "phantoms" / t / "truth.npz")
        return npz, npz["labels"]

    ctp, labels = truth("ctp")
    for r in (1, 2, 3):  # same deconvolution as DSC: CBF within 35 % (see the DSC test)
        assert region_median(by_technique["ctp"]["cbf"], labels, r) == pytest.approx(
            region_median(ctp["cbf_ml_per_100g_per_min"], labels, r), rel=0.35)
    for r in (1, 2):  # CBV within 25 %; the lesion (MTT 12 s) has not washed out by the end of the
        # phantom's 30 s acquisition, so its area is truncated (QC reports the short duration)
        assert region_median(by_technique["ctp"]["cbv"], labels, r) == pytest.approx(
            region_median(ctp["cbv_ml_per_100g"], labels, r), rel=0.25)
    dce, labels = truth("dce")
    for r in (1, 2, 3):  # measured AIF + VFA T1: Ktrans within 15 % (+0.005/min), ve and vp within 0.05
        m = by_technique["dce"]
        assert region_median(m["ktrans"], labels, r) == pytest.approx(
            region_median(dce["ktrans_per_min"], labels, r), rel=0.15, abs=0.005)
        for name in ("ve", "vp"):
            assert region_median(m[name], labels, r) == pytest.approx(
                region_median(dce[name], labels, r), abs=0.05)
    asl, labels = truth("asl")
    for r in (1, 2, 3):  # the white-paper formula is exact for the phantom's model: 10 % for the noise
        assert region_median(by_technique["asl"]["cbf"], labels, r) == pytest.approx(
            region_median(asl["cbf_ml_per_100g_per_min"], labels, r), rel=0.10)
    ivim, labels = truth("ivim")
    for r in (1, 2, 3):  # D within 10 %, f within 0.03; D* is poorly conditioned (ESR): within 50 %
        m = by_technique["ivim"]
        assert region_median(m["ivim_d"], labels, r) == pytest.approx(
            region_median(ivim["d_mm2_per_s"], labels, r), rel=0.10)
        assert region_median(m["ivim_f"], labels, r) == pytest.approx(
            region_median(ivim["f"], labels, r), abs=0.03)
        assert region_median(m["ivim_dstar"], labels, r) == pytest.approx(
            region_median(ivim["dstar_mm2_per_s"], labels, r), rel=0.5)


def test_maps_sent_to_a_pacs_with_storage_commitment(tmp_path):
    """perfnode sends its maps to another PACS (a second perfnode) and asks it to commit them."""
    from sqlalchemy import select

    from perfnode.archive.db import Database
    from perfnode.archive.models import CommitmentItem, CommitmentRequest, Instance
    from tests.nodes import Node

    a_port, b_port = free_port(), free_port()
    (tmp_path / "a.toml").write_text(f"""
[peers.PACSB]
host = "127.0.0.1"
port = {b_port}

[pipeline]
destinations = ["PACSB"]
stable_s = 1
commit = true
commit_timeout_s = 30
""")
    (tmp_path / "b.toml").write_text(f"""
[peers.PERFNODE]
host = "127.0.0.1"
port = {a_port}

[commitment]
same_association = true

[pipeline]
enabled = false
""")
    b = Node(data=tmp_path / "b", port=b_port, ae_title="PACSB", extra=["--config", str(tmp_path / "b.toml")])
    a = Node(data=tmp_path / "a", port=a_port, extra=["--config", str(tmp_path / "a.toml")])
    make("dsc", "single", tmp_path / "phantom", seed=2)
    try:
        b.start()
        a.start()
        send_series(tmp_path / "phantom", a.port)
        finished = (["done"], ["failed"])
        wait_for(lambda: [j["state"] for j in jobs_json(a) if j["analysis"] == "dsc"] in finished,
                 180, "the job to finish")
        (job,) = [j for j in jobs_json(a) if j["analysis"] == "dsc"]
        assert job["state"] == "done", job["error"]
    finally:
        a.stop()
        b.stop()
    db = Database(b.database_url)
    with db.session() as s:
        stored = set(s.scalars(select(Instance.sop_instance_uid)
                               .where(Instance.sop_class_uid == "1.2.840.10008.5.1.4.1.1.30")))
        (request,) = s.scalars(select(CommitmentRequest)).all()
        committed = set(s.scalars(select(CommitmentItem.sop_instance_uid)
                                  .where(CommitmentItem.failure_reason.is_(None))))
        assert request.requester_ae == "PERFNODE" and request.state == "delivered"
    assert len(stored) == len(DSC_MAPS)
    assert committed == stored  # every map sent was committed, nothing else
    db.dispose()
