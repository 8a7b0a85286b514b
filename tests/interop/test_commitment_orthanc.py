"""Storage commitment as SCU against Orthanc, which sends the N-EVENT-REPORT on a **new** association.

Issue 15: the pipeline (``commit = true``) waited for the report on its own association, and the node's
server had no N-EVENT-REPORT handler (pynetdicom: "No handler has been bound to EVT_N_EVENT_REPORT",
Orthanc: "The request cannot be handled by remote AET"), so every job failed. Now the node's server
matches the report to the request it sent, by Transaction UID, and records it in ``sent_commitments``.
The pipeline's own path (maps → Orthanc → commitment) is the case ``ec-rad10-pipeline-orthanc`` of
``conformance/run`` (``tests/test_conformance_run.py``); here, the same server path via ``perfnode commit``.
"""

from __future__ import annotations

import json

import pytest
from pydicom import dcmread
from sqlalchemy import select

from perfnode.archive.db import Database
from perfnode.archive.models import SentCommitment
from perfnode.phantoms import make
from tests.nodes import Node, free_port, perfnode, run
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
    """A node that knows Orthanc, and an Orthanc that knows the node (DicomModalities) and reports back to
    it on a new association."""
    node_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", modalities={"PERFNODE": ("PERFNODE", "127.0.0.1", node_port)})
    orthanc.start()
    cfg = tmp_path / "perfnode.toml"
    cfg.write_text(f"""
[peers.ORTHANC]
host = "127.0.0.1"
port = {orthanc.dicom_port}
""")
    node = Node(data=tmp_path / "node", port=node_port, extra=["--config", str(cfg)])
    try:
        yield node.start(), orthanc
    finally:
        node.stop()
        orthanc.stop()


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
