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
    "config",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perfnode",
        description="DICOM-native PACS node for CT/MR perfusion imaging (IHE PERF).",
    )
    parser.add_argument("--version", action="version", version=f"perfnode {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an unexpected error (default: one line)")
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
    if args.verbose < 1 and args.command != "serve":
        # a user reads one line per file or series; pydicom's remarks on odd vendor values (and the
        # libraries' warnings) are for -v
        logging.getLogger("pydicom").setLevel(logging.ERROR)
        logging.captureWarnings(True)
        logging.getLogger("py.warnings").setLevel(logging.ERROR)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"perfnode: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a user sees one line, never a traceback (unless --debug)
        if args.debug:
            raise
        text = " ".join(str(exc).split()) or "no message"
        print(f"perfnode {args.command}: {type(exc).__name__}: {text} (--debug shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
