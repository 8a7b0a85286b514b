"""``perfnode report SERIES_OR_PATH --out DIR``: an HTML QC report (curves, maps, findings, provenance)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perfnode import techniques
from perfnode.config import load_settings


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "report",
        help="write an HTML report of one series: curves, maps, protocol and data-quality findings",
        description="Check one series against the recommended protocol (ESR) and for data quality, fit the "
        "perfusion model where one applies, and write DIR/index.html with its pictures.",
    )
    p.add_argument(
        "target",
        metavar="SERIES_OR_PATH",
        help="a folder or file of DICOM instances (other series there count as the study), "
        "or a Series Instance UID stored in the archive",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for index.html, PNGs and qc.json")
    p.add_argument(
        "--series", metavar="UID", help="which series of the folder (default: the one with most frames)"
    )
    p.add_argument(
        "--technique",
        choices=techniques.names(),
        help="technique (default: recognised from the header)",
    )
    p.add_argument(
        "--protocols",
        action="append",
        metavar="DIR",
        help="a site's rule files (*.toml) adding to or overriding the shipped rules by id "
        '(repeatable; also [qc] protocols = "DIR" in the config file)',
    )
    p.add_argument(
        "--fact",
        action="append",
        metavar="NAME=VALUE",
        help="a fact the header does not hold, e.g. hemodynamic_impairment=yes, dce_purpose=perfusion",
    )
    p.add_argument("--no-fit", action="store_true",
                   help="do not fit the perfusion model (by default the one a pipeline job runs)")
    p.add_argument("--config", metavar="FILE", help="TOML settings ([node] data/database, [qc] protocols)")
    p.add_argument("--data", metavar="DIR", help="the archive's data folder (for a Series Instance UID)")
    p.set_defaults(func=run)
    return p


def _archive_files(settings, series_uid: str) -> tuple[list[Path], list[Path]]:
    """Files of a stored series, and those of the other series of its study (an M0 or T1 series)."""
    from perfnode.node import open_archive

    archive = open_archive(settings, must_exist=True)
    try:
        files, _ = archive.series_files(series_uid)
        return files, (archive.study_companion_files(series_uid) if files else [])
    finally:
        archive.close()


def run(args: argparse.Namespace) -> int:
    from perfnode.pipeline.analysis import fit_series
    from perfnode.qc.rules import RuleError
    from perfnode.qc.series import report_files

    settings = load_settings(args.config, data=args.data)
    protocols = list(args.protocols or [])
    if settings.qc.protocols is not None:
        protocols.insert(0, str(settings.qc.protocols))
    target = Path(args.target)
    if target.exists():
        paths, study, series_uid = [target], [], args.series
    else:
        from perfnode.errors import NoArchive

        try:
            paths, study = _archive_files(settings, args.target)
        except NoArchive as exc:
            raise NoArchive(f"{args.target}: no such file, folder or stored series ({exc})") from None
        series_uid = args.target
        if not paths:
            print(
                f"perfnode report: {args.target}: no such file, folder or stored series "
                f"(archive {settings.database_url})",
                file=sys.stderr,
            )
            return 2
    try:
        page, analysis = report_files(
            paths,
            args.out,
            series_uid=series_uid,
            study_paths=study,
            technique=args.technique,
            protocols=protocols or None,
            given=args.fact,
            fitter=None if args.no_fit else fit_series,
            progress=lambda msg: print(f"perfnode report: {msg}", file=sys.stderr, flush=True),
        )
    except (RuleError, ValueError) as exc:
        print(f"perfnode report: {exc}", file=sys.stderr)
        return 2
    qc = analysis.qc
    for f in qc.findings:
        print(f)
    print(
        f"{qc.technique or 'unknown technique'}: {len(qc.protocol)} protocol and {len(qc.quality)} "
        f"data-quality finding(s); report: {page}"
    )
    return 0
