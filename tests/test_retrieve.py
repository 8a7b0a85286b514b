"""C-MOVE and C-GET SCP end to end: DCMTK movescu → storescp, getscu, and pynetdicom (cancel, failures)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from perfnode.archive.db import Database
from perfnode.archive.models import Instance
from tests.nodes import free_port, need, run, wait_for_port
from tests.test_query_data import ct, load, series_of

STUDY = "1.2.3.1"


@pytest.fixture
def storescp(tmp_path):
    """DCMTK storescp as the move destination; ``start(*options)`` returns (port, output folder)."""
    procs: list[subprocess.Popen] = []

    def start(*options: str) -> tuple[int, Path]:
        port, out = free_port(), tmp_path / f"dest{len(procs)}"
        out.mkdir()
        procs.append(
            subprocess.Popen(
                [need("storescp"), "-aet", "DEST", "-od", str(out), *options, str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for_port(port, proc=procs[-1])
        return port, out

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


@pytest.fixture
def dest_node(node_factory, storescp, tmp_path):
    """A node that knows DEST (storescp, uncompressed only) and RAW (storescp accepting every syntax)."""
    port, out = storescp()
    port_all, out_all = storescp("+xa")
    n = node_factory(extra_args=["--peer", f"DEST=127.0.0.1:{port}", "--peer", f"RAW=127.0.0.1:{port_all}"])
    load(n, series_of("PA", "A^B", STUDY, f"{STUDY}.1", 3), tmp_path / "a")
    load(n, series_of("PA", "A^B", STUDY, f"{STUDY}.2", 2, compressed=True), tmp_path / "b")
    n.dest, n.dest_all = out, out_all
    return n


def movescu(node, dest: str, *keys: str, root: str = "-S") -> str:
    cmd = [need("movescu"), "-v", root, "-aec", node.ae_title, "-aem", dest, "127.0.0.1", str(node.port)]
    for k in keys:
        cmd += ["-k", k]
    res = run(cmd, timeout=60)
    return res.stdout + res.stderr


def received(folder: Path) -> dict[str, Dataset]:
    return {ds.SOPInstanceUID: ds for ds in (dcmread(p) for p in folder.iterdir())}


def test_movescu_to_storescp_transcodes_when_needed(dest_node):
    log = movescu(dest_node, "DEST", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={STUDY}")
    assert log.count("(Pending)") == 5 and "Final Move Response (Success)" in log
    got = received(dest_node.dest)
    assert sorted(got) == sorted([f"{STUDY}.1.{i}" for i in (1, 2, 3)] + [f"{STUDY}.2.{i}" for i in (1, 2)])
    for uid, ds in got.items():
        number = int(uid.rsplit(".", 1)[1])
        # storescp accepts only uncompressed syntaxes: the RLE files were decompressed, losslessly
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert np.array_equal(ds.pixel_array, np.arange(64).reshape(8, 8) + 100 * number)
    # a destination that accepts RLE gets the stored bytes as they are
    log = movescu(
        dest_node,
        "RAW",
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={STUDY}",
        f"SeriesInstanceUID={STUDY}.2",
    )
    got = received(dest_node.dest_all)
    assert sorted(got) == [f"{STUDY}.2.1", f"{STUDY}.2.2"]
    assert {ds.file_meta.TransferSyntaxUID for ds in got.values()} == {RLELossless}


def test_move_patient_root_and_unknown_destination(dest_node):
    log = movescu(dest_node, "NOWHERE", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={STUDY}")
    assert "MoveDestinationUnknown" in log and list(dest_node.dest.iterdir()) == []
    log = movescu(
        dest_node,
        "DEST",
        "QueryRetrieveLevel=IMAGE",
        "PatientID=PA",
        f"StudyInstanceUID={STUDY}",
        f"SeriesInstanceUID={STUDY}.1",
        f"SOPInstanceUID={STUDY}.1.2",
        root="-P",
    )
    assert "Final Move Response (Success)" in log
    assert sorted(received(dest_node.dest)) == [f"{STUDY}.1.2"]


def test_partial_failure_lists_failed_instances(dest_node):
    # lose one stored file behind the node's back: that sub-operation fails, the rest go through
    db = Database(dest_node.database_url, migrate=False)
    with db.session() as s:
        path = s.query(Instance.path).filter(Instance.sop_instance_uid == f"{STUDY}.1.2").scalar()
    db.dispose()
    (dest_node.data / path).unlink()
    ae = AE(ae_title="MOVER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", dest_node.port, ae_title=dest_node.ae_title)
    q = Dataset()
    q.QueryRetrieveLevel, q.StudyInstanceUID = "STUDY", STUDY
    responses = list(assoc.send_c_move(q, "DEST", StudyRootQueryRetrieveInformationModelMove))
    assoc.release()
    final, ident = responses[-1]
    assert final.Status == 0xB000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (4, 1)
    assert ident.FailedSOPInstanceUIDList == f"{STUDY}.1.2"
    pending = [r for r, _ in responses[:-1]]
    assert [r.NumberOfRemainingSuboperations for r in pending] == [4, 3, 2, 1, 0]
    assert sorted(received(dest_node.dest)) == sorted(f"{STUDY}.{s}" for s in ("1.1", "1.3", "2.1", "2.2"))


@pytest.mark.slow
def test_cancel_move(node_factory, storescp, tmp_path):
    port, out = storescp()
    n = node_factory(extra_args=["--peer", f"DEST=127.0.0.1:{port}"])
    load(n, series_of("PC", "C^D", "1.2.3.9", "1.2.3.9.1", 150), tmp_path / "many")
    ae = AE(ae_title="MOVER")
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", n.port, ae_title=n.ae_title)
    q = Dataset()
    q.QueryRetrieveLevel, q.PatientID = "PATIENT", "PC"
    cx = assoc.accepted_contexts[0].context_id
    responses = []
    for status, ident in assoc.send_c_move(q, "DEST", PatientRootQueryRetrieveInformationModelMove, msg_id=9):
        responses.append((status, ident))
        if len(responses) == 3:
            assoc.send_c_cancel(9, cx)
    assoc.release()
    final, _ = responses[-1]
    assert final.Status == 0xFE00
    assert final.NumberOfRemainingSuboperations > 0
    assert final.NumberOfCompletedSuboperations + final.NumberOfRemainingSuboperations == 150
    assert 3 <= len(list(out.iterdir())) < 150


def test_getscu_same_association(dest_node, tmp_path):
    out = tmp_path / "get"
    out.mkdir()
    res = run(
        [
            need("getscu"),
            "-v",
            "-S",
            "-aec",
            dest_node.ae_title,
            "-od",
            str(out),
            "127.0.0.1",
            str(dest_node.port),
            "-k",
            "QueryRetrieveLevel=SERIES",
            "-k",
            f"StudyInstanceUID={STUDY}",
            "-k",
            f"SeriesInstanceUID={STUDY}.2",
        ],
        timeout=60,
    )
    log = res.stdout + res.stderr
    assert "Number of Completed Suboperations : 2" in log and "Number of Failed Suboperations    : 0" in log
    got = received(out)
    assert sorted(got) == [f"{STUDY}.2.1", f"{STUDY}.2.2"]
    assert all(
        np.array_equal(ds.pixel_array, np.arange(64).reshape(8, 8) + 100 * int(uid[-1]))
        for uid, ds in got.items()
    )


def test_get_concatenation_parts(node, tmp_path):
    """Series-level retrieve returns every part of a concatenation; instance level exactly one part."""
    parts = [
        ct(
            "PK",
            "K^K",
            "1.2.5",
            "1.2.5.1",
            i,
            ConcatenationUID="1.2.5.7",
            InConcatenationNumber=i,
            InConcatenationTotalNumber=3,
            ConcatenationFrameOffsetNumber=i - 1,
        )
        for i in (1, 2, 3)
    ]
    load(node, parts, tmp_path / "parts")

    def get(level: str, **keys) -> list[str]:
        got: list[str] = []

        def on_store(event):
            got.append(event.dataset.SOPInstanceUID)
            return 0x0000

        ae = AE(ae_title="GETTER")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
        assoc = ae.associate(
            "127.0.0.1",
            node.port,
            ae_title=node.ae_title,
            ext_neg=[build_role(CTImageStorage, scp_role=True)],
            evt_handlers=[(evt.EVT_C_STORE, on_store)],
        )
        q = Dataset()
        q.QueryRetrieveLevel = level
        for k, v in keys.items():
            setattr(q, k, v)
        statuses = [int(s.Status) for s, _ in assoc.send_c_get(q, StudyRootQueryRetrieveInformationModelGet)]
        assoc.release()
        assert statuses[-1] == 0x0000, ([hex(s) for s in statuses], got, node.output()[-3000:])
        return got

    assert get("SERIES", StudyInstanceUID="1.2.5", SeriesInstanceUID="1.2.5.1") == [
        "1.2.5.1.1",
        "1.2.5.1.2",
        "1.2.5.1.3",
    ]
    assert get(
        "IMAGE", StudyInstanceUID="1.2.5", SeriesInstanceUID="1.2.5.1", SOPInstanceUID="1.2.5.1.2"
    ) == ["1.2.5.1.2"]


def test_sub_operation_fails_when_no_acceptable_syntax(node_factory, storescp, tmp_path):
    """A destination restricted (AE table) to JPEG baseline, which perfnode cannot encode, gets nothing:
    every sub-operation fails, and the log names the syntaxes."""
    port, out = storescp("+xa")
    cfg = tmp_path / "perfnode.toml"
    cfg.write_text(
        f'[peers.JLSONLY]\nhost = "127.0.0.1"\nport = {port}\n'
        'transfer_syntaxes = ["1.2.840.10008.1.2.4.50"]\n'
    )
    n = node_factory(extra_args=["--config", str(cfg)])
    load(n, series_of("PJ", "J^J", "1.2.9.1", "1.2.9.1.1", 2), tmp_path / "in")
    log = movescu(n, "JLSONLY", "QueryRetrieveLevel=STUDY", "StudyInstanceUID=1.2.9.1")
    assert "Final Move Response (Refused: OutOfResourcesSubOperations)" in log, log  # 0xA702: all failed
    assert list(out.iterdir()) == []
    assert n.logged("sub-operation will fail: stored as Explicit VR Little Endian; the peer accepted nothing")
