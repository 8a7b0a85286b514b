"""DICOMweb speed and memory, measured against a real peer in one run (prints figures and ratios).

1. QIDO-RS on a big index: the 1,000,000-instance index of ``benchmarks/query_retrieve.py`` (same
   builder), served by ``perfnode serve``; median HTTP latency (keep-alive client) of a study search
   by Patient ID, by Patient Name wildcard, the series of a study, the instances of a series, and a
   relational instance search by SOP Instance UID. Goal: median < 50 ms each.
2. WADO-RS retrieval of one series (default 2,000 CT images of 512 × 512, ≈ 1 GB), stored by C-STORE
   in both: ``perfnode serve`` vs Orthanc with its DICOMweb plugin (Debian ``orthanc-dicomweb``),
   the same ``curl`` fetching ``/studies/{study}/series/{series}`` as ``multipart/related;
   type="application/dicom"``. Throughput (MB/s, best of N), ratio perfnode/Orthanc (goal ≥ 1.0),
   and each server's RSS growth while streaming (goal for perfnode: flat, i.e. far below the series
   size).

    .venv/bin/python benchmarks/dicomweb.py [--instances 1000000] [--series-images 2000] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.query_retrieve import fill, write_study  # noqa: E402
from perfnode.archive.db import Database  # noqa: E402
from tests.nodes import free_port, wait_for_port  # noqa: E402

ORTHANC_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
ACCEPT_DICOM = 'multipart/related; type="application/dicom"'


class RssPeak:
    """Peak RSS growth of a process (and its children) over a block, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _rss(self) -> int:
        try:
            return sum(p.memory_info().rss for p in [self.proc, *self.proc.children(recursive=True)])
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._rss())

    def stop(self) -> float:
        self._stop.set()
        self._t.join()
        return (self.peak - self.base) / 2**20


def start_perfnode(data: Path, log: Path) -> tuple[subprocess.Popen, int, int]:
    port, web = free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "perfnode.cli",
        "serve",
        "--port",
        str(port),
        "--data",
        str(data),
        "--web-port",
        str(web),
    ]
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    wait_for_port(port, timeout=300, proc=proc)
    wait_for_port(web, timeout=60, proc=proc)
    return proc, port, web


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- 1. QIDO-RS at a million instances -----------------------------------------------------------


def qido_bench(tmp: Path, n_instances: int, n_studies: int, repeat: int = 30) -> dict[str, float]:
    data = tmp / "qido"
    data.mkdir()
    db = Database(f"sqlite:///{(data / 'index.sqlite').resolve()}")
    secs = fill(db, n_instances, n_studies)
    db.dispose()
    print(f"  index: {n_instances:,} instances / {n_studies:,} studies inserted in {secs:.0f} s")
    proc, _, web = start_perfnode(data, tmp / "qido.log")
    base = f"http://127.0.0.1:{web}/dicom-web"
    n_patients = n_studies // 2
    per_series = max(1, n_instances // (n_studies * 4))
    cases = {
        "studies?PatientID=": lambda r: f"{base}/studies?PatientID=PID{(r * 7919) % n_patients:07d}",
        "studies?PatientName=wildcard": lambda r: (
            f"{base}/studies?PatientName=name{(r * 31) % (n_patients // 10):05d}*"
        ),
        "studies/{uid}/series": lambda r: f"{base}/studies/1.2.9.{(r * 104729) % n_studies}/series",
        "studies/{uid}/series/{uid}/instances": lambda r: (
            f"{base}/studies/1.2.9.{(r * 104729) % n_studies}"
            f"/series/1.2.9.{(r * 104729) % n_studies}.1/instances"
        ),
        "instances?SOPInstanceUID= (relational)": lambda r: (
            f"{base}/instances?SOPInstanceUID=1.2.9.{(r * 7) % n_studies}.2.{r % per_series}"
        ),
    }
    out = {}
    try:
        with requests.Session() as s:
            for name, url in cases.items():
                times, n = [], 0
                s.get(url(0), timeout=60).raise_for_status()  # warm
                for r in range(repeat):
                    t0 = time.perf_counter()
                    resp = s.get(url(r + 1), headers={"Accept": "application/dicom+json"}, timeout=60)
                    resp.raise_for_status()
                    n = len(resp.json())
                    times.append(1000 * (time.perf_counter() - t0))
                ms = statistics.median(times)
                out[name] = ms
                print(
                    f"  QIDO-RS {name:40s} median {ms:7.2f} ms ({n} matches)  goal < 50 ms: "
                    f"{'met' if ms < 50 else 'NOT met'}"
                )
    finally:
        stop(proc)
    return out


# -- 2. WADO-RS series retrieval vs Orthanc's DICOMweb plugin --------------------------------------


def storescu(port: int, aec: str, folder: Path) -> None:
    res = subprocess.run(
        ["storescu", "-aec", aec, "+sd", "+r", "127.0.0.1", str(port), str(folder)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if res.returncode != 0:
        raise RuntimeError(f"storescu to {aec} failed: {res.stderr[-500:]}")


def start_orthanc(tmp: Path) -> tuple[subprocess.Popen, int, int] | None:
    exe = shutil.which("Orthanc")
    if not exe or not ORTHANC_PLUGIN.is_file():
        print("  Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)")
        return None
    port, http = free_port(), free_port()
    data = tmp / "orthanc"
    data.mkdir()
    cfg = data / "orthanc.json"
    cfg.write_text(
        json.dumps(
            {
                "Name": "bench",
                "StorageDirectory": str(data / "db"),
                "IndexDirectory": str(data / "db"),
                "DicomAet": "ORTHANC",
                "DicomPort": port,
                "HttpPort": http,
                "RemoteAccessAllowed": False,
                "AuthenticationEnabled": False,
                "DicomCheckCalledAet": False,
                "DicomAlwaysAllowStore": True,
                "StorageCompression": False,
                "Plugins": [str(ORTHANC_PLUGIN)],
                "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            }
        )
    )
    proc = subprocess.Popen(
        [exe, str(cfg)], stdout=(tmp / "orthanc.log").open("ab"), stderr=subprocess.STDOUT, cwd=data
    )
    wait_for_port(port, timeout=120, proc=proc)
    wait_for_port(http, timeout=60, proc=proc)
    return proc, port, http


def fetch(url: str, pid: int) -> tuple[float, int, float]:
    """curl the series once: (seconds, bytes, peak RSS growth of the server in MB)."""
    rss = RssPeak(pid)
    res = subprocess.run(
        [
            "curl",
            "-s",
            "-f",
            "-o",
            "/dev/null",
            "-H",
            f"Accept: {ACCEPT_DICOM}",
            "-w",
            "%{size_download} %{time_total}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    grown = rss.stop()
    if res.returncode != 0:
        raise RuntimeError(f"curl {url} failed ({res.returncode}): {res.stderr}")
    size, secs = res.stdout.split()
    return float(secs), int(size), grown


def wado_bench(tmp: Path, n_images: int, size: int, repeat: int) -> dict[str, float]:
    folder = tmp / "series"
    t0 = time.perf_counter()
    files = write_study(folder, n_images, size)
    total = sum(p.stat().st_size for p in files)
    print(
        f"  series: {n_images} CT images of {size}×{size}, {total / 2**20:.0f} MB, written in "
        f"{time.perf_counter() - t0:.0f} s"
    )
    results: dict[str, tuple[float, float]] = {}
    servers = []
    proc, port, web = start_perfnode(tmp / "perfnode", tmp / "perfnode.log")
    servers.append(("perfnode", proc, port, "PERFNODE", f"http://127.0.0.1:{web}/dicom-web"))
    orthanc = start_orthanc(tmp)
    if orthanc:
        servers.append(
            (
                "Orthanc DICOMweb",
                orthanc[0],
                orthanc[1],
                "ORTHANC",
                f"http://127.0.0.1:{orthanc[2]}/dicom-web",
            )
        )
    try:
        for name, proc, port, aec, base in servers:
            storescu(port, aec, folder)
            url = f"{base}/studies/1.2.8.1/series/1.2.8.1.1"
            runs = [fetch(url, proc.pid) for _ in range(repeat)]
            best = min(r[0] for r in runs)
            nbytes = runs[0][1]
            rss = max(r[2] for r in runs)
            mbps = nbytes / 2**20 / best
            results[name] = (mbps, rss)
            print(
                f"  WADO-RS series {name:18s} {nbytes / 2**20:7.0f} MB in {best:6.2f} s (best of {repeat}): "
                f"{mbps:7.1f} MB/s; RSS growth while streaming {rss:6.1f} MB"
            )
    finally:
        for _, proc, *_ in servers:
            stop(proc)
    if "Orthanc DICOMweb" in results:
        ratio = results["perfnode"][0] / results["Orthanc DICOMweb"][0]
        print(
            f"  ratio perfnode / Orthanc throughput: {ratio:.2f} "
            f"(goal ≥ 1.0: {'met' if ratio >= 1 else 'NOT met'})"
        )
    flat = results["perfnode"][1] < 0.1 * total / 2**20
    print(
        f"  perfnode RSS while streaming {total / 2**20:.0f} MB: +{results['perfnode'][1]:.1f} MB "
        f"(flat: {'yes' if flat else 'NO'})"
    )
    return {k: v[0] for k, v in results.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=1_000_000)
    ap.add_argument("--studies", type=int, default=10_000)
    ap.add_argument("--series-images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-qido", action="store_true")
    ap.add_argument("--skip-wado", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="perfnode-dicomweb-") as t:
        tmp = Path(t)
        if not args.skip_qido:
            print(f"1. QIDO-RS on {args.instances:,} instances (SQLite)")
            qido_bench(tmp, args.instances, args.studies)
        if not args.skip_wado:
            print("2. WADO-RS series retrieval, perfnode vs Orthanc's DICOMweb plugin")
            wado_bench(tmp, args.series_images, args.size, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
