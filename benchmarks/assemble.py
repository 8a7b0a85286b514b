"""Check + 4-D assembly of a perfusion object versus just reading it with pydicom.

A 128×128 × 20 slices × 60 time points DSC phantom (1200 frames, 37.5 MiB of pixels) is written as one
Enhanced MR instance and as a 3-part concatenation. For each, in fresh subprocesses:

- ``pydicom``: ``dcmread`` + ``pixel_array`` of every file (the peer: what any reader must do);
- ``perfnode``: ``check_series`` (IHE PERF rules on the headers) + ``assemble`` → float32 (t, z, y, x).

Printed: median seconds of ``--repeat`` runs, peak memory (growth of the process's peak RSS, VmHWM,
over its footprint after imports), and the ratios. Goal: perfnode adds < 50 % to the
plain read. ``python benchmarks/assemble.py [--size 128 128 20 60] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_mib() -> float:
    """Peak resident set size of this process so far (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one(mode: str, paths: list[str]) -> dict:
    """Run one measurement in this (fresh) process."""
    import numpy as np
    import pydicom

    from perfnode.dicom.frames import assemble, read_header
    from perfnode.dicom.perf import check_series

    base = _peak_rss_mib()
    t0 = time.perf_counter()
    if mode in ("pydicom", "pydicom+frames"):
        total = 0.0
        for p in paths:
            ds = pydicom.dcmread(p)
            total += float(ds.pixel_array[0, 0, 0])
            if mode == "pydicom+frames":  # what any reader that orders frames must at least look at
                for item in ds.PerFrameFunctionalGroupsSequence:
                    total += float(item.FrameContentSequence[0].DimensionIndexValues[-1])
                    total += float(item.PlanePositionSequence[0].ImagePositionPatient[2])
    else:
        headers = [read_header(p) for p in paths]  # parsed once, pixel data left in the file
        errors = [f for f in check_series(headers) if f.severity == "error"]
        assert not errors, errors
        v = assemble(headers)
        total = float(np.asarray(v.data[0, 0, 0, 0]))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rss_mib": _peak_rss_mib() - base, "check": total}


def measure(mode: str, paths: list[Path], repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, __file__, "--one", mode, *map(str, paths)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "rss_mib": statistics.median(r["rss_mib"] for r in runs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=4, default=(128, 128, 20, 60), metavar=("X", "Y", "Z", "T"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1:])))
        return
    sys.path.insert(0, str(ROOT))
    from perfnode.phantoms import Size, make

    x, y, z, t = args.size
    size = Size(nx=x, ny=y, nz=z, nt=t)
    with tempfile.TemporaryDirectory() as tmp:
        print(
            f"phantom: DSC {x}×{y}×{z}×{t} ({z * t} frames, {x * y * z * t * 2 / 2**20:.1f} MiB of pixels); "
            f"median of {args.repeat} fresh processes each"
        )
        print(f"{'object':<14}{'reader':<22}{'seconds':>9}{'peak RSS growth MiB':>21}")
        for shape in ("single", "concat"):
            _, files = make("dsc", shape, Path(tmp) / shape, size=size, snr=40)
            files = [f for f in files if f.parent.name == "series01"]
            plain = measure("pydicom", files, args.repeat)
            framed = measure("pydicom+frames", files, args.repeat)
            ours = measure("perfnode", files, args.repeat)
            label = f"{shape} ({len(files)})"
            for name, r in (("pydicom read", plain), ("pydicom + per-frame", framed),
                            ("perfnode check+asm", ours)):
                print(f"{label:<14}{name:<22}{r['seconds']:>9.3f}{r['rss_mib']:>21.1f}")
            for name, r in (("perfnode/pydicom", plain), ("perfnode/+per-frame", framed)):
                print(f"{'':<14}{'ratio ' + name:<22}{ours['seconds'] / r['seconds']:>9.2f}"
                      f"{ours['rss_mib'] / max(r['rss_mib'], 1e-9):>21.2f}")


if __name__ == "__main__":
    main()
