"""``perfnode jobs``: list pipeline jobs and their state."""

from __future__ import annotations

import argparse
import json

from perfnode.archive.facade import JOB_STATES as STATES
from perfnode.config import load_settings
from perfnode.node import open_archive


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("jobs", help="list pipeline jobs (queued, running, done, failed, skipped)")
    p.add_argument("--data", help="data folder of the node (default ./perfnode-data)")
    p.add_argument("--database", help="index URL (default: SQLite in the data folder)")
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--state", choices=STATES, help="only jobs in this state")
    p.add_argument("--limit", type=int, default=50, help="newest N jobs (default 50)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, data=args.data, database=args.database)
    archive = open_archive(settings, must_exist=True)
    try:
        rows = archive.jobs.list(args.state, args.limit)
    finally:
        archive.close()
    if args.json:
        print(json.dumps([{
            "id": j.id, "series_instance_uid": j.series_instance_uid, "analysis": j.analysis,
            "state": j.state, "error": j.error, "calling_ae": j.calling_ae,
            "destinations": [d for d in j.destinations.split(",") if d], "attempts": j.attempts,
            "created_at": j.created_at.isoformat(),
            "started_at": j.started_at.isoformat() if j.started_at else None,
            "finished_at": j.finished_at.isoformat() if j.finished_at else None,
            "output_series_uid": j.output_series_uid, "output_dir": j.output_dir,
        } for j in rows], indent=2))
        return 0
    if not rows:
        print("no jobs")
        return 0
    print(f"{'id':>6}  {'state':<8} {'analysis':<8} {'created (UTC)':<19}  series / note")
    for j in rows:
        note = j.error or (f"→ {j.destinations}" if j.destinations else "")
        print(f"{j.id:>6}  {j.state:<8} {j.analysis:<8} {j.created_at:%Y-%m-%d %H:%M:%S}  "
              f"{j.series_instance_uid}" + (f"\n{'':>8}{note}" if note else ""))
    return 0
