"""``perfnode check PATH… | --series UID``: findings for each series, judged by what kind of object it is.

- An acquisition: the technique (the registry's detector, the pipeline's own, over every instance), the
  IHE PERF profile rules where they apply (contrast perfusion: DSC, DCE, CT perfusion, or a technique not
  recognised; not ASL or diffusion, which the profile does not cover), whether the series assembles into
  one 4-D volume, and protocol compliance and data quality measured as the report measures them (baseline
  dynamics, temporal resolution... from the assembled data, not from the header alone).
- A derived object (a parametric map, a derived perfusion image, perfnode's own outputs): the
  derived-object rules of :mod:`perfnode.dicom.derived`.

The report has one section per kind of check (:data:`SECTIONS`). A file that is not DICOM gets one line
naming it. Exit status: 0 no errors, 1 errors found, 2 nothing to check.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from perfnode.dicom.findings import Finding, Severity


@dataclass
class SeriesUnderCheck:
    """One series as the sections see it: its headers, and (once asked for) its decision and volume."""

    headers: list[Dataset]
    assembly: bool = True
    notes: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def derived(self) -> bool:
        from perfnode.dicom.derived import is_derived

        return all(is_derived(h) for h in self.headers)

    @cached_property
    def decision(self) -> Any:
        from perfnode.techniques import detect_series

        return detect_series(self.headers)

    @cached_property
    def technique(self) -> Any:
        from perfnode import techniques

        name = self.decision.technique
        return techniques.get(name) if name else None

    @cached_property
    def volume(self) -> Any:
        """The assembled volume, or the :class:`AssemblyError` saying why not (None: not asked for)."""
        if not self.assembly:
            return None
        from perfnode.dicom.frames import AssemblyError, assemble

        try:
            return assemble(
                self.headers
            )  # pixel data still in the files: read once, functional groups parsed once
        except (AssemblyError, ValueError) as exc:
            return AssemblyError(str(exc))


#: (section title, check) — a check takes the series under check and returns findings (None: section not
#: shown for this series). Add a section here and it shows in every report.
SECTIONS: list[tuple[str, Callable[[SeriesUnderCheck], list[Finding] | None]]] = []


def _derived(s: SeriesUnderCheck) -> list[Finding] | None:
    if not s.derived:
        return None
    from perfnode.dicom.derived import check_series

    return check_series(s.headers)


def _technique(s: SeriesUnderCheck) -> list[Finding] | None:
    if s.derived:
        return None
    d = s.decision
    found = d.reason if d.technique else f"none: {d.reason}"
    return [
        Finding.make(
            Severity.WARNING if d.ambiguous else Severity.INFO,
            "",
            found,
            "a technique perfnode analyses, stated by the header",
            "perfnode technique detection",
        )
    ]


def _perf(s: SeriesUnderCheck) -> list[Finding] | None:
    if s.derived:
        return None
    t = s.technique
    scope = "the IHE PERF profile rules apply to contrast perfusion (DSC, DCE, CT perfusion)"
    rule = "IHE RAD PERF (Perfusion Imaging with Contrast), scope"
    if t is not None and not t.dynamic:
        return [
            Finding.make(Severity.INFO, "", f"{t.title} series: not a contrast perfusion object", scope, rule)
        ]
    if t is None:
        from perfnode.techniques.headers import OTHER_PURPOSE_TYPES, SeriesHeaders

        other = SeriesHeaders(s.headers).type_values(2) & OTHER_PURPOSE_TYPES
        if other or s.decision.companion_of:
            what = f"(0008,0008) ImageType value 3 {'/'.join(sorted(other))}" if other else s.decision.reason
            found = f"not a perfusion object: {what}"
            return [Finding.make(Severity.INFO, "ImageType" if other else "", found, scope, rule)]
    from perfnode.dicom.perf import check_series

    return check_series(s.headers)


def _assembly(s: SeriesUnderCheck) -> list[Finding] | None:
    """Can the series be assembled into one 4-D volume? (info with its shape, or the error)."""
    if s.derived or not s.assembly:
        return None
    v = s.volume
    if isinstance(v, Exception):
        return [
            Finding.make(
                Severity.ERROR, "", str(v), "one complete, consistent volume", "perfnode 4-D assembly"
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


def _qc(s: SeriesUnderCheck) -> Any:
    """Protocol compliance and data quality, measured from the assembled data as the report does."""
    if "qc" not in s.notes:
        from perfnode.qc import check_series

        kw: dict[str, Any] = {}
        v = s.volume
        if v is not None and not isinstance(v, Exception):
            data = v.data[(0,) * (v.data.ndim - 4)] if v.data.ndim > 4 else v.data
            g = v.geometry
            kw = {
                "times_s": v.times_s,
                "data": data,
                "spacing_mm": (
                    float(g.slice_spacing or g.slice_thickness or 1.0),
                    *map(float, g.pixel_spacing),
                ),
            }
        t = s.technique
        s.notes["qc"] = check_series(s.headers, technique=t.name if t else None, **kw)
    return s.notes["qc"]


def _compliance(s: SeriesUnderCheck) -> list[Finding] | None:
    if s.derived:
        return None
    return _qc(s).protocol


def _quality(s: SeriesUnderCheck) -> list[Finding] | None:
    if s.derived or s.technique is None:
        return None
    return _qc(s).quality


SECTIONS += [
    ("Derived object", _derived),
    ("Technique", _technique),
    ("IHE PERF profile", _perf),
    ("4-D assembly", _assembly),
    ("Protocol compliance (ESR)", _compliance),
    ("Data quality", _quality),
]


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "check",
        help="check DICOM objects: technique, PERF profile, assembly, protocol, quality (derived: own rules)",
        description="Check DICOM files, folders or a stored series, each series by what it is (an "
        "acquisition: technique, IHE PERF profile where it applies, 4-D assembly, protocol compliance and "
        "data quality; a derived object: the rules for derived objects).",
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
        "--no-assembly",
        action="store_true",
        help="skip the 4-D assembly (no pixel decoding; no measured facts)",
    )
    p.add_argument("--config", metavar="FILE", help="TOML settings file (for --series)")
    p.add_argument("--data", metavar="DIR", help="the node's data folder (for --series)")
    p.add_argument("--database", metavar="URL", help="the node's index URL (for --series)")
    p.set_defaults(func=run)
    return p


def _series_files(args: argparse.Namespace) -> list[Path]:
    from perfnode.config import load_settings
    from perfnode.node import open_archive

    settings = load_settings(args.config, data=args.data, database=args.database)
    archive = open_archive(settings, must_exist=True)
    try:
        files = []
        for uid in args.series:
            found = archive.series_paths(uid)
            if not found:
                print(
                    f"perfnode check: series {uid} is not in the index ({settings.database_url})",
                    file=sys.stderr,
                )
            files += found
        return files
    finally:
        archive.close()


def _facts(s: SeriesUnderCheck) -> dict[str, Any]:
    """The QC facts (header and measured), in the shape of the report's ``qc.json``."""
    qc = s.notes.get("qc")
    if qc is None:
        return {}
    from perfnode.qc.report import _jsonable

    return {k: {"value": _jsonable(v.value), "unit": v.unit, "source": v.source, "attribute": v.attribute}
            for k, v in qc.facts.items()}


def build_report(paths: list[Path], assembly: bool = True) -> dict:
    """``{"series": [{"series_instance_uid", "files", "sections": {title: [findings]}}], "errors": n}``."""
    from perfnode.commands.inputs import read_series

    by_series, unreadable = read_series(paths)
    report: dict = {"series": [], "unreadable": unreadable, "errors": 0, "warnings": 0}
    for uid, headers in by_series.items():
        s = SeriesUnderCheck(headers, assembly)
        sections = {}
        for title, check in SECTIONS:
            try:
                found = check(s)
            except Exception as exc:  # noqa: BLE001 - a check tripping on an odd object is a finding
                found = [
                    Finding.make(
                        Severity.ERROR,
                        "",
                        f"the check could not run: {type(exc).__name__}: {' '.join(str(exc).split())}",
                        "a check that completes",
                        "perfnode check",
                    )
                ]
            if found is None:
                continue
            sections[title] = [f.to_dict() for f in found]
            report["errors"] += sum(f.severity == Severity.ERROR for f in found)
            report["warnings"] += sum(f.severity == Severity.WARNING for f in found)
        report["series"].append(
            {
                "series_instance_uid": uid,
                "series_description": str(headers[0].get("SeriesDescription", "")),
                "modality": str(headers[0].get("Modality", "")),
                "object": "derived" if s.derived else "acquisition",
                "technique": None if s.derived else s.decision.technique,
                "technique_decision": None if s.derived else s.decision.reason,
                "facts": _facts(s),
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
            f"{s['instances']} instance(s), {s['object']})"
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
        print(f"skipped {u}")
    print(f"{report['errors']} error(s), {report['warnings']} warning(s) in {len(report['series'])} series")


def run(args: argparse.Namespace) -> int:
    from perfnode.dicom.frames import expand

    missing = [p for p in map(Path, args.paths) if not p.exists()]
    if missing:
        print(f"perfnode check: no such file: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    paths = expand(args.paths)
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
