"""Storage Commitment Push Model SCP: the durable queue, the checks, and the reports over the network."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel

from perfnode.archive import commitment as cm
from perfnode.archive.db import Database
from perfnode.archive.models import Base, CommitmentRequest, Instance, Patient, Series, Study
from perfnode.archive.storage import Storage
from perfnode.clock import utcnow
from tests.nodes import free_port
from tests.test_query_data import load, series_of

WELL_KNOWN = "1.2.840.10008.1.20.1.1"


@pytest.mark.filterwarnings("ignore:.*expression-based index")  # SQLite cannot reflect lower(...)
def test_migration_matches_models(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite'}")
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    db.dispose()
    mine = [d for d in diffs if "commitment" in repr(d)]
    assert mine == []
    assert {"commitment_requests", "commitment_items"} <= set(Base.metadata.tables)


def _index_file(db: Database, root: Path, uid: str, cls: str = CTImageStorage) -> Path:
    rel = f"objects/{uid}.dcm"
    (root / "objects").mkdir(parents=True, exist_ok=True)
    data = f"pretend DICOM {uid}".encode()
    (root / rel).write_bytes(data)
    with db.session() as s:
        st = s.query(Study).filter_by(study_instance_uid="1.7").one_or_none()
        se = s.query(Series).filter_by(series_instance_uid="1.7.1").one_or_none()
        if se is None:
            st = Study(patient=Patient(patient_id="C"), study_instance_uid="1.7")
            se = Series(study=st, series_instance_uid="1.7.1")
        s.add(
            Instance(
                series=se,
                sop_instance_uid=uid,
                sop_class_uid=cls,
                transfer_syntax_uid="1.2.840.10008.1.2.1",
                path=rel,
                size_bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                received_at=datetime(2024, 1, 1, tzinfo=UTC),
            )
        )
    return root / rel


def test_evaluate_checks_index_class_file_and_checksum(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'i.sqlite'}")
    storage = Storage(tmp_path)
    _index_file(db, tmp_path, "1.7.1.1")
    _index_file(db, tmp_path, "1.7.1.2")
    _index_file(db, tmp_path, "1.7.1.3").write_bytes(b"changed behind our back")
    _index_file(db, tmp_path, "1.7.1.4").unlink()
    refs = [
        (CTImageStorage, "1.7.1.1"),
        (MRImageStorage, "1.7.1.2"),
        (CTImageStorage, "1.7.1.3"),
        (CTImageStorage, "1.7.1.4"),
        (CTImageStorage, "1.7.1.99"),
    ]
    rid = cm.record_request(db, "1.8.1", "MOD", "127.0.0.1", refs)
    assert cm.due(db) == [(rid, False)]
    cm.evaluate(db, storage, rid)
    rep = cm.report(db, rid)
    assert rep.event_type == 2
    assert rep.successes == [(CTImageStorage, "1.7.1.1")]
    assert rep.failures == [
        (MRImageStorage, "1.7.1.2", 0x0119),
        (CTImageStorage, "1.7.1.3", 0x0110),
        (CTImageStorage, "1.7.1.4", 0x0110),
        (CTImageStorage, "1.7.1.99", 0x0112),
    ]
    with pytest.raises(cm.DuplicateTransaction, match=r"\(0008,1195\) TransactionUID"):
        cm.record_request(db, "1.8.1", "MOD", "", refs)
    db.dispose()


def test_backoff_and_delivery_state(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'b.sqlite'}")
    rid = cm.record_request(db, "1.8.2", "MOD", "", [(CTImageStorage, "1.1")])
    delays = [cm.mark_failed(db, rid, "down", base_s=1.0, max_s=5.0) for _ in range(5)]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert cm.due(db) == []  # next attempt is in the future
    assert cm.due(db, utcnow() + timedelta(seconds=10)) == [(rid, False)]
    cm.mark_delivered(db, rid)
    with db.session() as s:
        req = s.get(CommitmentRequest, rid)
        assert (req.state, req.attempts, req.last_error) == ("delivered", 6, "")
    assert cm.pending_count(db) == 0
    db.dispose()


class Requester:
    """A modality: sends N-ACTION as SCU, and listens for the N-EVENT-REPORT (as SCU, role-selected)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reports: list[tuple[int, Dataset]] = []
        self.got = threading.Event()
        self.server = None

    def listen(self) -> None:
        ae = AE(ae_title="MODALITY")
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)

        def on_report(event):
            self.reports.append((event.event_type, event.event_information))
            self.got.set()
            return 0x0000, None

        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)]
        )

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()

    def request(
        self,
        node,
        refs: list[tuple[str, str]],
        transaction_uid: str | None = None,
        ae_title: str = "MODALITY",
    ) -> tuple[int, str]:
        ae = AE(ae_title=ae_title)
        ae.add_requested_context(StorageCommitmentPushModel)
        assoc = ae.associate("127.0.0.1", node.port, ae_title=node.ae_title)
        assert assoc.is_established
        ds = Dataset()
        if transaction_uid != "":
            ds.TransactionUID = transaction_uid or generate_uid()
        items = []
        for cls, inst in refs:
            it = Dataset()
            it.ReferencedSOPClassUID, it.ReferencedSOPInstanceUID = cls, inst
            items.append(it)
        ds.ReferencedSOPSequence = items
        status, _ = assoc.send_n_action(ds, 1, StorageCommitmentPushModel, WELL_KNOWN)
        assoc.release()
        return int(status.Status), str(status.get("ErrorComment", ""))

    def wait(self, n: int = 1, timeout: float = 30) -> list[tuple[int, Dataset]]:
        deadline = time.monotonic() + timeout
        while len(self.reports) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.reports


@pytest.fixture
def requester():
    r = Requester(free_port())
    yield r
    r.close()


@pytest.fixture
def cm_node(node_factory, requester, tmp_path):
    cfg = tmp_path / "perfnode.toml"
    cfg.write_text(
        f'[peers.MODALITY]\nhost = "127.0.0.1"\nport = {requester.port}\n\n'
        "[commitment]\nretry_base_s = 0.2\nretry_max_s = 0.5\npoll_s = 0.1\n"
    )
    n = node_factory(extra_args=["--config", str(cfg)])
    load(n, series_of("PS", "S^S", "1.2.6", "1.2.6.1", 3), tmp_path / "in")
    return n


STORED = [(CTImageStorage, f"1.2.6.1.{i}") for i in (1, 2, 3)]


def test_commitment_mixed_success_and_failure(cm_node, requester):
    requester.listen()
    uid = generate_uid()
    status, _ = requester.request(
        cm_node, STORED + [(CTImageStorage, "1.2.6.1.99"), (MRImageStorage, "1.2.6.1.1")], uid
    )
    assert status == 0x0000
    [(event_type, info)] = requester.wait()
    assert event_type == 2 and info.TransactionUID == uid
    assert sorted(it.ReferencedSOPInstanceUID for it in info.ReferencedSOPSequence) == [i for _, i in STORED]
    assert info.RetrieveAETitle == cm_node.ae_title
    failed = {
        (it.ReferencedSOPClassUID, it.ReferencedSOPInstanceUID): it.FailureReason
        for it in info.FailedSOPSequence
    }
    assert failed == {(CTImageStorage, "1.2.6.1.99"): 0x0112, (MRImageStorage, "1.2.6.1.1"): 0x0119}


def test_commitment_all_success_and_tampered_file(cm_node, requester):
    requester.listen()
    assert requester.request(cm_node, STORED)[0] == 0x0000
    [(event_type, info)] = requester.wait()
    assert event_type == 1 and "FailedSOPSequence" not in info and len(info.ReferencedSOPSequence) == 3
    # a stored file that no longer matches its checksum is never reported as committed
    victim = next((cm_node.data / "objects").rglob("1.2.6.1.2.dcm"))
    victim.write_bytes(victim.read_bytes()[:-4] + b"\0\0\0\0")
    assert requester.request(cm_node, STORED)[0] == 0x0000
    reports = requester.wait(2)
    event_type, info = reports[1]
    assert event_type == 2
    assert [(it.ReferencedSOPInstanceUID, it.FailureReason) for it in info.FailedSOPSequence] == [
        ("1.2.6.1.2", 0x0110)
    ]


def test_report_survives_a_restart(cm_node, requester):
    # nobody listens at the requester yet: the report cannot be delivered
    uid = generate_uid()
    assert requester.request(cm_node, STORED, uid)[0] == 0x0000
    time.sleep(1.0)
    assert cm_node.logged("not delivered")
    cm_node.restart()
    requester.listen()
    [(event_type, info)] = requester.wait()
    assert (event_type, info.TransactionUID) == (1, uid)
    db = Database(cm_node.database_url, migrate=False)
    deadline = time.monotonic() + 10
    while cm.pending_count(db) and time.monotonic() < deadline:
        time.sleep(0.1)
    with db.session() as s:
        req = s.query(CommitmentRequest).filter_by(transaction_uid=uid).one()
        assert req.state == "delivered" and req.attempts >= 2
    db.dispose()


def test_bad_requests_are_refused_naming_the_attribute(cm_node, requester):
    status, comment = requester.request(cm_node, STORED, transaction_uid="")
    assert status == 0x0120 and "(0008,1195) TransactionUID" in comment
    status, comment = requester.request(cm_node, STORED, ae_title="STRANGER")
    assert status == 0x0110 and "not in the AE table" in comment


def test_report_on_the_same_association(node_factory, tmp_path, capsys):
    """``same_association = true``: the report comes back on the N-ACTION's association (no listener)."""
    from perfnode.cli import main

    cfg = tmp_path / "perfnode.toml"
    cfg.write_text(
        f'[peers.ASKER]\nhost = "127.0.0.1"\nport = {free_port()}\n\n[commitment]\nsame_association = true\n'
    )
    n = node_factory(extra_args=["--config", str(cfg)])
    files = load(n, series_of("PT", "T^T", "1.2.8", "1.2.8.1", 2), tmp_path / "in")
    capsys.readouterr()
    code = main(
        ["commit", f"PERFNODE@127.0.0.1:{n.port}", *map(str, files), "--ae-title", "ASKER", "--timeout", "20"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "2 committed, 0 failed" in out, out
    assert n.logged("delivered on the same association")


def test_reports_to_requests_this_node_sent(node, tmp_path):
    """N-EVENT-REPORT on a new association (the caller as SCP by role selection): matched by Transaction
    UID to a request in ``sent_commitments`` and recorded per instance; unknown or missing UIDs: 0x0115."""
    from pynetdicom import build_role

    from perfnode.archive import sent_commitments as sent

    db = Database(node.database_url, migrate=False)
    uid = generate_uid()
    refs = [(CTImageStorage, "1.9.1"), (CTImageStorage, "1.9.2"), (CTImageStorage, "1.9.3")]
    sent.record(db, uid, "PACS", refs)

    def report(transaction_uid: str | None, committed, failed, event_type: int = 2) -> tuple[int, str]:
        ae = AE(ae_title="PACS")
        ae.add_requested_context(StorageCommitmentPushModel)
        role = build_role(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        assoc = ae.associate("127.0.0.1", node.port, ae_title=node.ae_title, ext_neg=[role])
        assert assoc.is_established and assoc.accepted_contexts[0].as_scp
        ds = Dataset()
        if transaction_uid is not None:
            ds.TransactionUID = transaction_uid
        ds.ReferencedSOPSequence = [Dataset() for _ in committed]
        for it, inst in zip(ds.ReferencedSOPSequence, committed, strict=True):
            it.ReferencedSOPClassUID, it.ReferencedSOPInstanceUID = CTImageStorage, inst
        if failed:
            ds.FailedSOPSequence = [Dataset() for _ in failed]
            for it, (inst, reason) in zip(ds.FailedSOPSequence, failed, strict=True):
                it.ReferencedSOPClassUID, it.ReferencedSOPInstanceUID, it.FailureReason = (
                    CTImageStorage, inst, reason)
        status, _ = assoc.send_n_event_report(ds, event_type, StorageCommitmentPushModel, WELL_KNOWN)
        assoc.release()
        return int(status.Status), str(status.get("ErrorComment", ""))

    assert report(uid, ["1.9.1"], [("1.9.2", 0x0112)]) == (0x0000, "")
    out = sent.outcome(db, uid)
    assert out is not None
    assert (out.state, out.event_type, out.reporter_ae, out.via) == ("failed", 2, "PACS", "new")
    assert out.committed == ["1.9.1"]
    assert out.failed == [("1.9.2", 0x0112), ("1.9.3", sent.NOT_IN_REPORT)]  # not mentioned: failed
    status, comment = report(generate_uid(), ["1.9.1"], [])
    assert status == 0x0115 and "(0008,1195) TransactionUID" in comment
    status, comment = report(None, ["1.9.1"], [])
    assert status == 0x0115 and "(0008,1195) TransactionUID" in comment
    assert report(uid, ["1.9.1", "1.9.2", "1.9.3"], [], event_type=1) == (0x0000, "")  # a later report wins
    out = sent.outcome(db, uid)
    assert out is not None and (out.state, out.failed) == ("committed", [])
    db.dispose()


def test_scu_takes_the_report_on_the_same_association_and_records_it(tmp_path):
    """A PACS that answers on the N-ACTION's own association (pynetdicom here; perfnode with
    ``same_association = true``): ``commit`` takes it there and records it as the node would."""
    from perfnode.archive.facade import Archive
    from perfnode.config import Peer, Settings
    from perfnode.net.qr_client import commit

    def on_action(event):
        info = event.action_information

        def report() -> None:
            time.sleep(0.2)  # after the N-ACTION-RSP
            ds = Dataset()
            ds.TransactionUID = info.TransactionUID
            ds.ReferencedSOPSequence = info.ReferencedSOPSequence
            event.assoc.send_n_event_report(ds, 1, StorageCommitmentPushModel, WELL_KNOWN)

        threading.Thread(target=report, daemon=True).start()
        return 0x0000, None

    pacs = AE(ae_title="PACS")
    pacs.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    port = free_port()
    server = pacs.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_N_ACTION, on_action)])
    archive = Archive.open(tmp_path / "data", f"sqlite:///{tmp_path / 'index.sqlite'}")
    try:
        refs = [(CTImageStorage, "1.9.7.1"), (CTImageStorage, "1.9.7.2")]
        res = commit(Peer("PACS", "127.0.0.1", port), Settings(), refs, timeout=20, archive=archive)
        assert (res.action_status, res.event_type, sorted(res.committed)) == (0, 1, ["1.9.7.1", "1.9.7.2"])
        out = archive.sent_commitments.outcome(res.transaction_uid)
        assert out is not None
        assert (out.state, out.via, out.reporter_ae) == ("committed", "same", "PACS")
    finally:
        archive.close()
        server.shutdown()
