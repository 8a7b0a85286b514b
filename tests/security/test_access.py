"""Who may do what, tried from the outside with DCMTK: an AE title is not enough (the AE table binds it
to where it calls from), unknown AEs may store but neither query nor retrieve unless the site allows it,
each peer's permissions are enforced, and each refusal leaves a security alert in the audit trail."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.nodes import need, run
from tests.security.audit_log import audit_events
from tests.serve_helpers import mr_object

STUDY = "1.2.826.0.1.3680043.8.498.99.1"


def config(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "perfnode.toml"
    path.write_text(text)
    return ["--config", str(path)]


def store_one(port: int, tmp_path: Path, calling: str = "CT1") -> Path:
    f = mr_object(tmp_path / "in" / "one.dcm", study=STUDY)
    res = run([need("storescu"), "-aet", calling, "-aec", "PERFNODE", "127.0.0.1", str(port), str(f)])
    assert res.returncode == 0, res.stderr
    return f


def getscu(port: int, out: Path, calling: str) -> tuple[list[Path], str]:
    out.mkdir(parents=True, exist_ok=True)
    res = run([need("getscu"), "-v", "-S", "-aet", calling, "-aec", "PERFNODE", "-od", str(out),
               "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}", "127.0.0.1", str(port)])
    return sorted(out.iterdir()), res.stdout + res.stderr


def findscu(port: int, calling: str) -> tuple[int, str]:
    res = run([need("findscu"), "-v", "-S", "-aet", calling, "-aec", "PERFNODE",
               "-k", "QueryRetrieveLevel=STUDY",
               "-k", "StudyInstanceUID", "127.0.0.1", str(port)])
    out = res.stdout + res.stderr
    return out.count("(Pending)"), out


def echo(port: int, calling: str) -> bool:
    return run([need("echoscu"), "-aet", calling, "-aec", "PERFNODE", "127.0.0.1", str(port)]).returncode == 0


@pytest.fixture
def closed_node(node_factory):
    """A node with the default access rules (unknown AEs may only store)."""
    return lambda extra=(): node_factory(extra_args=list(extra), open_access=False)


def test_anonymous_get_and_find_are_refused_by_default(closed_node, tmp_path):
    node = closed_node()
    store_one(node.port, tmp_path, calling="MODALITY")  # an unknown AE may still store
    got, out = getscu(node.port, tmp_path / "got", calling="ANON")
    assert got == [] and "0x124" in out.lower(), out
    pending, out = findscu(node.port, calling="ANON")
    assert pending == 0 and "0x124" in out.lower(), out
    assert echo(node.port, "ANON")  # C-ECHO stays open
    alerts = [e for e in audit_events(node.data) if e.event == "Security Alert"]
    assert any("ANON" in e.description and "retrieve" in e.description for e in alerts), alerts
    assert any("ANON" in e.description and "query" in e.description for e in alerts), alerts


def test_the_site_can_let_unknown_aes_query_and_retrieve(closed_node, tmp_path):
    node = closed_node(config(tmp_path, '[access]\nunknown = ["store", "query", "retrieve"]\n'))
    store_one(node.port, tmp_path, calling="MODALITY")
    got, out = getscu(node.port, tmp_path / "got", calling="ANON")
    assert len(got) == 1, out
    assert findscu(node.port, calling="ANON")[0] == 1


def test_a_known_ae_title_from_another_host_is_rejected(closed_node, tmp_path):
    node = closed_node(config(tmp_path, '[peers.VIEWER]\nhost = "192.0.2.10"\nport = 104\n'))
    store_one(node.port, tmp_path, calling="MODALITY")
    assert not echo(node.port, "VIEWER")  # A-ASSOCIATE-RJ: the AE table binds VIEWER to 192.0.2.10
    got, _ = getscu(node.port, tmp_path / "got", calling="VIEWER")
    assert got == []
    assert node.logged("VIEWER")
    alerts = [e for e in audit_events(node.data) if e.event == "Security Alert"]
    assert any("VIEWER" in e.description and "192.0.2.10" in e.description for e in alerts), alerts


def test_hosts_list_and_network_admit_the_peer(closed_node, tmp_path):
    node = closed_node(config(tmp_path, '[peers.VIEWER]\nhost = "192.0.2.10"\nport = 104\n'
                                        'hosts = ["192.0.2.10", "127.0.0.0/8"]\n'))
    store_one(node.port, tmp_path, calling="MODALITY")
    got, out = getscu(node.port, tmp_path / "got", calling="VIEWER")
    assert len(got) == 1, out


def test_per_peer_permissions(closed_node, tmp_path):
    node = closed_node(config(tmp_path, '[peers.CT1]\nhost = "127.0.0.1"\nport = 104\nallow = ["store"]\n'
                                        '[peers.VIEWER]\nhost = "127.0.0.1"\nport = 104\n'
                                        'allow = ["query", "retrieve"]\n'))
    store_one(node.port, tmp_path, calling="CT1")
    got, out = getscu(node.port, tmp_path / "got-ct", calling="CT1")
    assert got == [] and "0x124" in out.lower(), out
    got, out = getscu(node.port, tmp_path / "got-viewer", calling="VIEWER")
    assert len(got) == 1, out
    f = mr_object(tmp_path / "in2" / "two.dcm", study=STUDY)
    res = run([need("storescu"), "-aet", "VIEWER", "-aec", "PERFNODE", "127.0.0.1", str(node.port), str(f)])
    assert res.returncode != 0 or "0124" in (res.stdout + res.stderr).replace("0x", "")


def test_require_known_peers_rejects_unknown_associations(closed_node, tmp_path):
    node = closed_node(["--require-known-peers", "--peer", "CT1=127.0.0.1:104"])
    assert echo(node.port, "CT1")
    assert not echo(node.port, "STRANGER")
