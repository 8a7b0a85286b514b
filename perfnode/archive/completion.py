"""When is a series complete enough to analyse?

* every part of each concatenation present (In-Concatenation Number 1..total), or
* a single multi-frame instance that is not a concatenation (it carries the whole grid), or
* for series that give no such signal, no instance arrived for ``stable_s`` seconds.

Series that already have a job (any state, including ``skipped``) are never offered again.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import exists, func, select

from perfnode.archive.db import Database
from perfnode.archive.models import Instance, Job, Series
from perfnode.clock import utcnow as now


def _concatenations_complete(rows: list[tuple[str, int | None, int | None]]) -> bool | None:
    """``True``/``False`` for a series made of concatenations, ``None`` when it has none."""
    parts: dict[str, set[int]] = {}
    totals: dict[str, int] = {}
    for uid, number, total in rows:
        if not uid:
            return None
        parts.setdefault(uid, set()).add(number or 0)
        totals[uid] = max(totals.get(uid, 0), total or 0)
    if not parts:
        return None
    return all(totals[u] > 0 and parts[u] >= set(range(1, totals[u] + 1)) for u in parts)


def ready_series(db: Database, stable_s: float) -> list[tuple[str, str]]:
    """(series UID, reason) for series without a job that are complete or stable."""
    cutoff = now() - timedelta(seconds=stable_s)
    no_job = ~exists().where(Job.series_instance_uid == Series.series_instance_uid)
    out: list[tuple[str, str]] = []
    with db.read() as s:
        candidates = s.execute(
            select(Series.id, Series.series_instance_uid, Series.last_received_at)
            .where(no_job, Series.last_received_at.is_not(None))
        ).all()
        # per series: instances, frames of one, and whether every instance is part of a concatenation
        stats = {row[0]: row[1:] for row in s.execute(
            select(Instance.series_fk, func.count(Instance.id), func.max(Instance.number_of_frames),
                   func.min(func.coalesce(Instance.concatenation_uid, "")))
            .where(Instance.series_fk.in_([c[0] for c in candidates]))
            .group_by(Instance.series_fk)
        )} if candidates else {}
        for series_id, uid, last in candidates:
            count, frames, min_concat = stats.get(series_id, (0, None, ""))
            concat = None
            if count and min_concat:  # only concatenation parts: look at their numbers
                concat = _concatenations_complete([(r[0], r[1], r[2]) for r in s.execute(
                    select(Instance.concatenation_uid, Instance.in_concatenation_number,
                           Instance.in_concatenation_total_number).where(Instance.series_fk == series_id))])
            if concat:
                out.append((uid, "all concatenation parts present"))
            elif concat is None and count == 1 and (frames or 1) > 1:
                out.append((uid, "one multi-frame instance"))
            elif last is not None and last <= cutoff:
                out.append((uid, f"no new instance for {stable_s:g} s"))
    return out


def series_files(db: Database, series_uid: str) -> tuple[list[str], str]:
    """Relative paths of a series' instances (by Instance Number) and the latest calling AE."""
    with db.read() as s:
        rows = s.execute(
            select(Instance.path, Instance.calling_ae)
            .join(Series, Instance.series_fk == Series.id)
            .where(Series.series_instance_uid == series_uid)
            .order_by(Instance.instance_number, Instance.id)
        ).all()
    return [r[0] for r in rows], (rows[-1][1] if rows else "")


def study_companion_files(db: Database, series_uid: str) -> list[str]:
    """Relative paths of the other series of the same study (M0, T1 maps and the like)."""
    with db.read() as s:
        study_fk = s.scalar(select(Series.study_fk).where(Series.series_instance_uid == series_uid))
        if study_fk is None:
            return []
        return list(s.scalars(
            select(Instance.path).join(Series, Instance.series_fk == Series.id)
            .where(Series.study_fk == study_fk, Series.series_instance_uid != series_uid)
            .where(Instance.sop_class_uid != "1.2.840.10008.5.1.4.1.1.30")  # not our own maps
        ))


def study_quiet(db: Database, series_uid: str, stable_s: float) -> bool:
    """Whether no instance of the series' study arrived for ``stable_s`` seconds."""
    with db.read() as s:
        study_fk = s.scalar(select(Series.study_fk).where(Series.series_instance_uid == series_uid))
        last = s.scalar(select(func.max(Series.last_received_at)).where(Series.study_fk == study_fk))
    return last is None or last <= now() - timedelta(seconds=stable_s)
