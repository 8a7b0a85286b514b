"""Ingest speed and memory: perfnode vs DCMTK storescp (and Orthanc when installed), one run, loopback.

Two workloads, both sent by a default DCMTK ``storescu`` (one association):

* 500 small (≈32 KB) MR objects — dominated by per-object latency (delayed ACKs, fsync, index);
* one ≥ 50 MB Enhanced MR object (128×128 × 20 slices × 80 phases, per-frame functional groups).

For each receiver it prints wall time, objects/s, peak RSS growth of the receiving process, and
the ratio to storescp, and the CPU seconds the receiving process spent (user + system, children
included: unlike wall time, hardly moved by other load on a shared machine). perfnode is also run
with several maximum PDU sizes (``--pdu-sweep``) to choose the default, and with ``--baseline REF``
as of an earlier commit too (a detached worktree), to measure what a change cost.
``--write`` puts the figures into benchmarks/README.md.

    .venv/bin/python benchmarks/ingest.py [--small 500] [--phases 80] [--pdu-sweep] [--baseline REF] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "benchmarks" / "README.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"port {port}")


def _base(ds: Dataset, sop_class: str, study: str, series: str) -> None:
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.PatientID = "Bench^Ingest", "BENCH1"
    ds.StudyDate, ds.StudyTime, ds.Modality = "20260101", "120000", "MR"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0


def _save(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def make_small(folder: Path, n: int) -> list[Path]:
    """``n`` MR Image Storage objects of 128×128 uint16 (≈32 KB each), with their Type 1 attributes
    (as a scanner sends them: the node's validation finds nothing to record)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    files = []
    for i in range(n):
        ds = Dataset()
        _base(ds, "1.2.840.10008.5.1.4.1.1.4", study, series)
        ds.InstanceNumber = i + 1
        ds.Rows = ds.Columns = 128
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
        ds.ScanningSequence, ds.SequenceVariant = "EP", "NONE"
        ds.FrameOfReferenceUID = frame_of_reference
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, 5.0 * i], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1.8, 1.8]
        ds.PixelData = rng.integers(0, 4096, (128, 128), dtype=np.uint16).tobytes()
        files.append(folder / f"{i:04d}.dcm")
        _save(ds, files[-1])
    return files


def make_enhanced(path: Path, slices: int = 20, phases: int = 80, size: int = 128) -> Path:
    """An Enhanced MR Image Storage object with per-frame functional groups (≥ 50 MB)."""
    frames = slices * phases
    ds = Dataset()
    _base(ds, "1.2.840.10008.5.1.4.1.1.4.1", generate_uid(), generate_uid())
    ds.ImageType = ["ORIGINAL", "PRIMARY", "PERFUSION", "NONE"]
    ds.Rows = ds.Columns = size
    ds.NumberOfFrames = frames
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing, pm.SliceThickness = [1.8, 1.8], 5.0
    shared.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for f in range(frames):
        item, fc, pp = Dataset(), Dataset(), Dataset()
        t, z = divmod(f, slices)
        fc.TemporalPositionIndex, fc.InStackPositionNumber = t + 1, z + 1
        fc.FrameAcquisitionDateTime = f"20260101120000.{t:06d}"
        item.FrameContentSequence = Sequence([fc])
        pp.ImagePositionPatient = [0.0, 0.0, 5.0 * z]
        item.PlanePositionSequence = Sequence([pp])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.random.default_rng(2).integers(0, 4096, (frames, size, size), dtype=np.uint16).tobytes()
    _save(ds, path)
    return path


class RssPeak:
    """Samples a process's RSS every 10 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.base = self._rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _rss(self) -> int:
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs)
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._rss())

    def stop(self) -> float:
        self._stop.set()
        self._t.join()
        return (self.peak - self.base) / 2**20


@dataclass
class Receiver:
    name: str
    cmd: list[str]
    port: int
    workdir: Path
    called: str = "ANY-SCP"
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = None

    def start(self) -> Receiver:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir.parent / f"{self.workdir.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                     env=self.env)
        wait_port(self.port, self.proc)
        time.sleep(0.5)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def perfnode(work: Path, max_pdu: int | None = None, source: tuple[str, Path] | None = None) -> Receiver:
    """perfnode as in this tree, or (``source`` = (ref, tree)) as in an earlier commit's tree."""
    port = free_port()
    data = work / f"perfnode-{max_pdu or 'default'}{'-' + source[0] if source else ''}"
    cmd = [sys.executable, "-m", "perfnode.cli", "serve", "--no-web", "--port", str(port),
           "--data", str(data)]
    if max_pdu:
        cmd += ["--max-pdu", str(max_pdu)]
    name = "perfnode" + (f" (max PDU {max_pdu // 1024} KB)" if max_pdu else "")
    env = None
    if source:
        name += f" @{source[0]}"
        env = {**os.environ, "PYTHONPATH": str(source[1])}
    return Receiver(name, cmd, port, data, called="PERFNODE", env=env)


def baseline_tree(work: Path, ref: str) -> Path:
    """A detached worktree of ``ref`` in the benchmark's folder (removed with it)."""
    tree = work / f"src-{ref}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), ref], check=True)
    return tree


def storescp(work: Path) -> Receiver:
    port = free_port()
    data = work / "storescp"
    return Receiver("DCMTK storescp", ["storescp", "-od", str(data), str(port)], port, data)


def orthanc(work: Path) -> Receiver | None:
    exe = shutil.which("Orthanc")
    if not exe:
        return None
    port = free_port()
    data = work / "orthanc"
    data.mkdir(parents=True, exist_ok=True)
    cfg = data / "orthanc.json"
    cfg.write_text(json.dumps({
        "Name": "bench", "StorageDirectory": str(data / "db"), "IndexDirectory": str(data / "db"),
        "DicomAet": "ORTHANC", "DicomPort": port, "HttpPort": free_port(), "RemoteAccessAllowed": False,
        "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True, "Plugins": [],
        "HttpServerEnabled": True, "StorageCompression": False}))
    return Receiver("Orthanc", [exe, str(cfg)], port, data, called="ORTHANC")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children so far."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def send(r: Receiver, files: list[Path] | Path) -> tuple[float, float, float]:
    """Send with a default storescu; return (seconds, peak RSS growth MB, CPU seconds of the receiver)."""
    args = [str(files)] if isinstance(files, Path) else ["+sd", str(files[0].parent)]
    rss = RssPeak(r.proc.pid)
    cpu0 = cpu_seconds(r.proc.pid)
    t0 = time.perf_counter()
    res = subprocess.run(["storescu", "-aec", r.called, "127.0.0.1", str(r.port), *args],
                         capture_output=True, text=True)
    dt = time.perf_counter() - t0
    cpu = cpu_seconds(r.proc.pid) - cpu0
    growth = rss.stop()
    if res.returncode != 0:
        raise RuntimeError(f"storescu → {r.name} failed: {res.stderr[-500:]}")
    return dt, growth, cpu


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and p.suffix in {".dcm", ""} and
               not p.name.startswith(("index", "orthanc")))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=500)
    ap.add_argument("--phases", type=int, default=80, help="time points of the Enhanced MR (20 slices)")
    ap.add_argument("--pdu-sweep", action="store_true", help="also run perfnode with several max PDU sizes")
    ap.add_argument("--no-orthanc", action="store_true")
    ap.add_argument("--repeat", type=int, default=2, help="rounds (best time and worst RSS are kept)")
    ap.add_argument("--baseline", metavar="REF", help="also run perfnode as of this git commit")
    ap.add_argument("--write", action="store_true", help="write the figures into benchmarks/README.md")
    args = ap.parse_args()
    for tool in ("storescu", "storescp"):
        if not shutil.which(tool):
            print(f"{tool} not installed (./run.sh setup installs DCMTK)")
            return 1
    work = Path(tempfile.mkdtemp(prefix="perfnode-bench-", dir=os.environ.get("BENCH_TMP")))
    try:
        small = make_small(work / "in-small", args.small)
        big = make_enhanced(work / "in-big" / "enhanced.dcm", phases=args.phases)
        big_mb = big.stat().st_size / 2**20
        receivers = [perfnode(work), storescp(work)]
        if not args.no_orthanc and (o := orthanc(work)):
            receivers.append(o)
        if args.baseline:
            receivers.append(perfnode(work, source=(args.baseline, baseline_tree(work, args.baseline))))
        if args.pdu_sweep:
            receivers += [perfnode(work, pdu) for pdu in (16_384, 65_536, 1_048_576, 4_194_304)]
        best: dict[str, tuple] = {}
        for round_ in range(args.repeat):  # round robin, so load changes hit every receiver alike
            for r in receivers:
                shutil.rmtree(r.workdir / "db" if r.name == "Orthanc" else r.workdir, ignore_errors=True)
                r.start()
                try:
                    t_small, rss_small, cpu_small = send(r, small)
                    t_big, rss_big, cpu_big = send(r, big)
                    if r.name.startswith("perfnode"):
                        stored = count_files(r.workdir / "objects")
                        assert stored == args.small + 1, f"perfnode stored {stored} files"
                finally:
                    r.stop()
                print(f"[{round_ + 1}] {r.name:28s} {args.small} small: {t_small:7.2f} s "
                      f"({args.small / t_small:6.1f}/s, RSS +{rss_small:5.1f} MB, CPU {cpu_small:5.2f} s)   "
                      f"{big_mb:.0f} MB Enhanced MR: {t_big:6.2f} s "
                      f"(RSS +{rss_big:5.1f} MB, CPU {cpu_big:5.2f} s)",
                      flush=True)
                now = (r.name, t_small, rss_small, t_big, rss_big, cpu_small, cpu_big)
                old = best.get(r.name, now)
                best[r.name] = (r.name, min(now[1], old[1]), max(now[2], old[2]), min(now[3], old[3]),
                                max(now[4], old[4]), min(now[5], old[5]), min(now[6], old[6]))
        results = list(best.values())
        print(f"\nbest of {args.repeat} (times, CPU) / worst of {args.repeat} (RSS growth):")
        for name, ts, rs, tb, rb, cs, cb in results:
            print(f"  {name:32s} small {ts:7.2f} s  CPU {cs:6.2f} s  RSS +{rs:5.1f} MB   "
                  f"big {tb:6.2f} s  CPU {cb:5.2f} s  RSS +{rb:5.1f} MB")
        ref = next(x for x in results if x[0] == "DCMTK storescp")
        print("\nratios vs storescp (small: storescp s / receiver s; big: receiver s / storescp s)")
        for name, ts, _, tb, _, _, _ in results:
            print(f"  {name:32s} small speed-up ×{ref[1] / ts:5.1f}   big time ratio {tb / ref[3]:5.2f}")
        if args.write:
            write_readme(results, ref, args.small, big_mb, args.repeat)
    finally:
        if args.baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(work / f"src-{args.baseline}")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def write_readme(results: list[tuple], ref: tuple, n_small: int, big_mb: float, repeat: int) -> None:
    load = os.getloadavg()[0]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    machine = f"{platform.machine()}, {psutil.cpu_count()} cores, {platform.system()} {platform.release()}"
    rows = [f"| {n} | {ts:.2f} | ×{ref[1] / ts:.1f} | {cs:.2f} | {rs:.0f} | {tb:.2f} | {tb / ref[3]:.2f} "
            f"| {cb:.2f} | {rb:.0f} |" for n, ts, rs, tb, rb, cs, cb in results]
    block = "\n".join([
        f"Run {when} UTC on {machine}, load average {load:.1f} at the end (shared machine), loopback, "
        f"default storescu; best time of {repeat} rounds, largest RSS growth.",
        "",
        f"| receiver | {n_small} × 32 KB s | speed-up vs storescp | CPU s | RSS growth MB "
        f"| {big_mb:.0f} MB Enhanced MR s | time / storescp | CPU s | RSS growth MB |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    text = README.read_text()
    start, end = "<!-- BEGIN ingest figures -->", "<!-- END ingest figures -->"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), f"{start}\n{block}\n{end}", text, flags=re.S)
        README.write_text(text)
        print(f"figures written to {README}")


if __name__ == "__main__":
    sys.exit(main())
