"""Reliability, long form: perfnode and DCMTK ``storescp`` (and Orthanc) under the same attacks.

``.venv/bin/python benchmarks/reliability.py [--fuzz 10000] [--mutations 10000] [--kills 10] [--write]``
(``./run.sh bench reliability``). The short form of every attack runs in CI (``tests/reliability``).

* **PDU bomb**: a connection sends a 6-byte A-ASSOCIATE-RQ header declaring 0xFFFFFFFF bytes (and,
  inside an accepted association, a P-DATA-TF header declaring as much) and holds the socket:
  the receiver's RSS growth, and how long a C-ECHO from another host then takes.
* **Hostile sockets**: 16 half-sent A-ASSOCIATE-RQs held open, 16 junk-and-close connections, 200
  silent connections held open: how long until another host's C-ECHO succeeds.
* **PDU fuzz**: fuzzed conversations (``tests/reliability/fuzz.py``) with a C-ECHO probe from
  another address every 0.5 s: crashes (process gone, or a thread that died), the longest time the
  probe was not answered, whether the receiver answers once the attack stops.
* **Mutated datasets**: C-STOREs of objects broken as issue 17 found (truncated pixels, mislabelled
  transfer syntax, unterminated sequences, no Rows/Columns, broken fragments) and at random: how many
  were acknowledged (Success or warning), and how many of those the receiver stored corrupt (judged
  by DCMTK ``dcmdump`` and pydicom decoding the pixels).
* **kill -9** under 4 concurrent senders, then restart: acknowledged objects lost, and files left
  without an index row (perfnode; the peers keep no index).

Timeouts are the receivers' defaults except perfnode's ``--acse-timeout 10 --network-timeout 20``
and ``storescp --acse-timeout 10 --dimse-timeout 20`` (the same for both), so runs end in minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pynetdicom import AE, _config  # noqa: E402

from tests.nodes import free_port, wait_for_port  # noqa: E402
from tests.reliability.attacks import (  # noqa: E402
    Prober,
    associate_rq,
    connect,
    echo,
    peak_rss_mb,
    read_pdu,
    vitals,
)
from tests.reliability.fuzz import run_batch  # noqa: E402
from tests.reliability.mutate import TARGETED, conformant_mr, oracle, part10, random_mutation, with_sequence  # noqa: E402

ACSE_S, NETWORK_S = 10.0, 20.0
MR = "1.2.840.10008.5.1.4.1.1.4"
README = ROOT / "benchmarks" / "README.md"


@dataclass
class Receiver:
    name: str
    cmd: list[str]
    port: int
    work: Path
    called: str
    store: Path  # where received files land
    proc: subprocess.Popen | None = None
    log: Path | None = None
    results: dict = field(default_factory=dict)

    def start(self) -> Receiver:
        self.work.mkdir(parents=True, exist_ok=True)
        self.store.mkdir(parents=True, exist_ok=True)
        self.log = self.work.parent / f"{self.work.name}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.work)
        wait_for_port(self.port, 90, self.proc)
        ok = wait_echo(self)
        assert ok, f"{self.name} does not answer C-ECHO"
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""


def perfnode(work: Path) -> Receiver:
    port = free_port()
    data = work / "perfnode"
    cmd = [sys.executable, "-m", "perfnode.cli", "serve", "--port", str(port), "--data", str(data),
           "--acse-timeout", str(ACSE_S), "--network-timeout", str(NETWORK_S)]
    return Receiver("perfnode", cmd, port, data, "PERFNODE", data / "objects")


def storescp(work: Path) -> Receiver | None:
    exe = shutil.which("storescp", path="/usr/bin:/usr/local/bin")
    if not exe:
        return None
    port = free_port()
    data = work / "storescp"
    cmd = [exe, "--acse-timeout", str(int(ACSE_S)), "--dimse-timeout", str(int(NETWORK_S)),
           "-od", str(data / "in"), str(port)]
    return Receiver("DCMTK storescp", cmd, port, data, "STORESCP", data / "in")


def orthanc(work: Path) -> Receiver | None:
    exe = shutil.which("Orthanc")
    if not exe:
        return None
    port = free_port()
    data = work / "orthanc"
    data.mkdir(parents=True, exist_ok=True)
    cfg = data / "orthanc.json"
    cfg.write_text(json.dumps({
        "Name": "reliability", "StorageDirectory": str(data / "db"), "IndexDirectory": str(data / "db"),
        "DicomAet": "ORTHANC", "DicomPort": port, "HttpPort": free_port(), "RemoteAccessAllowed": False,
        "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True, "DicomAlwaysAllowEcho": True,
        "Plugins": [], "HttpServerEnabled": False, "StorageCompression": False,
        "DicomScpTimeout": int(NETWORK_S)}))
    return Receiver("Orthanc", [exe, str(cfg)], port, data, "ORTHANC", data / "db")


def wait_echo(r: Receiver, limit: float = 30.0, source: str = "127.0.0.2") -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if echo(r.port, timeout=5, source=source, called=r.called)[0]:
            return True
        time.sleep(0.2)
    return False


def echo_wait(r: Receiver, limit: float) -> float:
    """Seconds until a C-ECHO from another host (127.0.0.2) succeeds (``limit`` when it never did)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        ok, _, _ = echo(r.port, timeout=min(10.0, limit), source="127.0.0.2", called=r.called)
        if ok:
            return time.monotonic() - t0
        time.sleep(0.2)
    return limit


# -- attacks ----------------------------------------------------------------------------------------
def bomb(r: Receiver) -> dict:
    rss0 = vitals(r.proc.pid).rss_mb
    outside = connect(r.port)
    outside.sendall(b"\x01\x00\xff\xff\xff\xff")
    inside = connect(r.port)
    inside.sendall(associate_rq(called=r.called))
    answer = read_pdu(inside)
    if answer and answer[0] == 0x02:
        inside.sendall(b"\x04\x00\xff\xff\xff\xff" + bytes(4096))
    time.sleep(3)
    waited = echo_wait(r, 60)
    grown = vitals(r.proc.pid).rss_mb - rss0 if r.alive else float("nan")
    for s in (outside, inside):
        s.close()
    return {"bomb_rss_mb": grown, "bomb_echo_s": waited, "bomb_alive": r.alive}


def hostile(r: Receiver) -> dict:
    out = {}
    rq = associate_rq(called=r.called)
    half = [connect(r.port) for _ in range(16)]
    for s in half:
        s.sendall(rq[: len(rq) // 2])
    out["half_rq_echo_s"] = echo_wait(r, 90)
    for s in half:
        s.close()
    wait_echo(r, 90)
    for i in range(16):
        s = connect(r.port)
        s.sendall(bytes(random.Random(i).randrange(256) for _ in range(100)))
        s.close()
    time.sleep(0.5)
    out["junk_echo_s"] = echo_wait(r, 90)
    wait_echo(r, 90)
    silent = []
    for _ in range(200):
        with contextlib.suppress(OSError):
            silent.append(connect(r.port))
    out["silent_echo_s"] = echo_wait(r, 90)
    for s in silent:
        s.close()
    wait_echo(r, 120)
    return out


def fuzz(r: Receiver, cases: int) -> dict:
    threads0 = vitals(r.proc.pid).threads
    prober = Prober(r.port, source="127.0.0.2", interval=0.5, timeout=10, called=r.called)
    prober.start()
    result = run_batch(r.port, range(cases), workers=4)
    prober.stop()
    for s in result.held:
        s.close()
    back = echo_wait(r, ACSE_S + NETWORK_S + 60) if r.alive else float("nan")
    died = r.output().count(" died: ") + r.output().count("Exception in thread")
    return {"fuzz_cases": result.cases, "fuzz_s": result.seconds, "fuzz_alive": r.alive,
            "fuzz_thread_deaths": died, "fuzz_longest_outage_s": prober.longest_outage,
            "fuzz_probes_failed": prober.failures, "fuzz_probes_ok": prober.successes,
            "fuzz_back_echo_s": back, "fuzz_threads_before": threads0,
            "fuzz_threads_after": vitals(r.proc.pid).threads if r.alive else -1}


def _store_all(r: Receiver, files: list[Path]) -> dict[str, int]:
    """C-STORE each file as it is (pynetdicom, chunked); SOP Instance UID → status (-1: not sent)."""
    _config.STORE_SEND_CHUNKED_DATASET = True
    ae = AE(ae_title="MUTANT")
    for ts in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.5"):
        ae.add_requested_context(MR, ts)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    statuses: dict[str, int] = {}
    assoc = None
    for f in files:
        if assoc is None or not assoc.is_established:
            assoc = ae.associate("127.0.0.1", r.port, ae_title=r.called)
            if not assoc.is_established:
                statuses[f.stem] = -1
                assoc = None
                continue
        try:
            rsp = assoc.send_c_store(f)
            statuses[f.stem] = int(rsp.Status) if rsp and "Status" in rsp else -1
        except Exception:  # noqa: BLE001 - the file's meta no longer names a proposed context
            statuses[f.stem] = -1
    if assoc is not None and assoc.is_established:
        assoc.release()
    return statuses


def mutations(r: Receiver, n: int, work: Path) -> dict:
    rng = random.Random(17)
    folder = work / f"mutants-{r.name.split()[-1]}"
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(TARGETED)
    files = []
    for i in range(n):
        if i % 5 == 0:
            make, mutate, _ = TARGETED[names[(i // 5) % len(names)]]
            data = mutate(make())
        else:
            _, data = random_mutation(part10(with_sequence(conformant_mr(rows=16, columns=16, seed=i))), rng)
        f = folder / f"{i:05d}.dcm"
        f.write_bytes(data)
        files.append(f)
    t0 = time.monotonic()
    statuses = _store_all(r, files)
    seconds = time.monotonic() - t0
    acked = [k for k, s in statuses.items() if s == 0 or (s >= 0 and s & 0xF000 == 0xB000)]
    stored = [p for p in r.store.rglob("*") if p.is_file() and not p.name.endswith((".json", ".why"))
              and "index" not in p.name and p.stat().st_size > 132]
    corrupt = [p for p in stored if oracle(p) is not None]
    return {"mutated": n, "mutated_acknowledged": len(acked), "mutated_stored_files": len(stored),
            "mutated_corrupt_stored": len(corrupt), "mutated_s": seconds, "mutated_alive": r.alive}


def _sender(r: Receiver, files: list[Path], acked: list[str], title: str) -> None:
    _config.STORE_SEND_CHUNKED_DATASET = True
    ae = AE(ae_title=title)
    ae.add_requested_context(MR, "1.2.840.10008.1.2.1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    with contextlib.suppress(Exception):
        assoc = ae.associate("127.0.0.1", r.port, ae_title=r.called)
        while files and assoc.is_established:
            rsp = assoc.send_c_store(files[0])
            if rsp and "Status" in rsp and (rsp.Status == 0 or rsp.Status & 0xF000 == 0xB000):
                acked.append(files.pop(0).stem)
            else:
                return
        if assoc.is_established:
            assoc.release()


def kills(r: Receiver, runs: int, work: Path, index_paths) -> dict:
    lost = orphans = acknowledged = recovered = 0
    for run in range(runs):
        folders = []
        for i in range(4):
            study = f"2.25.{random.Random(run * 10 + i).getrandbits(100)}"
            fs = []
            for k in range(150):
                ds = conformant_mr(rows=64, columns=64, seed=k, study=study)
                p = work / f"kill-{r.name.split()[-1]}" / f"{run}-{i}" / f"{ds.SOPInstanceUID}.dcm"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(part10(ds))
                fs.append(p)
            folders.append(fs)
        acked: list[list[str]] = [[] for _ in folders]
        threads = [threading.Thread(target=_sender, args=(r, list(fs), acked[i], f"SENDER{i}"))
                   for i, fs in enumerate(folders)]
        for t in threads:
            t.start()
        time.sleep(2.0 + (run % 3))
        r.stop(signal.SIGKILL)
        for t in threads:
            t.join(60)
        r.start()
        present = index_paths(r)
        ack = [u for a in acked for u in a]
        acknowledged += len(ack)
        lost += sum(1 for u in ack if u not in present["uids"])
        orphans += len(present["orphans"])
        recovered += present.get("recovered", 0)
    return {"kill_runs": runs, "kill_acknowledged": acknowledged, "kill_lost": lost, "kill_orphans": orphans,
            "kill_reindexed": recovered}


def perfnode_index(r: Receiver) -> dict:
    from tests.serve_helpers import instances

    rows = instances(f"sqlite:///{(r.work / 'index.sqlite').resolve()}")
    paths = {x.path for x in rows.values()}
    files = [p for p in (r.work / "objects").rglob("*") if p.is_file()]
    line = next((ln for ln in r.output().splitlines()[::-1] if "crash recovery (" in ln), "")
    recovered = 0
    if "re-indexed" in line:
        recovered = int(line.split(" without an index row re-indexed")[0].rsplit(" ", 1)[-1])
    return {"uids": set(rows), "orphans": [p for p in files if str(p.relative_to(r.work)) not in paths],
            "recovered": recovered}


def files_index(r: Receiver) -> dict:
    """For receivers without an index: the SOP Instance UIDs named by the files they wrote."""
    uids = set()
    for p in r.store.rglob("*"):
        if p.is_file():
            uids.add(p.name.split(".", 1)[-1].removesuffix(".dcm"))
    return {"uids": uids, "orphans": []}


# -- report -----------------------------------------------------------------------------------------
ROWS = [
    ("PDU bomb: RSS growth MB", "bomb_rss_mb", "{:.0f}"),
    ("PDU bomb: C-ECHO from another host answered after s", "bomb_echo_s", "{:.1f}"),
    ("16 half-sent A-ASSOCIATE-RQs: C-ECHO after s", "half_rq_echo_s", "{:.1f}"),
    ("16 junk-and-close: C-ECHO after s", "junk_echo_s", "{:.1f}"),
    ("200 silent connections: C-ECHO after s", "silent_echo_s", "{:.1f}"),
    ("fuzzed PDU conversations", "fuzz_cases", "{:d}"),
    ("… crashes (process gone / threads died)", "fuzz_crashes", "{}"),
    ("… longest time C-ECHO went unanswered s", "fuzz_longest_outage_s", "{:.1f}"),
    ("… C-ECHO answered after the attack, s", "fuzz_back_echo_s", "{:.1f}"),
    ("mutated datasets sent", "mutated", "{:d}"),
    ("… acknowledged (Success or warning)", "mutated_acknowledged", "{:d}"),
    ("… stored corrupt (fail dcmdump or pydicom)", "mutated_corrupt_stored", "{:d}"),
    ("kill -9 runs under 4 senders", "kill_runs", "{:d}"),
    ("… objects acknowledged", "kill_acknowledged", "{:d}"),
    ("… acknowledged but lost after restart", "kill_lost", "{:d}"),
    ("… files without an index row after restart", "kill_orphans", "{}"),
    ("… orphans re-indexed at restart", "kill_reindexed", "{}"),
]


def table(receivers: list[Receiver]) -> str:
    head = "| | " + " | ".join(r.name for r in receivers) + " |\n|---|" + "---|" * len(receivers) + "\n"
    lines = []
    for label, key, fmt in ROWS:
        cells = []
        for r in receivers:
            v = r.results.get(key)
            if v is None:
                cells.append("–")
            else:
                try:
                    cells.append(fmt.format(v))
                except (ValueError, TypeError):
                    cells.append(str(v))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fuzz", type=int, default=10_000, help="fuzzed PDU conversations for perfnode")
    ap.add_argument("--mutations", type=int, default=10_000, help="mutated datasets for perfnode")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--peer-fuzz", type=int, default=2_000, help="fuzz cases for the peers (slower)")
    ap.add_argument("--peer-mutations", type=int, default=2_000)
    ap.add_argument("--peer-kills", type=int, default=3)
    ap.add_argument("--orthanc", action="store_true", help="also Orthanc")
    ap.add_argument("--only", choices=["perfnode", "storescp", "orthanc"])
    ap.add_argument("--write", action="store_true", help="put the table into benchmarks/README.md")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="perfnode-reliability-"))
    candidates = [("perfnode", perfnode(work)), ("storescp", storescp(work))]
    if args.orthanc:
        candidates.append(("orthanc", orthanc(work)))
    receivers = [r for key, r in candidates if r is not None and (args.only in (None, key))]
    started = time.time()
    for r in receivers:
        mine = r.name == "perfnode"
        print(f"== {r.name}", flush=True)
        r.start()
        r.results.update(bomb(r))
        print("  bomb", {k: v for k, v in r.results.items() if k.startswith("bomb")}, flush=True)
        if not r.alive:
            r.start()
        r.results.update(hostile(r))
        print("  hostile", {k: r.results[k] for k in ("half_rq_echo_s", "junk_echo_s", "silent_echo_s")},
              flush=True)
        r.results.update(fuzz(r, args.fuzz if mine else args.peer_fuzz))
        gone = 0 if r.results["fuzz_alive"] else 1
        r.results["fuzz_crashes"] = f"{gone} / {r.results['fuzz_thread_deaths']}"
        print("  fuzz", {k: v for k, v in r.results.items() if k.startswith("fuzz")}, flush=True)
        if not r.alive:
            r.start()
        r.results.update(mutations(r, args.mutations if mine else args.peer_mutations, work))
        print("  mutations", {k: v for k, v in r.results.items() if k.startswith("mutated")}, flush=True)
        if not r.alive:
            r.start()
        r.results.update(kills(r, args.kills if mine else args.peer_kills, work,
                               perfnode_index if mine else files_index))
        if not mine:
            r.results["kill_orphans"] = r.results["kill_reindexed"] = "n/a (no index)"
        print("  kill -9", {k: v for k, v in r.results.items() if k.startswith("kill")}, flush=True)
        r.results["peak_rss_mb"] = peak_rss_mb(r.proc.pid)
        r.stop()
    load = Path("/proc/loadavg").read_text().split()[0]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"Run {stamp} on {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, "
            f"load average {load} at the end (shared machine), {time.time() - started:.0f} s; "
            f"perfnode --acse-timeout {ACSE_S:.0f} --network-timeout {NETWORK_S:.0f}, storescp "
            f"--acse-timeout {ACSE_S:.0f} --dimse-timeout {NETWORK_S:.0f}.\n\n" + table(receivers))
    print(text)
    raw = {r.name: r.results for r in receivers}
    (work / "results.json").write_text(json.dumps(raw, default=str, indent=1))
    print(f"raw figures: {work / 'results.json'}")
    if args.write:
        readme = README.read_text()
        start, end = "<!-- BEGIN reliability figures -->", "<!-- END reliability figures -->"
        block = f"{start}\n{text}{end}"
        if start in readme:
            readme = readme[: readme.index(start)] + block + readme[readme.index(end) + len(end):]
        else:
            readme += f"\n{block}\n"
        README.write_text(readme)
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    raise SystemExit(main())
