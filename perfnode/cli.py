"""The one entry point: ``perfnode serve | send | echo | find | move | get | commit | check | ...``.

Each command lives in ``perfnode/commands/NAME.py`` and exposes
``register(subparsers) -> argparse.ArgumentParser`` whose parser has ``func(args) -> int``
set as a default. Add a command by adding its module name to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from perfnode import __version__
from perfnode.config import ConfigError

#: Commands in the order ``perfnode --help`` lists them.
COMMANDS = [
    "serve",
    "echo",
    "send",
    "find",
    "move",
    "get",
    "commit",
    "check",
    "phantom",
    "report",
    "maps",
    "jobs",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perfnode",
        description="DICOM-native PACS node for CT/MR perfusion imaging (IHE PERF).",
    )
    parser.add_argument("--version", action="version", version=f"perfnode {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"perfnode.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    if args.command == "serve":
        level = min(level, logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"perfnode: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
