"""``perfnode get PACS -l SERIES -k … --out DIR``: C-GET objects from another PACS into a folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perfnode.commands.find import add_query_options, parse_keys, query_settings
from perfnode.commands.move import report


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "get",
        help="retrieve objects from another PACS into a folder (C-GET)",
        description="C-GET: the objects come back on the same association and are written to "
        "--out as <SOPInstanceUID>.dcm (send them on with `perfnode send`).",
    )
    add_query_options(p)
    p.add_argument("--out", default="retrieved", metavar="DIR", help="output folder (default ./retrieved)")
    p.add_argument("--sop-class", action="append", default=[], metavar="UID",
                   help="storage SOP class to accept (UID or pynetdicom name, e.g. ParametricMapStorage; "
                        "repeatable). Default: the classes the peer says the matches hold (C-FIND first)")
    p.set_defaults(func=run)
    return p


def sop_class_uid(text: str) -> str:
    """A SOP Class UID from a UID or a pynetdicom name (``ParametricMapStorage``)."""
    from pynetdicom import sop_class

    from perfnode.config import ConfigError

    text = text.strip()
    if text.replace(".", "").isdigit():
        return text
    uid = getattr(sop_class, text, None)
    if uid is None:
        raise ConfigError(f"--sop-class {text!r}: neither a UID nor a SOP class name "
                          "(e.g. ParametricMapStorage)")
    return str(uid)


def run(args: argparse.Namespace) -> int:
    from perfnode.net.ae import AssociationFailed
    from perfnode.net.client import parse_target
    from perfnode.net.qr_client import get

    settings = query_settings(args)
    peer = parse_target(args.target, settings)
    try:
        result = get(
            peer,
            settings,
            args.level,
            parse_keys(args.key),
            Path(args.out),
            "PATIENT" if args.patient_root else "STUDY",
            [sop_class_uid(c) for c in args.sop_class],
        )
    except AssociationFailed as exc:
        print(f"perfnode get: {exc}", file=sys.stderr)
        return 1
    return report(f"C-GET into {args.out}", result, args.json)
