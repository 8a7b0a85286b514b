"""``perfnode find PACS -l STUDY -k PatientID=123``: C-FIND another PACS (human table or ``--json``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from perfnode.commands.serve import add_node_options, settings_from
from perfnode.config import ConfigError, Settings

DEFAULT_KEYS = {
    "PATIENT": [
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ],
    "STUDY": [
        "PatientID",
        "PatientName",
        "StudyDate",
        "AccessionNumber",
        "StudyDescription",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "StudyInstanceUID",
    ],
    "SERIES": [
        "StudyInstanceUID",
        "SeriesNumber",
        "Modality",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
        "SeriesInstanceUID",
    ],
    "IMAGE": [
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "InstanceNumber",
        "SOPClassUID",
        "NumberOfFrames",
        "SOPInstanceUID",
    ],
}


def add_query_options(p: argparse.ArgumentParser, default_level: str = "STUDY") -> None:
    p.add_argument("target", metavar="PACS", help="AE title from the AE table, or AE@host:port")
    p.add_argument(
        "-l",
        "--level",
        default=default_level,
        type=str.upper,
        choices=["PATIENT", "STUDY", "SERIES", "IMAGE"],
        help=f"query level (default {default_level})",
    )
    p.add_argument(
        "-P",
        "--patient-root",
        action="store_true",
        help="use the Patient Root information model (default: Study Root)",
    )
    p.add_argument(
        "-k",
        "--key",
        action="append",
        default=[],
        metavar="KEYWORD[=VALUE]",
        help="matching key (KEYWORD=VALUE; wildcards * ?, ranges A-B, lists a\\b) "
        "or return key (KEYWORD); repeatable",
    )
    p.add_argument("--charset", metavar="TERM",
                   help="Specific Character Set of the request, its keys encoded in it (default "
                        "[query] character_set, ISO_IR 192 = UTF-8; e.g. ISO_IR 100, ISO_IR 144, "
                        "'ISO 2022 IR 6\\ISO 2022 IR 87'; '' for none)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_node_options(p)


def query_settings(args: argparse.Namespace) -> Settings:
    """The settings of a Q/R SCU command (``--charset`` overrides ``[query] character_set``)."""
    return settings_from(args, query__character_set=args.charset)


def parse_keys(specs: list[str]) -> dict[str, str]:
    """``["PatientID=12", "StudyDate"]`` → ``{"PatientID": "12", "StudyDate": ""}``; unknown keywords fail."""
    keys: dict[str, str] = {}
    for spec in specs:
        kw, _, value = spec.partition("=")
        kw = kw.strip()
        if tag_for_keyword(kw) is None:
            raise ConfigError(f"--key {spec!r}: {kw!r} is not a DICOM keyword (e.g. PatientID, StudyDate)")
        keys[kw] = value
    return keys


def plain(value: Any) -> Any:
    """A JSON-friendly value."""
    if value is None:
        return None
    if isinstance(value, MultiValue | list):
        return [plain(v) for v in value]
    if isinstance(value, int | float):
        return value
    return str(value)


def as_dict(ds: Dataset, keys: list[str]) -> dict[str, Any]:
    return {kw: plain(ds.get(kw)) for kw in keys if kw in ds}


def table(rows: list[dict[str, Any]], keys: list[str]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        return "\\".join(map(str, v)) if isinstance(v, list) else str(v)

    cols = [k for k in keys if any(k in r for r in rows)] or keys
    cells = [[cell(r.get(k)) for k in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "find",
        help="query another PACS (C-FIND)",
        description="C-FIND another PACS. Without -k, sensible return keys for the level are asked.",
    )
    add_query_options(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from perfnode.net.ae import AssociationFailed
    from perfnode.net.client import parse_target
    from perfnode.net.qr_client import QueryFailed, find

    settings = query_settings(args)
    peer = parse_target(args.target, settings)
    keys = {k: "" for k in DEFAULT_KEYS[args.level]}
    keys.update(parse_keys(args.key))
    order = list(keys)
    root = "PATIENT" if args.patient_root else "STUDY"
    try:
        rows = [as_dict(ds, order) for ds in find(peer, settings, args.level, keys, root)]
    except (AssociationFailed, QueryFailed) as exc:
        print(f"perfnode find: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(table(rows, order))
        print(f"{len(rows)} {args.level.lower()} match{'es' if len(rows) != 1 else ''} at {peer.ae_title}")
    return 0
