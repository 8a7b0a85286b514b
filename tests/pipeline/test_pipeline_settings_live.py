"""The ``[pipeline]`` and ``[qc]`` settings in a running node, seen from the outside: where maps go
(``destinations``, ``destinations_by_ae``, ``return_to_sender``), what goes (``colour``), what is not
analysed (``[[pipeline.rules]]``), how many analyses run at once (``workers``), which QC rules apply
(``[qc] protocols``) — and a node killed with SIGKILL in the middle of an analysis (not of a delivery)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from perfnode.archive.db import Database
from perfnode.archive.models import Job
from perfnode.phantoms import Size, make
from tests.nodes import need, run
from tests.pipeline.test_pipeline_end_to_end import DSC_MAPS, StoreSCP, jobs_json, wait_for

pytestmark = pytest.mark.slow

PM = "1.2.840.10008.5.1.4.1.1.30"
COLOUR_SC = "1.2.840.10008.5.1.4.1.1.7.4"


def send_as(calling_ae: str, folder: Path, port: int) -> None:
    res = run([need("storescu"), "-aet", calling_ae, "-aec", "PERFNODE", "+sd", "+r", "+sp", "*.dcm",
               "127.0.0.1", str(port), str(folder)], timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def spawned_workers(pid: int) -> set[int]:
    """Analysis worker processes (multiprocessing ``spawn`` children) of the node."""
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                out.add(int(child))
    return out


def received(scp: StoreSCP) -> dict[str, list[str]]:
    """SOP Class UID → the Study Instance UIDs of what arrived (one entry per object)."""
    out: dict[str, list[str]] = {}
    for p in scp.files():
        ds = dcmread(p, stop_before_pixels=True)
        out.setdefault(str(ds.SOPClassUID), []).append(str(ds.StudyInstanceUID))
    return out


def input_jobs(node) -> list[dict]:
    """Jobs of the series sent to the node (not of its own archived outputs, which are skipped)."""
    return [j for j in jobs_json(node) if j["calling_ae"] != "PERFNODE"]


def node_state(node) -> str:
    """What a failed wait should show: the jobs and the end of the node's log."""
    return f"jobs: {jobs_json(node)}\nlog:\n{node.output()[-6000:]}"


@pytest.mark.timeout(1200)  # three analyses on a loaded 2-core machine
def test_routing_colour_rules_workers_and_site_protocols(tmp_path, node_factory):
    maps, viewer, modality = (StoreSCP(tmp_path / n, ae_title=n).start() for n in ("MAPS", "VIEWER", "MR3T"))
    site = tmp_path / "site"
    site.mkdir()
    (site / "dsc.toml").write_text('technique = "dsc"\n[[rule]]\nid = "site.te_never"\n'
                                   'fact = "echo_time_ms"\nmax = 1\nseverity = "error"\n'
                                   'source = "site rule: no TE passes"\n')
    cfg = tmp_path / "perfnode.toml"
    cfg.write_text("".join(f'[peers.{s.ae_title}]\nhost = "127.0.0.1"\nport = {s.port}\n\n'
                           for s in (maps, viewer, modality)) + f"""
[pipeline]
destinations = ["MAPS"]
return_to_sender = true
colour = true
workers = 2
stable_s = 1
retry_initial_s = 0.5

[pipeline.destinations_by_ae]
MR3T = ["VIEWER"]

[[pipeline.rules]]
calling_ae = "CT9*"
technique = "none"

[qc]
protocols = "{site}"
""")
    study_uid = {}
    for name, seed in (("mr3t", 21), ("ct9", 22), ("other", 23)):
        _, files = make("dsc", "single", tmp_path / name, seed=seed)
        study_uid[name] = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert len(set(study_uid.values())) == 3
    try:
        node = node_factory(["--config", str(cfg)])
        send_as("MR3T", tmp_path / "mr3t", node.port)
        send_as("CT9A", tmp_path / "ct9", node.port)
        send_as("OTHER", tmp_path / "other", node.port)
        most_workers = 0

        def finished() -> bool:
            nonlocal most_workers
            most_workers = max(most_workers, len(spawned_workers(node.proc.pid)))
            states = sorted(j["state"] for j in input_jobs(node))
            return states == ["done", "done", "skipped"]

        try:
            wait_for(finished, 900, "two analyses done and one skipped")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{node_state(node)}") from None
        time.sleep(1)  # nothing more should arrive
        got = {s.ae_title: received(s) for s in (maps, viewer, modality)}
    finally:
        for s in (maps, viewer, modality):
            s.stop()
    n = len(DSC_MAPS)
    # destinations_by_ae: MR3T's maps go to VIEWER (not MAPS); return_to_sender: and back to MR3T
    assert sorted(got["VIEWER"]) == sorted(got["MR3T"]) == sorted([COLOUR_SC, PM])
    for ae in ("VIEWER", "MR3T"):
        assert got[ae][PM] == [study_uid["mr3t"]] * n and got[ae][COLOUR_SC] == [study_uid["mr3t"]] * n
    # the default destinations for a caller not in the table; OTHER is not in the AE table: nothing back
    assert got["MAPS"] == {PM: [study_uid["other"]] * n, COLOUR_SC: [study_uid["other"]] * n}
    # the rule: CT9* is never analysed
    jobs = input_jobs(node)
    (skipped,) = [j for j in jobs if j["state"] == "skipped"]
    assert skipped["calling_ae"] == "CT9A" and skipped["analysis"] == "none"
    assert {j["calling_ae"]: j["destinations"] for j in jobs if j["state"] == "done"} == {
        "MR3T": ["VIEWER", "MR3T"], "OTHER": ["MAPS"]}
    # workers = 2: both analyses had a process of their own
    assert most_workers == 2
    # [qc] protocols: the site's rule was applied by the job
    (mr_job,) = [j for j in jobs if j["calling_ae"] == "MR3T"]
    qc = json.loads((node.data / mr_job["output_dir"] / "report" / "qc.json").read_text())
    site_findings = [f for f in qc["protocol"] if "[site.te_never]" in f["rule"]]
    assert len(site_findings) == 1 and site_findings[0]["severity"] == "error", qc["protocol"]


@pytest.mark.timeout(1200)
def test_kill_during_an_analysis_resumes_and_sends_once(tmp_path, node_factory):
    """SIGKILL while the worker process is fitting: its worker goes too, the job is re-run after the
    restart (attempts = 2), and each map reaches the destination exactly once."""
    make("dsc", "single", tmp_path / "phantom", seed=9, size=Size(nx=24, ny=24, nz=6, nt=40))
    scp = StoreSCP(tmp_path / "received").start()
    cfg = tmp_path / "perfnode.toml"
    cfg.write_text(f'[peers.MAPS]\nhost = "127.0.0.1"\nport = {scp.port}\n\n'
                   '[pipeline]\ndestinations = ["MAPS"]\nstable_s = 1\n')
    try:
        node = node_factory(["--config", str(cfg)])
        send_as("MR3T", tmp_path / "phantom", node.port)
        db = Database(node.database_url, migrate=False)
        try:
            def analysing() -> bool:
                with db.read() as s:
                    job = s.scalars(select(Job).where(Job.analysis == "dsc")).first()
                return job is not None and job.state == "running" and not job.output_series_uid \
                    and bool(spawned_workers(node.proc.pid))

            deadline = time.monotonic() + 120
            while not analysing():
                assert time.monotonic() < deadline, "the analysis never started"
                time.sleep(0.02)
            workers = spawned_workers(node.proc.pid)
            node.stop(signal.SIGKILL)  # in the middle of the fit: nothing archived, nothing sent
            with db.read() as s:
                job = s.scalars(select(Job)).one()
            assert job.state == "running" and not job.output_series_uid and job.attempts == 1
        finally:
            db.dispose()
        wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in workers), 30,
                 "the killed node's analysis worker to exit")
        assert scp.files() == []
        node.start()
        try:
            wait_for(lambda: [j["state"] for j in input_jobs(node)] == ["done"], 900, "the resumed job")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{node_state(node)}") from None
        time.sleep(1)
        uids = [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in scp.files()]
    finally:
        scp.stop()
    assert len(uids) == len(set(uids)) == len(DSC_MAPS)
    (job,) = input_jobs(node)
    assert job["attempts"] == 2 and job["state"] == "done"
    assert "resuming 1 job(s) interrupted by a previous stop" in node.output()
