"""``perfnode maps PATH… --out DIR``: the node's analysis, offline, on files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from perfnode.dicom.frames import expand, group_series
from perfnode.pipeline.analysis import AnalysisError, AnalysisRequest, NotForAnalysis, run_analysis
from perfnode.pipeline.technique import TECHNIQUES


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("maps", help="compute perfusion maps from DICOM files (offline) as Parametric Maps")
    p.add_argument("paths", nargs="+", help="DICOM files or folders (each series is analysed separately)")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per series)")
    p.add_argument("--technique", choices=TECHNIQUES, help="override the technique the header suggests")
    p.add_argument("--colour", action="store_true", help="also write colour renderings (not quantitative)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--protocols", help="folder of site QC rule files (add to / override the shipped ones)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    series = group_series(expand(args.paths))
    if not series:
        print("perfnode maps: no DICOM series found", file=sys.stderr)
        return 2
    out = Path(args.out)
    results, failed = [], 0
    bar = tqdm(total=len(series), unit="series", disable=args.json or None)

    def progress(msg: str) -> None:
        bar.set_description(msg)

    all_files = [str(h.filename) for hs in series.values() for h in hs]
    for uid, headers in series.items():
        files = [str(h.filename) for h in headers]
        bar.update()
        try:
            res = run_analysis(AnalysisRequest(files=files, out_dir=str(out / uid), uid_seed=f"{uid}/offline",
                                               technique=args.technique, colour=args.colour,
                                               report=not args.no_report, protocols=args.protocols,
                                               companions=all_files),
                               progress=progress)
        except NotForAnalysis:
            results.append({"series_instance_uid": uid, "skipped": "not a perfusion/diffusion series"})
            tqdm.write(f"{uid}: skipped (not a series perfnode analyses; used as a companion if needed)",
                       file=sys.stderr)
            continue
        except (AnalysisError, ValueError) as exc:
            failed += 1
            results.append({"series_instance_uid": uid, "error": str(exc)})
            tqdm.write(f"{uid}: not analysed: {exc}", file=sys.stderr)
            continue
        results.append({"series_instance_uid": uid, "technique": res.technique, "maps": res.files,
                        "report": res.report, "timings_s": res.timings_s,
                        "findings": res.findings})
        tqdm.write(f"{uid}: {res.technique.upper()} → {len(res.files)} object(s) in {out / uid}"
                   + (f", report {res.report}" if res.report else ""), file=sys.stderr if args.json else None)
    bar.close()
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0
