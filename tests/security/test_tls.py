"""DICOM TLS (PS3.15 B.9/B.10, BCP 195) with DCMTK peers, certificates made in the test.

The node: DCMTK echoscu/storescu/findscu ``+tls`` on the TLS port; plain TCP refused there while the
plain port still serves; a client certificate required with ``--tls-require-client-cert`` (a stranger's,
signed by another CA, refused). perfnode as SCU: ``tls = true`` peers reached over TLS by echo, send,
find, and the pipeline's delivery of maps (DCMTK ``storescp +tls`` as the peer)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.nodes import free_port, need, run, wait_for_port
from tests.security.audit_log import audit_events
from tests.serve_helpers import mr_object
from tests.tls_certs import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_client(pki: Pki, pair=None) -> list[str]:
    pair = pair or pki.client
    return ["+tls", str(pair.key), str(pair.cert), "+cf", str(pki.ca)]


def tls_node(node_factory, pki: Pki, *extra: str):
    port = free_port()
    node = node_factory(extra_args=["--tls-port", str(port), "--tls-cert", str(pki.server.cert),
                                    "--tls-key", str(pki.server.key), "--tls-ca", str(pki.ca), *extra])
    wait_for_port(port, timeout=60)
    node.tls_port = port
    return node


def test_dcmtk_echo_store_find_over_tls(node_factory, pki, tmp_path):
    node = tls_node(node_factory, pki)
    tls = tls_client(pki)
    res = run([need("echoscu"), *tls, "-aec", "PERFNODE", "127.0.0.1", str(node.tls_port)])
    assert res.returncode == 0, res.stderr
    f = mr_object(tmp_path / "one.dcm", study="1.2.826.0.1.3680043.8.498.77.1")
    res = run([need("storescu"), *tls, "-aec", "PERFNODE", "127.0.0.1", str(node.tls_port), str(f)])
    assert res.returncode == 0, res.stderr
    res = run([need("findscu"), "-v", *tls, "-S", "-aec", "PERFNODE", "-k", "QueryRetrieveLevel=STUDY",
               "-k", "StudyInstanceUID=1.2.826.0.1.3680043.8.498.77.1", "127.0.0.1", str(node.tls_port)])
    assert res.returncode == 0 and (res.stdout + res.stderr).count("(Pending)") == 1, res.stdout + res.stderr
    assert node.logged("TLS")  # the association's log line says it was over TLS


def test_plain_tcp_is_refused_on_the_tls_port(node_factory, pki):
    node = tls_node(node_factory, pki)
    res = run([need("echoscu"), "-aec", "PERFNODE", "127.0.0.1", str(node.tls_port)], timeout=120)
    assert res.returncode != 0
    # and the node keeps serving, plain on its port and TLS on the other
    assert run([need("echoscu"), "-aec", "PERFNODE", "127.0.0.1", str(node.port)]).returncode == 0
    res = run([need("echoscu"), *tls_client(pki), "-aec", "PERFNODE", "127.0.0.1", str(node.tls_port)])
    assert res.returncode == 0, res.stderr
    alerts = [e for e in audit_events(node.data, wait_for="Security Alert") if e.event == "Security Alert"]
    assert any("TLS" in e.description for e in alerts), [e.description for e in alerts]


def test_client_certificate_required(node_factory, pki):
    node = tls_node(node_factory, pki, "--tls-require-client-cert")
    ok = run([need("echoscu"), *tls_client(pki), "-aec", "PERFNODE", "127.0.0.1", str(node.tls_port)])
    assert ok.returncode == 0, ok.stderr
    stranger = run([need("echoscu"), *tls_client(pki, pki.stranger), "-aec", "PERFNODE", "127.0.0.1",
                    str(node.tls_port)])
    assert stranger.returncode != 0
    anonymous = run([need("echoscu"), "+tla", "+cf", str(pki.ca), "-aec", "PERFNODE", "127.0.0.1",
                     str(node.tls_port)])
    assert anonymous.returncode != 0


@pytest.fixture
def tls_storescp(pki, tmp_path):
    """DCMTK storescp with TLS (and a client certificate required) as a peer of the node."""
    procs = []

    def start(aet: str = "TLSPACS") -> tuple[int, Path]:
        port, out = free_port(), tmp_path / f"received-{aet}"
        out.mkdir()
        procs.append(subprocess.Popen([need("storescp"), "+tls", str(pki.server.key), str(pki.server.cert),
                                       "+cf", str(pki.ca), "-aet", aet, "-od", str(out), str(port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for_port(port)
        return port, out

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def tls_config(tmp_path: Path, pki: Pki, port: int, extra: str = "") -> Path:
    path = tmp_path / "tls.toml"
    path.write_text(f'[tls]\nca = "{pki.ca}"\ncert = "{pki.client.cert}"\nkey = "{pki.client.key}"\n\n'
                    f'[peers.TLSPACS]\nhost = "127.0.0.1"\nport = {port}\ntls = true\n{extra}')
    return path


def perfnode(*args: str) -> subprocess.CompletedProcess:
    import sys
    return run([sys.executable, "-m", "perfnode.cli", *args], timeout=300)


def test_perfnode_echo_and_send_to_a_tls_peer(pki, tls_storescp, tmp_path):
    port, received = tls_storescp()
    cfg = tls_config(tmp_path, pki, port)
    res = perfnode("echo", "TLSPACS", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    f = mr_object(tmp_path / "send" / "one.dcm")
    res = perfnode("send", str(f.parent), "--to", "TLSPACS", "--config", str(cfg), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert len(list(received.iterdir())) == 1
    # the same peer without tls = true: plain TCP to a TLS port fails, in one line
    plain = tmp_path / "plain.toml"
    plain.write_text(f'[peers.TLSPACS]\nhost = "127.0.0.1"\nport = {port}\n')
    res = perfnode("echo", "TLSPACS", "--config", str(plain))
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_find_against_a_tls_node(node_factory, pki, tmp_path):
    node = tls_node(node_factory, pki)
    f = mr_object(tmp_path / "one.dcm", study="1.2.826.0.1.3680043.8.498.77.2")
    run([need("storescu"), "-aec", "PERFNODE", "127.0.0.1", str(node.port), str(f)])
    cfg = tmp_path / "find.toml"
    cfg.write_text(f'[tls]\nca = "{pki.ca}"\ncert = "{pki.client.cert}"\nkey = "{pki.client.key}"\n\n'
                   f'[peers.PERFNODE]\nhost = "127.0.0.1"\nport = {node.tls_port}\ntls = true\n')
    res = perfnode("find", "PERFNODE", "-k", "StudyInstanceUID=1.2.826.0.1.3680043.8.498.77.2", "--json",
                   "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "1.2.826.0.1.3680043.8.498.77.2" in res.stdout


@pytest.mark.slow
def test_pipeline_delivers_maps_over_tls(node_factory, pki, tls_storescp, tmp_path):
    port, received = tls_storescp()
    cfg = tls_config(tmp_path, pki, port, '\n[pipeline]\nstable_s = 2\ndestinations = ["TLSPACS"]\n')
    node = node_factory(extra_args=["--config", str(cfg)])
    series = tmp_path / "dsc"
    res = perfnode("phantom", "dsc", "--shape", "concat", "--out", str(series), "--snr", "100")
    assert res.returncode == 0, res.stderr
    res = run([need("storescu"), "-aec", "PERFNODE", "+sd", "+r", "+sp", "*.dcm", "127.0.0.1", str(node.port),
               str(series)])
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and len(list(received.iterdir())) < 4:
        time.sleep(1)
    assert len(list(received.iterdir())) >= 4, node.output()[-3000:]
    # the delivery is in the audit trail: instances transferred (R) from the node to TLSPACS
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        exports = [e for e in audit_events(node.data) if e.event == "DICOM Instances Transferred"
                   and e.action == "R" and any(p.get("AlternativeUserID") == "AETITLES=TLSPACS"
                                               for p in e.participants)]
        if exports:
            break
        time.sleep(0.5)
    assert exports, [e.event for e in audit_events(node.data)]


def test_c_move_to_a_tls_destination(node_factory, pki, tls_storescp, tmp_path):
    port, received = tls_storescp()
    cfg = tls_config(tmp_path, pki, port)
    node = node_factory(extra_args=["--config", str(cfg)])
    study = "1.2.826.0.1.3680043.8.498.77.3"
    f = mr_object(tmp_path / "one.dcm", study=study)
    assert run([need("storescu"), "-aec", "PERFNODE", "127.0.0.1", str(node.port), str(f)]).returncode == 0
    res = run([need("movescu"), "-S", "-aec", "PERFNODE", "-aem", "TLSPACS", "-k", "QueryRetrieveLevel=STUDY",
               "-k", f"StudyInstanceUID={study}", "127.0.0.1", str(node.port)])
    assert res.returncode == 0, res.stderr
    assert len(list(received.iterdir())) == 1  # the sub-association to TLSPACS was TLS
