"""The one entry point: ``perfnode serve | send | echo | find | move | get | commit | check | ...``.

Each command lives in ``perfnode/commands/NAME.py`` and exposes
``register(subparsers) -> argparse.ArgumentParser`` whose parser has ``func(args) -> int``
set as a default. Add a command by adding its module name to ``COMMANDS``. Only the module of the
command given is imported (``perfnode echo`` need not load the archive, the science and the web
server); ``perfnode --help`` imports them all.

A mistake answers in one line on stderr, naming the host, path, URL, key or file: exit status 2 for
a wrong argument (usage), 1 for a failure. ``--debug`` shows the Python traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import socket
import sys
from typing import NoReturn

from perfnode import __version__
from perfnode.config import ConfigError
from perfnode.errors import CommandError

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


class Parser(argparse.ArgumentParser):
    """argparse with its complaint in one line (and a pointer to ``--help``) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def command_named(argv: list[str]) -> str | None:
    """The command ``argv`` names (its first word that is not an option), if it is one of ours."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of the command ``only`` alone (the others not imported)."""
    parser = Parser(
        prog="perfnode",
        description="DICOM-native PACS node for CT/MR perfusion imaging (IHE PERF).",
    )
    parser.add_argument("--version", action="version", version=f"perfnode {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("--debug", action="store_true", help="on an error, show the Python traceback")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in [only] if only else COMMANDS:
        importlib.import_module(f"perfnode.commands.{name}").register(sub)
    for p in sub.choices.values():  # also accepted after the command: perfnode echo … --debug
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _one_line(text: str) -> str:
    return " ".join(text.split())


def explain(exc: BaseException) -> tuple[str, int]:
    """The one line a person is told about an error, and the exit status (2 usage, 1 failure)."""
    from pydicom.errors import InvalidDicomError

    if isinstance(exc, ConfigError):
        return _one_line(str(exc)), 2
    if isinstance(exc, CommandError):
        return _one_line(str(exc)), exc.exit_status
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror})", 1
    if isinstance(exc, OSError) and exc.filename is not None:
        usage = isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError)
        return f"{exc.filename}: {exc.strerror or exc}", 2 if usage else 1
    if isinstance(exc, OSError):
        return _one_line(f"{exc.strerror or exc}"), 1
    if isinstance(exc, InvalidDicomError):
        return _one_line(f"not a DICOM file: {exc}"), 1
    first = _one_line(str(exc)) or "no message"
    return f"{type(exc).__name__}: {first} (perfnode --debug … shows the traceback)", 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(command_named(argv)).parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    if args.command == "serve":
        level = min(level, logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # alembic announces each plugin it loads (INFO) when first imported, now after this set-up
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if args.verbose < 2:
        # an SCU command says in its own line why an association failed; the node logs its own
        logging.getLogger("pynetdicom").setLevel(
            logging.WARNING if args.command == "serve" or args.verbose else logging.CRITICAL)
    if args.verbose < 1 and args.command != "serve":
        # a user reads one line per file or series; pydicom's remarks on odd vendor values (and the
        # libraries' warnings) are for -v
        logging.getLogger("pydicom").setLevel(logging.ERROR)
        logging.captureWarnings(True)
        logging.getLogger("py.warnings").setLevel(logging.ERROR)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - every error becomes one line (or a traceback with --debug)
        if getattr(args, "debug", False):
            raise
        line, status = explain(exc)
        print(f"perfnode {args.command}: {line}", file=sys.stderr)
        return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
