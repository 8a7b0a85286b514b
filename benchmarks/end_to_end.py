"""End to end: a 128×128×20×60 DSC concatenation sent by DCMTK ``storescu`` to perfnode, which sends
its maps to a DCMTK ``storescp``. Goal: < 15 s from the last C-STORE response to the last map received.

Prints the breakdown from the node's log and job row: wait for completion, analysis (assembly, fit, QC,
encode, report, in the worker process), archive and send.

    ./run.sh bench end_to_end [--size 128] [--slices 20] [--times 60]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfnode.phantoms import Size, make  # noqa: E402
from tests.nodes import Node, free_port, wait_for_port  # noqa: E402

EXPECTED_MAPS = 7  # cbf, cbv, mtt, tmax, ttp, bat, quality


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--slices", type=int, default=20)
    ap.add_argument("--times", type=int, default=60)
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--stable-s", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="perfnode-e2e-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        make("dsc", "concat", tmp / "phantom", seed=1, snr=100.0,
             size=Size(args.size, args.size, args.slices, args.times), parts=args.parts)
        size_mb = sum(p.stat().st_size for p in (tmp / "phantom").rglob("*.dcm")) / 1e6
        print(f"phantom: DSC {args.size}×{args.size}×{args.slices}×{args.times}, {args.parts}-part "
              f"concatenation, {size_mb:.0f} MB (made in {time.perf_counter() - t:.1f} s)")
        received = tmp / "received"
        received.mkdir()
        scp_port = free_port()
        scp = subprocess.Popen(["storescp", "-aet", "MAPS", "-od", str(received), str(scp_port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(scp_port)
        cfg = tmp / "perfnode.toml"
        cfg.write_text(f'[peers.MAPS]\nhost = "127.0.0.1"\nport = {scp_port}\n\n'
                       f'[pipeline]\ndestinations = ["MAPS"]\nstable_s = {args.stable_s}\n')
        node = Node(data=tmp / "node", port=free_port(), extra=["--config", str(cfg)]).start()
        try:
            t_send = time.perf_counter()
            subprocess.run(["storescu", "-aec", "PERFNODE", "+sd", "+r", "+sp", "*.dcm", "127.0.0.1",
                            str(node.port), str(tmp / "phantom")], check=True, capture_output=True)
            t_last_rsp = time.perf_counter()
            while len(list(received.iterdir())) < EXPECTED_MAPS:
                if time.perf_counter() - t_last_rsp > 600:
                    raise SystemExit("no maps after 600 s; node log:\n" + node.output()[-4000:])
                time.sleep(0.05)
            t_maps = time.perf_counter()
        finally:
            node.stop()
            scp.terminate()
        log = node.output()
        jobs = json.loads(subprocess.run([sys.executable, "-m", "perfnode", "jobs", "--json", "--data",
                                          str(node.data)], capture_output=True, text=True).stdout)
        analysis = re.search(r"analysis done in ([\d.]+) s", log)
        timings = re.search(r"timings (\{.*\})", log)
        print(f"send (storescu, {size_mb:.0f} MB):                  {t_last_rsp - t_send:6.2f} s")
        print(f"last C-STORE response → last map received:   {t_maps - t_last_rsp:6.2f} s   (goal < 15 s)")
        if analysis:
            print(f"  analysis in the worker process:            {float(analysis.group(1)):6.2f} s")
        if timings:
            for k, v in json.loads(timings.group(1)).items():
                print(f"    {k:<40} {v:6.2f} s")
        print(f"jobs: {[(j['analysis'], j['state']) for j in jobs]}")


if __name__ == "__main__":
    main()
