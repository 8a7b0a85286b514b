"""``perfnode move PACS --dest PERFNODE -l SERIES -k StudyInstanceUID=… -k SeriesInstanceUID=…``: C-MOVE."""

from __future__ import annotations

import argparse
import json
import sys

from perfnode.commands.find import add_query_options, parse_keys, query_settings


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "move",
        help="ask another PACS to send objects somewhere (C-MOVE)",
        description="C-MOVE: the PACS sends the matching objects to --dest (an AE it knows; "
        "use this node's AE title to pull data into perfnode).",
    )
    add_query_options(p)
    p.add_argument("--dest", required=True, metavar="AE", help="move destination AE title")
    p.set_defaults(func=run)
    return p


def report(kind: str, result, as_json: bool) -> int:
    if as_json:
        print(
            json.dumps(
                {
                    "status": result.status,
                    "completed": result.completed,
                    "failed": result.failed,
                    "warning": result.warning,
                    "failed_sop_instance_uids": result.failed_uids,
                    "files": result.files,
                    "comment": result.comment,
                },
                indent=2,
            )
        )
    else:
        state = {
            0x0000: "success",
            0xB000: "some sub-operations failed",
            0xFE00: "cancelled",
            0xA801: "move destination unknown",
        }.get(result.status, "failure")
        print(
            f"{kind}: status 0x{result.status & 0xFFFF:04X} ({state}): {result.completed} completed, "
            f"{result.failed} failed, {result.warning} warnings"
            + (f" — {result.comment}" if result.comment else "")
        )
        for uid in result.failed_uids:
            print(f"  failed: {uid}")
    return 0 if result.ok else 1


def run(args: argparse.Namespace) -> int:
    from perfnode.net.ae import AssociationFailed
    from perfnode.net.client import parse_target
    from perfnode.net.qr_client import move

    settings = query_settings(args)
    peer = parse_target(args.target, settings)
    try:
        result = move(
            peer,
            settings,
            args.dest,
            args.level,
            parse_keys(args.key),
            "PATIENT" if args.patient_root else "STUDY",
        )
    except AssociationFailed as exc:
        print(f"perfnode move: {exc}", file=sys.stderr)
        return 1
    return report(f"C-MOVE to {args.dest}", result, args.json)
