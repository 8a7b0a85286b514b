"""Storage commitment as SCU against Orthanc, which sends the N-EVENT-REPORT on a **new** association.

Issue 15: the pipeline (``commit = true``) waited for the report on its own association, and the node's
server had no N-EVENT-REPORT handler (pynetdicom: "No handler has been bound to EVT_N_EVENT_REPORT",
Orthanc: "The request cannot be handled by remote AET"), so every job failed. Now the node's server
matches the report to the request it sent, by Transaction UID, and records it in ``sent_commitments``.
"""

from __future__ import annotations

import json
import time

import pytest
from pydicom import dcmread
from sqlalchemy import select

from perfnode.archive.db import Database
from perfnode.archive.models import SentCommitment
from perfnode.phantoms import make
from tests.nodes import Node, free_port, need, perfnode, run
from tests.orthanc import Orthanc

PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"


def sent_rows(node: Node) -> list[SentCommitment]:
    db = Database(node.database_url, migrate=False)
    try:
        with db.session() as s:
            rows = list(s.scalars(select(SentCommitment).order_by(SentCommitment.id)))
            for r in rows:
                _ = [(i.sop_instance_uid, i.committed, i.failure_reason) for i in r.items]
                s.expunge(r)
            return rows
    finally:
        db.dispose()


@pytest.fixture
def pair(tmp_path):
    """A node whose pipeline sends its maps to Orthanc and asks it to commit them; Orthanc knows the
    node (DicomModalities) and reports back to it on a new association."""
    node_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", modalities={"PERFNODE": ("PERFNODE", "127.0.0.1", node_port)})
    orthanc.start()
    cfg = tmp_path / "perfnode.toml"
    cfg.write_text(f"""
[peers.ORTHANC]
host = "127.0.0.1"
port = {orthanc.dicom_port}

[pipeline]
destinations = ["ORTHANC"]
stable_s = 1
commit = true
commit_timeout_s = 30
retry_initial_s = 0.5
retry_max_s = 2
""")
    node = Node(data=tmp_path / "node", port=node_port, extra=["--config", str(cfg)])
    try:
        yield node.start(), orthanc
    finally:
        node.stop()
        orthanc.stop()


def test_pipeline_commitment_report_from_orthanc_on_a_new_association(pair, tmp_path):
    node, orthanc = pair
    make("dsc", "single", tmp_path / "phantom", seed=7)
    res = run([need("storescu"), "-aec", "PERFNODE", "+sd", "+r", "+sp", "*.dcm", "127.0.0.1",
               str(node.port), str(tmp_path / "phantom")], timeout=120)
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 240
    jobs: list[dict] = []
    while time.monotonic() < deadline:
        jobs = json.loads(run(perfnode("jobs", "--json", "--data", str(node.data)), check=True).stdout)
        if jobs and all(j["state"] in ("done", "failed", "held") for j in jobs):
            break
        time.sleep(0.5)
    (job,) = [j for j in jobs if j["analysis"] == "dsc"]
    assert job["state"] == "done", f"{job['error']}\n{node.output()[-3000:]}"
    # Orthanc holds the maps, and committed every one of them in a report the node recorded
    maps = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID)
            for p in (node.data / "objects").rglob("*.dcm")
            if dcmread(p, stop_before_pixels=True).SOPClassUID == PARAMETRIC_MAP}
    assert maps and set(orthanc.instances()) >= maps
    (row,) = sent_rows(node)
    assert (row.destination_ae, row.state, row.event_type, row.reporter_ae, row.via, row.job_id) == (
        "ORTHANC", "committed", 1, "ORTHANC", "new", job["id"])
    assert {i.sop_instance_uid for i in row.items if i.committed} == maps
    assert node.logged("storage commitment report") and "No handler" not in node.output()


def test_commit_command_with_orthanc_new_association_and_listen_port(pair, tmp_path):
    """``perfnode commit`` with the running node's ``--data`` (report to the node's server) and with
    ``--listen-port`` (a listener of its own); an instance Orthanc never got fails with 0x0112."""
    node, orthanc = pair
    _, files = make("dce", "single", tmp_path / "sent", seed=8)
    assert run(perfnode("send", *map(str, files), "--to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"),
               check=True)
    _, never = make("dce", "single", tmp_path / "unsent", seed=9)
    target = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
    res = run(perfnode("commit", target, *map(str, files), "--data", str(node.data), "--timeout", "30",
                       "--json"))
    out = json.loads(res.stdout)
    assert res.returncode == 0 and out["event_type"] == 1, res.stdout + res.stderr
    sent = sorted(str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files)
    assert sorted(out["committed"]) == sent
    (row,) = sent_rows(node)
    assert (row.transaction_uid, row.state, row.via) == (out["transaction_uid"], "committed", "new")

    listen = free_port()
    orthanc.stop()  # Orthanc reads DicomModalities at start: add the command's own AE
    orthanc.modalities["ASKER"] = ("ASKER", "127.0.0.1", listen)
    orthanc.start()
    res = run(perfnode("commit", target, *map(str, files), *map(str, never), "--ae-title", "ASKER",
                       "--listen-port", str(listen), "--timeout", "30", "--json"))
    out = json.loads(res.stdout)
    assert res.returncode == 1 and out["event_type"] == 2, res.stdout + res.stderr
    assert sorted(out["committed"]) == sent
    missing = str(dcmread(never[0], stop_before_pixels=True).SOPInstanceUID)
    assert {"sop_instance_uid": missing, "failure_reason": 0x0112} in out["failed"]
