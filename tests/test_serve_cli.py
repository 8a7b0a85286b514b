"""``perfnode serve/echo/send`` from the command line, known peers, shutdown, after-store hooks."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading
from pathlib import Path

import pytest
from pydicom import dcmread

from perfnode.config import load_settings
from perfnode.node import start_node, wait_for_signal
from tests.nodes import free_port, need, run
from tests.serve_helpers import count_instances, instances, mr_object

PERFNODE = [sys.executable, "-m", "perfnode.cli"]


def test_echo_command_and_dcmtk_echoscu(node):
    res = run([*PERFNODE, "echo", f"PERFNODE@127.0.0.1:{node.port}"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"C-ECHO PERFNODE@127.0.0.1:{node.port}: status 0x0000"
    assert run([need("echoscu"), "-aec", "PERFNODE", "127.0.0.1", str(node.port)]).returncode == 0
    closed = run([*PERFNODE, "echo", f"PERFNODE@127.0.0.1:{free_port()}"])
    assert closed.returncode == 1 and "no association with PERFNODE@127.0.0.1" in closed.stderr


def test_send_folder_recursively_by_ae_table_name(node, tmp_path):
    src = tmp_path / "in"
    files = [mr_object(src / f"sub{i % 2}" / "deep" / f"{i}.dcm", rows=16, cols=16, seed=i) for i in range(5)]
    (src / "notes.txt").write_text("not DICOM")
    res = run([*PERFNODE, "send", str(src), "--to", "PERFNODE", "--peer", f"PERFNODE=127.0.0.1:{node.port}",
               "--ae-title", "SENDER", "--no-progress"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "sent 5, failed 0, skipped 1 (not DICOM)"
    rows = instances(node.database_url)
    assert sorted(rows) == sorted(dcmread(f).SOPInstanceUID for f in files)
    assert {r.calling_ae for r in rows.values()} == {"SENDER"}


def test_send_reports_refused_objects(node, tmp_path):
    bad = mr_object(tmp_path / "bad.dcm")
    ds = dcmread(bad)
    ds.StudyInstanceUID = "../evil"
    ds.save_as(bad)
    res = run([*PERFNODE, "send", str(bad), "--to", f"PERFNODE@127.0.0.1:{node.port}", "--no-progress"])
    assert res.returncode == 1
    assert "0xC000 (0020,000D) StudyInstanceUID: not a valid UID" in res.stderr
    assert count_instances(node.database_url) == 0


def test_require_known_peers(node_factory):
    node = node_factory(["--require-known-peers", "--peer", "MODALITY=127.0.0.1:104"])
    echoscu = need("echoscu")
    assert run([echoscu, "-aet", "MODALITY", "-aec", "PERFNODE", "127.0.0.1", str(node.port)]).returncode == 0
    res = run([echoscu, "-aet", "STRANGER", "-aec", "PERFNODE", "127.0.0.1", str(node.port)])
    assert res.returncode != 0 and "Association Rejected" in res.stdout + res.stderr
    assert node.logged("association rejected from STRANGER@127.0.0.1")
    # a wrong Called AE Title: A-ASSOCIATE-RJ rejected-permanent, service-user, reason 7 (PS3.8 9.3.4),
    # and a log line naming calling AE, address and called AE
    res = run([echoscu, "-aet", "MODALITY", "-aec", "WRONG", "127.0.0.1", str(node.port)])
    assert res.returncode != 0 and "Called AE Title Not Recognized" in res.stdout + res.stderr
    assert "Rejected Permanent, Source: Service User" in res.stdout + res.stderr
    assert node.logged("association rejected from MODALITY@127.0.0.1:")
    assert node.logged("to WRONG: called AE title 'WRONG' not recognised: this node is 'PERFNODE'")


def test_config_file_sets_ae_title_port_and_peers(node_factory, tmp_path):
    port = free_port()
    cfg = tmp_path / "perfnode.toml"
    cfg.write_text(f'[node]\nae_title = "PERFTEST"\nport = {port}\nrequire_known_peers = true\n\n'
                   f'[peers.ECHOER]\nhost = "127.0.0.1"\nport = 104\n\n'
                   '[access]\naccept_any_called_ae = true\n')
    node = node_factory(["--config", str(cfg)], ae_title="PERFTEST")
    assert node.port != port  # the command-line --port wins over the file
    echoscu = need("echoscu")
    assert run([echoscu, "-aet", "ECHOER", "-aec", "PERFTEST", "127.0.0.1", str(node.port)]).returncode == 0
    assert run([echoscu, "-aet", "OTHER", "-aec", "PERFTEST", "127.0.0.1", str(node.port)]).returncode != 0
    # [access] accept_any_called_ae: another Called AE Title is accepted too (DCMTK's default ANY-SCP)
    assert run([echoscu, "-aet", "ECHOER", "127.0.0.1", str(node.port)]).returncode == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_shutdown_on_signal(node, sig):
    assert node.stop(sig) == 0, node.output()[-20000:]
    assert f"shutting down ({signal.Signals(sig).name})" in node.output()
    assert "stopped PERFNODE" in node.output()


def test_sigabrt_logs_every_threads_stack(node):
    """What a supervisor (or the test harness) uses on a node that will not stop: the stacks."""
    assert node.logged("listening on port")  # every worker thread has started
    node.proc.send_signal(signal.SIGABRT)
    assert node.proc.wait(20) == -signal.SIGABRT
    out = node.output()
    assert "Fatal Python error: Aborted" in out
    assert "in run_node" in out  # the main thread's stack
    assert out.count("Thread 0x") >= 3  # the server, the pipeline, the commitment worker…


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_is_never_lost(sig):
    """A signal that lands while the node is still starting (before anything waits) still stops
    it, and the previous handlers come back afterwards."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    wait = wait_for_signal()
    assert signal.getsignal(sig) is not before[sig]
    os.kill(os.getpid(), sig)  # delivered now, long before wait() is called
    assert wait() == sig
    assert {s: signal.getsignal(s) for s in before} == before


def test_after_store_listeners_run_off_the_network_thread(tmp_path):
    settings = load_settings(port=0, host="127.0.0.1", data=str(tmp_path / "data"))
    server = start_node(settings)
    calls: list[tuple[int, Path, str, str]] = []
    done = threading.Event()

    def broken_hook(stored):
        raise RuntimeError("hook failure must not break the node")

    def hook(stored):
        calls.append((stored.instance_id, stored.path, threading.current_thread().name,
                      stored.header.SOPInstanceUID))
        if len(calls) == 2:
            done.set()

    server.archive.on_stored(broken_hook)
    server.archive.on_stored(hook)
    try:
        files = [mr_object(tmp_path / f"{i}.dcm", rows=16, cols=16, seed=i) for i in range(2)]
        res = run([need("storescu"), "-aec", "PERFNODE", "127.0.0.1", str(server.port), *map(str, files)])
        assert res.returncode == 0, res.stderr
        assert done.wait(20)
        rows = instances(settings.database_url)
        by_id = {r.id: r for r in rows.values()}
        for instance_id, path, thread, sop_instance_uid in calls:
            assert thread.startswith("after-store")
            assert sop_instance_uid == by_id[instance_id].sop_instance_uid  # the header read at store time
            assert path == (settings.data / by_id[instance_id].path).resolve()
            assert hashlib.sha256(path.read_bytes()).hexdigest() == by_id[instance_id].sha256
        # identical re-send is a no-op: no new hook call
        assert run([need("storescu"), "-aec", "PERFNODE", "127.0.0.1", str(server.port),
                    str(files[0])]).returncode == 0
    finally:
        server.stop()
    assert len(calls) == 2
