"""perfnode as a Q/R and storage-commitment SCU: ``perfnode find/move/get/commit`` against a second perfnode
instance and against DCMTK dcmqrscp."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from pydicom import dcmread

from perfnode.cli import main
from tests.nodes import free_port, need, run, wait_for_port
from tests.test_query_data import load, series_of, write

STUDY = "1.2.7.1"


@pytest.fixture
def perfnode(capsys):
    """Run the ``perfnode`` command line in this process (argv in, exit status and output out)."""

    def call(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(["perfnode", *args], code, out.out, out.err)

    return call


@pytest.fixture
def pacs_pair(node_factory, tmp_path):
    """``local`` (the perfnode that pulls) and ``pacs`` (a second perfnode holding a study)."""
    local = node_factory(name="local", ae_title="LOCALNODE")
    pacs = node_factory(
        name="pacs", ae_title="PACSNODE", extra_args=["--peer", f"LOCALNODE=127.0.0.1:{local.port}"]
    )
    files = load(pacs, series_of("PX", "Pérez^Ana", STUDY, f"{STUDY}.1", 3), tmp_path / "s1")
    files += load(pacs, series_of("PX", "Pérez^Ana", STUDY, f"{STUDY}.2", 2, modality="MR"), tmp_path / "s2")
    return local, pacs, files


@pytest.mark.slow
def test_find_move_get_against_a_second_perfnode(pacs_pair, tmp_path, perfnode):
    local, pacs, _ = pacs_pair
    target = f"PACSNODE@127.0.0.1:{pacs.port}"
    res = perfnode("find", target, "-k", "PatientName=pér*", "--json")
    assert res.returncode == 0, res.stderr
    [row] = json.loads(res.stdout)
    assert row["StudyInstanceUID"] == STUDY and row["PatientName"] == "Pérez^Ana"
    assert row["ModalitiesInStudy"] == ["CT", "MR"] and row["NumberOfStudyRelatedInstances"] == 5

    res = perfnode("find", target, "-l", "SERIES", "-k", f"StudyInstanceUID={STUDY}")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:3] == ["StudyInstanceUID", "SeriesNumber", "Modality"]
    assert "2 series matches at PACSNODE" in lines[-1] and len(lines) == 4

    # pull the MR series into the local node with C-MOVE, then see it there with find
    res = perfnode(
        "move",
        target,
        "--dest",
        "LOCALNODE",
        "-l",
        "SERIES",
        "-k",
        f"StudyInstanceUID={STUDY}",
        "-k",
        f"SeriesInstanceUID={STUDY}.2",
        "--json",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["completed"] == 2
    res = perfnode(
        "find",
        f"LOCALNODE@127.0.0.1:{local.port}",
        "-l",
        "IMAGE",
        "-k",
        f"StudyInstanceUID={STUDY}",
        "-k",
        f"SeriesInstanceUID={STUDY}.2",
        "--json",
    )
    assert sorted(r["SOPInstanceUID"] for r in json.loads(res.stdout)) == [f"{STUDY}.2.1", f"{STUDY}.2.2"]

    # unknown destination: a clear failure, exit status 1
    res = perfnode("move", target, "--dest", "NOBODY", "-k", f"StudyInstanceUID={STUDY}")
    assert res.returncode == 1 and "0xA801" in res.stdout and "move destination unknown" in res.stdout

    # C-GET the CT series into a folder
    out = tmp_path / "got"
    res = perfnode(
        "get",
        target,
        "-l",
        "SERIES",
        "-k",
        f"StudyInstanceUID={STUDY}",
        "-k",
        f"SeriesInstanceUID={STUDY}.1",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 completed, 0 failed" in res.stdout
    got = {dcmread(p).SOPInstanceUID: dcmread(p) for p in out.iterdir()}
    assert sorted(got) == [f"{STUDY}.1.{i}" for i in (1, 2, 3)]
    assert np.array_equal(got[f"{STUDY}.1.2"].pixel_array, np.arange(64).reshape(8, 8) + 200)


@pytest.mark.slow
def test_commit_against_a_second_perfnode(node_factory, tmp_path, perfnode):
    listen = free_port()
    pacs = node_factory(name="pacs", ae_title="PACSNODE", extra_args=["--peer", f"ASKER=127.0.0.1:{listen}"])
    files = load(pacs, series_of("PY", "Y^Y", "1.2.7.2", "1.2.7.2.1", 2), tmp_path / "sent")
    never_sent = write(series_of("PY", "Y^Y", "1.2.7.2", "1.2.7.2.9", 1), tmp_path / "unsent")
    res = perfnode(
        "commit",
        f"PACSNODE@127.0.0.1:{pacs.port}",
        *map(str, files),
        *map(str, never_sent),
        "--ae-title",
        "ASKER",
        "--listen-port",
        str(listen),
        "--timeout",
        "30",
        "--json",
    )
    out = json.loads(res.stdout)
    assert out["action_status"] == 0 and out["event_type"] == 2
    assert sorted(out["committed"]) == ["1.2.7.2.1.1", "1.2.7.2.1.2"]
    assert out["failed"] == [{"sop_instance_uid": "1.2.7.2.9.1", "failure_reason": 0x0112}]
    assert res.returncode == 1  # not everything committed
    res = perfnode(
        "commit",
        f"PACSNODE@127.0.0.1:{pacs.port}",
        *map(str, files),
        "--ae-title",
        "ASKER",
        "--listen-port",
        str(listen),
        "--timeout",
        "30",
    )
    assert res.returncode == 0 and "2 committed, 0 failed" in res.stdout


@pytest.fixture
def dcmqrscp(tmp_path):
    """DCMTK's Q/R SCP with an empty database; returns (port, storescp port, storescp folder)."""
    port, dest_port = free_port(), free_port()
    db = tmp_path / "qrdb"
    db.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    cfg = tmp_path / "dcmqrscp.cfg"
    cfg.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 65536\nMaxAssociations = 8\n"
        f"HostTable BEGIN\ndest = (DEST, 127.0.0.1, {dest_port})\nHostTable END\n"
        "VendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\nDCMQR {db} RW (200, 1024mb) ANY\nAETable END\n"
    )
    procs = [
        subprocess.Popen(
            [need("dcmqrscp"), "-c", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ),
        subprocess.Popen(
            [need("storescp"), "-aet", "DEST", "-od", str(dest), str(dest_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    wait_for_port(port, proc=procs[0])
    wait_for_port(dest_port, proc=procs[1])
    yield port, dest
    for p in procs:
        p.terminate()
        p.wait(10)


def test_find_move_get_against_dcmqrscp(dcmqrscp, tmp_path, perfnode):
    port, dest = dcmqrscp
    files = write(series_of("PQ", "Q^Q", "1.2.7.3", "1.2.7.3.1", 3), tmp_path / "in")
    run([need("storescu"), "-aec", "DCMQR", "127.0.0.1", str(port), *map(str, files)], check=True)
    target = f"DCMQR@127.0.0.1:{port}"
    res = perfnode("find", target, "-l", "STUDY", "-k", "PatientID=PQ", "-k", "StudyInstanceUID", "--json")
    assert res.returncode == 0, res.stderr
    assert [r["StudyInstanceUID"] for r in json.loads(res.stdout)] == ["1.2.7.3"]
    res = perfnode("move", target, "--dest", "DEST", "-l", "STUDY", "-k", "StudyInstanceUID=1.2.7.3")
    assert res.returncode == 0 and "3 completed" in res.stdout, res.stdout + res.stderr
    assert len(list(dest.iterdir())) == 3
    out = tmp_path / "got"
    res = perfnode(
        "get",
        target,
        "-l",
        "SERIES",
        "-k",
        "StudyInstanceUID=1.2.7.3",
        "-k",
        "SeriesInstanceUID=1.2.7.3.1",
        "--out",
        str(out),
        "--json",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"1.2.7.3.1.{i}.dcm" for i in (1, 2, 3)]
    res = perfnode("find", target, "-l", "STUDY", "-k", "StudyInstanceUID=1.2.3.4.5")
    assert res.returncode == 0 and "0 study matches" in res.stdout
    # a path that does not exist is refused cleanly: one line naming it, nothing sent, no traceback
    missing = tmp_path / "nothing"
    res = perfnode("send", str(missing), str(files[0]), "--to", target, "--no-progress")
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.strip().splitlines() == [f"perfnode send: {missing}: no such file or folder"]
    assert "Traceback" not in res.stdout + res.stderr and "sent" not in res.stdout
