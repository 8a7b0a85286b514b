"""``perfnode send PATH… --to AE@host:port``: C-STORE files and folders to a peer."""

from __future__ import annotations

import argparse
import sys

from perfnode.commands.serve import add_node_options, settings_from


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("send", help="C-STORE files and folders to a DICOM peer",
                       description="Send DICOM files (folders recursively) with C-STORE.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--to", required=True, metavar="AE@host:port",
                   help="the destination, or an AE title from the AE table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_node_options(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from perfnode.net.ae import AssociationFailed
    from perfnode.net.client import parse_target, send

    settings = settings_from(args)
    peer = parse_target(args.to, settings)
    try:
        result = send(args.paths, peer, settings, progress=not args.no_progress)
    except (AssociationFailed, FileNotFoundError) as exc:
        print(f"perfnode send: {exc}", file=sys.stderr)
        return 1
    if result.sent == 0 and not result.failed:
        what = (f"{result.skipped[0][0]} is not a DICOM file" if len(result.skipped) == 1
                else f"no DICOM file in {', '.join(args.paths)}")
        print(f"perfnode send: nothing sent: {what}", file=sys.stderr)
        return 1
    for path, status, comment in result.failed:
        print(f"failed: {path}: 0x{status & 0xFFFF:04X} {comment}", file=sys.stderr)
    print(f"sent {result.sent}, failed {len(result.failed)}, skipped {len(result.skipped)} (not DICOM)")
    return 0 if not result.failed else 1
