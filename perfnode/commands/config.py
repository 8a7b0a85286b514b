"""``perfnode config --show``: the effective settings, and where each value came from."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from perfnode.commands.serve import add_serve_options, serve_settings
from perfnode.config import SECTIONS, Settings


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("config", help="show the effective settings and where each came from",
                       description="Print the settings `perfnode serve` would run with (same options), "
                                   "each with its source: default, file, env or command line.")
    p.add_argument("--show", action="store_true", default=True, help="print the settings (the default)")
    p.add_argument("--json", action="store_true", help="machine-readable: {table: {key: {value, source}}}")
    add_serve_options(p)
    p.set_defaults(func=run)
    return p


def _toml(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value, ensure_ascii=False)


def table_rows(settings: Settings) -> dict[str, list[tuple[str, Any, str]]]:
    """``{table: [(key, value, source)]}`` in the order of the file's tables."""
    src = settings.sources()
    out: dict[str, list[tuple[str, Any, str]]] = {"node": []}
    for key in Settings.model_fields:
        if key == "peers" or key in SECTIONS:
            continue
        out["node"].append((key, getattr(settings, key), src.get(f"node.{key}", "default")))
    for ae, peer in settings.peers.items():
        where = src.get(f"peers.{ae}", "default")
        out[f"peers.{ae}"] = [(k, v, where) for k, v in peer.model_dump().items() if k != "ae_title"]
    for table in SECTIONS:
        section = getattr(settings, table)
        out[table] = [(k, getattr(section, k), src.get(f"{table}.{k}", "default"))
                      for k in type(section).model_fields]
    return out


def run(args: argparse.Namespace) -> int:
    settings = serve_settings(args)
    rows = table_rows(settings)
    if args.json:
        def plain(v: Any) -> Any:
            if isinstance(v, BaseModel):
                return v.model_dump(mode="json")
            return json.loads(json.dumps(v, default=str))

        print(json.dumps({t: {k: {"value": plain(v), "source": s} for k, v, s in r} for t, r in rows.items()},
                         indent=2))
        return 0
    for table, items in rows.items():
        print(f"[{table}]")
        lines = [(f"{k} = {_toml(v)}" if v is not None else f"# {k} (unset)", s) for k, v, s in items]
        width = max((len(line) for line, _ in lines), default=0)
        for line, source in lines:
            print(f"{line:<{width}}  # {source}")
        print()
    return 0
