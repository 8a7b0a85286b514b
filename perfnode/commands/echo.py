"""``perfnode echo AE@host:port``: C-ECHO a peer."""

from __future__ import annotations

import argparse
import sys

from perfnode.commands.serve import add_node_options, settings_from


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("echo", help="C-ECHO a DICOM peer", description="Verify a peer with C-ECHO.")
    p.add_argument("target", metavar="AE@host:port", help="the peer, or an AE title from the AE table")
    add_node_options(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from perfnode.net.ae import AssociationFailed
    from perfnode.net.client import echo, parse_target

    settings = settings_from(args)
    peer = parse_target(args.target, settings)
    try:
        status = echo(peer, settings)
    except AssociationFailed as exc:
        print(f"perfnode echo: {exc}", file=sys.stderr)
        return 1
    print(f"C-ECHO {peer.ae_title}@{peer.host}:{peer.port}: status 0x{status:04X}")
    return 0 if status == 0 else 1
