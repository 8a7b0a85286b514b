"""``perfnode check PATH… | --series UID``: IHE PERF profile findings, and whether the series assembles.

The report has one section per kind of check (:data:`SECTIONS`); quality-control checks
(``perfnode/qc``) add theirs to that list. Exit status: 0 no errors, 1 errors found, 2 nothing to check.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from perfnode.dicom.findings import Finding, Severity

#: (section title, check) — a check takes the headers of one series and returns findings.
#: Add a section here (e.g. the QC checks of perfnode/qc) and it shows in every report.
SECTIONS: list[tuple[str, Callable[[list[Dataset]], list[Finding]]]] = []


def _perf(headers: list[Dataset]) -> list[Finding]:
    from perfnode.dicom.perf import check_series

    return check_series(headers)


def _assembly(headers: list[Dataset]) -> list[Finding]:
    """Can the series be assembled into one 4-D volume? (info with its shape, or the error)."""
    from perfnode.dicom.frames import AssemblyError, assemble

    sources = headers  # pixel data still in the files: memory-mapped, functional groups parsed once
    try:
        v = assemble(sources)
    except AssemblyError as exc:
        return [
            Finding.make(
                Severity.ERROR, "", str(exc), "one complete, consistent volume", "perfnode 4-D assembly"
            )
        ]
    axes = [*v.extra_dims, "t", "z", "y", "x"]
    span = f"{v.times_s[-1] - v.times_s[0]:.1f} s" if len(v.times_s) > 1 else "one time point"
    return [
        Finding.make(
            Severity.INFO,
            "",
            f"{' × '.join(f'{a}={n}' for a, n in zip(axes, v.data.shape, strict=True))}"
            f", {span} ({v.time_source or 'no time attribute'})",
            "a 4-D volume",
            "perfnode 4-D assembly",
        )
    ]


def _compliance(headers: list[Dataset]) -> list[Finding]:
    from perfnode.qc import compliance_findings  # rule files are read on first use

    return compliance_findings(headers)


SECTIONS += [
    ("IHE PERF profile", _perf),
    ("4-D assembly", _assembly),
    ("Protocol compliance (ESR)", _compliance),
]


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "check",
        help="check perfusion objects against the IHE PERF profile",
        description="Check DICOM files, folders or a stored series against the IHE PERF profile "
        "and try to assemble each series into a 4-D volume.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (recursively)")
    p.add_argument(
        "--series",
        action="append",
        default=[],
        metavar="UID",
        help="a stored series, by Series Instance UID (read from the node's index; repeatable)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    p.add_argument(
        "--no-assembly", action="store_true", help="skip the 4-D assembly section (no pixel decoding)"
    )
    p.add_argument("--config", metavar="FILE", help="TOML settings file (for --series)")
    p.add_argument("--data", metavar="DIR", help="the node's data folder (for --series)")
    p.add_argument("--database", metavar="URL", help="the node's index URL (for --series)")
    p.set_defaults(func=run)
    return p


def _series_files(args: argparse.Namespace) -> list[Path]:
    from perfnode.archive.db import Database
    from perfnode.archive.findings import series_paths
    from perfnode.config import load_settings

    settings = load_settings(args.config, data=args.data, database=args.database)
    db = Database(settings.database_url)
    try:
        files = []
        for uid in args.series:
            found = series_paths(db, settings.data, uid)
            if not found:
                print(
                    f"perfnode check: series {uid} is not in the index ({settings.database_url})",
                    file=sys.stderr,
                )
            files += found
        return files
    finally:
        db.dispose()


def build_report(paths: list[Path], assembly: bool = True) -> dict:
    """``{"series": [{"series_instance_uid", "files", "sections": {title: [findings]}}], "errors": n}``."""
    import pydicom

    from perfnode.dicom.frames import read_header

    by_series: dict[str, list[Dataset]] = {}
    unreadable = []
    for p in paths:
        try:
            ds = read_header(p)
        except (InvalidDicomError, OSError) as exc:
            unreadable.append(f"{p}: {exc}")
            continue
        if "SOPClassUID" not in ds:
            unreadable.append(f"{p}: no (0008,0016) SOPClassUID")
            continue
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    _ = pydicom
    report: dict = {"series": [], "unreadable": unreadable, "errors": 0, "warnings": 0}
    for uid, headers in by_series.items():
        sections = {}
        for title, check in SECTIONS:
            if title == "4-D assembly" and not assembly:
                continue
            found = check(headers)
            sections[title] = [f.to_dict() for f in found]
            report["errors"] += sum(f.severity == Severity.ERROR for f in found)
            report["warnings"] += sum(f.severity == Severity.WARNING for f in found)
        report["series"].append(
            {
                "series_instance_uid": uid,
                "series_description": str(headers[0].get("SeriesDescription", "")),
                "modality": str(headers[0].get("Modality", "")),
                "instances": len(headers),
                "files": [str(h.filename) for h in headers if isinstance(h.filename, str)],
                "sections": sections,
            }
        )
    return report


def print_report(report: dict) -> None:
    for s in report["series"]:
        print(
            f"Series {s['series_instance_uid']} ({s['modality']}, {s['series_description']!r}, "
            f"{s['instances']} instance(s))"
        )
        for title, findings in s["sections"].items():
            print(f"  {title}:")
            if not findings:
                print("    no findings")
            for f in findings:
                finding = Finding(
                    Severity(f["severity"]),
                    f["tag"],
                    f["keyword"],
                    f["found"],
                    f["expected"],
                    f["rule"],
                    f["where"],
                )
                print(f"    {finding}")
    for u in report["unreadable"]:
        print(f"not DICOM: {u}")
    print(f"{report['errors']} error(s), {report['warnings']} warning(s) in {len(report['series'])} series")


def run(args: argparse.Namespace) -> int:
    from perfnode.dicom.frames import expand

    paths = expand(args.paths)
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"perfnode check: no such file: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    if args.series:
        paths += _series_files(args)
    if not paths:
        print("perfnode check: nothing to check (give PATH… or --series UID)", file=sys.stderr)
        return 2
    report = build_report(paths, assembly=not args.no_assembly)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print_report(report)
    if not report["series"]:
        return 2
    return 1 if report["errors"] else 0
