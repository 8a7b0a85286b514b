"""The node's audit trail, from the outside: DCMTK peers do things, and DATA/audit holds one RFC 5424 line
per DICOM audit message, each valid against the DICOM audit schema (PS3.15 A.5.1), naming the
participants (AE title and address) and the study; optionally sent to a syslog collector over TLS."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

from tests.audit.schema import validate
from tests.nodes import need, run
from tests.security.audit_log import audit_events, audit_lines
from tests.serve_helpers import mr_object
from tests.tls_certs import make_pki

STUDY = "1.2.826.0.1.3680043.8.498.55.1"


def test_node_activity_is_audited(node_factory, tmp_path, audit_schema):
    node = node_factory()
    files = [mr_object(tmp_path / "in" / f"{i}.dcm", study=STUDY, series=STUDY + ".1", seed=i)
             for i in range(3)]
    res = run([need("storescu"), "-aet", "CT1", "-aec", "PERFNODE", "127.0.0.1", str(node.port),
               *map(str, files)])
    assert res.returncode == 0, res.stderr
    res = run([need("findscu"), "-S", "-aet", "VIEWER", "-aec", "PERFNODE", "-k", "QueryRetrieveLevel=STUDY",
               "-k", "PatientID=PN-001", "-k", "StudyInstanceUID", "127.0.0.1", str(node.port)])
    assert res.returncode == 0, res.stderr
    out = tmp_path / "got"
    out.mkdir()
    res = run([need("getscu"), "-S", "-aet", "VIEWER", "-aec", "PERFNODE", "-od", str(out), "-k",
               "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}", "127.0.0.1", str(node.port)])
    assert res.returncode == 0 and len(list(out.iterdir())) == 3, res.stderr
    audit_events(node.data, wait_for="DICOM Instances Transferred")
    node.stop()

    events = audit_events(node.data)
    for line in audit_lines(node.data):
        validate(audit_schema, line[line.index("<AuditMessage"):].encode("utf-8"))
    kinds = [(e.event, tuple(e.types), e.action) for e in events]
    assert kinds[0] == ("Application Activity", ("Application Start",), "E")
    assert kinds[-1] == ("Application Activity", ("Application Stop",), "E")

    logins = [e for e in events if e.event == "User Authentication" and e.types == ["Login"]]
    requestors = {p["UserID"] for e in logins for p in e.participants if p["UserIsRequestor"] == "true"}
    assert requestors >= {"CT1", "VIEWER"}
    assert all(p.get("NetworkAccessPointID") == "127.0.0.1" for e in logins for p in e.participants
               if p["UserIsRequestor"] == "true")

    stored = [e for e in events if e.event == "DICOM Instances Transferred" and e.action == "C"]
    assert len(stored) == 1 and stored[0].object_ids() == [STUDY, "PN-001"]
    sop = stored[0].objects[0].find("ParticipantObjectDescription/SOPClass")
    assert sop.get("UID") == "1.2.840.10008.5.1.4.1.1.4" and sop.get("NumberOfInstances") == "3"
    source = next(p for p in stored[0].participants if p["UserIsRequestor"] == "true")
    assert source["UserID"] == "CT1" and source["NetworkAccessPointID"] == "127.0.0.1"

    queries = [e for e in events if e.event == "Query"]
    assert len(queries) == 1 and b"PN-001" in queries[0].query_bytes()  # the query keys are in it
    assert queries[0].object_ids() == ["1.2.840.10008.5.1.4.1.2.2.1"]  # Study Root FIND

    sent = [e for e in events if e.event == "DICOM Instances Transferred" and e.action == "R"]
    assert len(sent) == 1 and sent[0].object_ids()[0] == STUDY
    assert sent[0].objects[0].find("ParticipantObjectDescription/SOPClass").get("NumberOfInstances") == "3"
    dest = next(p for p in sent[0].participants if p.get("AlternativeUserID") == "AETITLES=VIEWER")
    assert dest["UserIsRequestor"] == "true"


class Collector:
    """A syslog collector over TLS (RFC 5425 octet-counted frames), in a thread."""

    def __init__(self, pki) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(pki.server.cert), str(pki.server.key))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.ctx = ctx
        self.messages: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                buf = b""
                while chunk := tls.recv(65536):
                    buf += chunk
                    while b" " in buf:
                        length, rest = buf.split(b" ", 1)
                        n = int(length)
                        if len(rest) < n:
                            break
                        self.messages.append(rest[:n].decode("utf-8"))
                        buf = rest[n:]

    def close(self) -> None:
        self.sock.close()


def test_audit_messages_go_to_a_syslog_collector_over_tls(node_factory, tmp_path, audit_schema):
    import time

    pki = make_pki(tmp_path / "pki")
    collector = Collector(pki)
    cfg = tmp_path / "audit.toml"
    cfg.write_text(f'[audit]\nsyslog_host = "127.0.0.1"\nsyslog_port = {collector.port}\n'
                   f'syslog_ca = "{pki.ca}"\n')
    try:
        node = node_factory(extra_args=["--config", str(cfg)])
        assert run([need("echoscu"), "-aec", "PERFNODE", "127.0.0.1", str(node.port)]).returncode == 0
        node.stop()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("Application Stop" in m for m in collector.messages):
            time.sleep(0.1)
    finally:
        collector.close()
    assert collector.messages and "Application Start" in collector.messages[0]
    assert any("Application Stop" in m for m in collector.messages)
    for m in collector.messages:
        assert m.startswith("<85>1 ") and " perfnode " in m and " IHE+RFC-3881 " in m
        validate(audit_schema, m[m.index("<AuditMessage"):].encode("utf-8"))
    assert len(collector.messages) == len(audit_lines(Path(node.data)))  # the same messages as the file
