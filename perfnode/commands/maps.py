"""``perfnode maps PATH… --out DIR``: the node's analysis, offline, on files.

Every series found is analysed on its own; each gets one line (and an entry in ``DIR/outcomes.json``):
maps written, refused with the reason, or failed with the reason. One series failing never stops the
others. Exit status: 0 when nothing failed (refusals are answers, not failures), 1 when a series failed,
2 when no DICOM series was found.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from perfnode import techniques


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("maps", help="compute perfusion maps from DICOM files (offline) as Parametric Maps")
    p.add_argument("paths", nargs="+", help="DICOM files or folders (each series is analysed separately)")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per series)")
    p.add_argument("--technique", choices=techniques.names(),
                   help="override the technique the headers suggest (for every series given)")
    p.add_argument("--colour", action="store_true", help="also write colour renderings (not quantitative)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--protocols", help="folder of site QC rule files (add to / override the shipped ones)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from perfnode.commands.inputs import read_series
    from perfnode.pipeline.analysis import AnalysisRequest, analyse

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        print(f"perfnode maps: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    series, skipped = read_series(args.paths)
    for line in skipped:
        print(f"perfnode maps: skipped {line}", file=sys.stderr)
    if not series:
        print("perfnode maps: no DICOM series found", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(series), unit="series", disable=args.json or None)
    say = (lambda line: tqdm.write(line, file=sys.stderr)) if args.json else tqdm.write
    all_files = [str(h.filename) for hs in series.values() for h in hs]
    outcomes = []
    for uid, headers in series.items():
        files = [str(h.filename) for h in headers]
        outcome = analyse(AnalysisRequest(files=files, out_dir=str(out / uid), uid_seed=f"{uid}/offline",
                                          technique=args.technique, colour=args.colour,
                                          report=not args.no_report, protocols=args.protocols,
                                          companions=all_files),
                          progress=bar.set_description, series_uid=uid)
        bar.update()
        outcomes.append(outcome)
        say(outcome.line())
    bar.close()
    summary = []
    for o in outcomes:
        entry: dict = {"series_instance_uid": o.series_uid, "status": o.status, "reason": o.reason}
        if o.result is not None:
            r = o.result
            entry.update({"technique": r.technique, "decision": r.decision, "notes": r.notes, "maps": r.files,
                          "maps_series_instance_uid": r.series_uid, "report": r.report,
                          "timings_s": r.timings_s, "findings": r.findings})
        summary.append(entry)
    (out / "outcomes.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary, indent=2))
    return 1 if any(o.status == "failed" for o in outcomes) else 0
