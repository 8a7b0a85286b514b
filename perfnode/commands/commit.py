"""``perfnode commit PACS FILES…``: ask another PACS for storage commitment of what it was sent."""

from __future__ import annotations

import argparse
import json
import sys

from perfnode.commands.serve import add_node_options, settings_from

REASONS = {
    0x0110: "processing failure",
    0x0112: "no such object instance",
    0x0119: "class/instance conflict",
    0x0131: "duplicate transaction UID",
    0x0122: "SOP class not supported",
    0x0213: "resource limitation",
}


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "commit",
        help="request storage commitment from another PACS (N-ACTION)",
        description="Storage Commitment Push Model SCU: send the SOP instances of FILES, then wait "
        "for the PACS's N-EVENT-REPORT: on the same association; or on a new association to our AE "
        "title, either at --listen-port (a listener for this command) or at the running node whose "
        "--data/--database is given (the request is recorded in its index, the node matches the report).",
    )
    p.add_argument("target", metavar="PACS", help="AE title from the AE table, or AE@host:port")
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="the DICOM files whose storage to commit")
    p.add_argument("--listen-port", type=int, metavar="PORT", help="port to receive the report on")
    p.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="wait this long for the report (60)"
    )
    p.add_argument("--data", metavar="DIR", help="data folder of the running node that receives the report")
    p.add_argument("--database", metavar="URL", help="index URL of that node (default: SQLite in --data)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_node_options(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from perfnode.net.ae import AssociationFailed
    from perfnode.net.client import parse_target
    from perfnode.net.qr_client import commit, references

    settings = settings_from(args, data=args.data, database=args.database)
    peer = parse_target(args.target, settings)
    refs = references(args.paths)
    if not refs:
        print("perfnode commit: no DICOM files found", file=sys.stderr)
        return 2
    archive = None
    if args.data or args.database:
        from perfnode.node import open_archive

        archive = open_archive(settings, must_exist=True)
    try:
        res = commit(peer, settings, refs, args.listen_port, args.timeout, archive=archive)
    except AssociationFailed as exc:
        print(f"perfnode commit: {exc}", file=sys.stderr)
        return 1
    finally:
        if archive is not None:
            archive.close()
    if args.json:
        print(
            json.dumps(
                {
                    "transaction_uid": res.transaction_uid,
                    "action_status": res.action_status,
                    "event_type": res.event_type,
                    "committed": res.committed,
                    "failed": [{"sop_instance_uid": u, "failure_reason": r} for u, r in res.failed],
                    "comment": res.comment,
                },
                indent=2,
            )
        )
    else:
        if res.action_status != 0:
            print(
                f"N-ACTION refused by {peer.ae_title}: "
                f"status 0x{res.action_status & 0xFFFF:04X} {res.comment}"
            )
        elif res.event_type is None:
            print(f"no storage commitment report from {peer.ae_title}: {res.comment}")
        else:
            print(
                f"storage commitment {res.transaction_uid} at {peer.ae_title}: "
                f"{len(res.committed)} committed, "
                f"{len(res.failed)} failed"
            )
            for uid, reason in res.failed:
                print(f"  failed: {uid} (0x{reason:04X} {REASONS.get(reason, '')})".rstrip())
    return 0 if res.ok else 1
