"""Frame timing, one implementation for the assembly and the QC facts.

A frame's time comes from the first of these sources that every frame has **and that varies** between
frames (a source every frame has but with one value says nothing about time: GE multiphase EPI repeats
one Acquisition Time in all images and keeps the timing in Trigger Time); when none varies, the first
that every frame has (all times 0); when no source covers every frame, each frame's first found:

1. Frame Acquisition DateTime (0018,9074) (Frame Content, per frame);
2. Frame Reference DateTime (0018,9151);
3. Acquisition DateTime (0008,002A); 4. Acquisition Date + Time (0008,0022/0032);
5. Content Date + Time (0008,0023/0033);
6. Trigger Time (0018,1060) / Nominal Cardiac Trigger Delay Time (0020,9153), ms;
7. Temporal Position Identifier/Index × Temporal Resolution (0020,0110), ms.

A Siemens mosaic adds each slice's offset from the CSA header (MosaicRefAcqTimes) to its image's time.
Times are seconds from the earliest frame; a time point starts at its earliest frame.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

#: the sources, in the order they are tried (keyword of the attribute the value comes from)
SOURCES = (
    "FrameAcquisitionDateTime",
    "FrameReferenceDateTime",
    "AcquisitionDateTime",
    "AcquisitionTime",
    "ContentTime",
    "TriggerTime",
    "TemporalResolution",
)
#: sources that are seconds relative to an unknown start, not datetimes
RELATIVE = {"TriggerTime", "TemporalResolution"}
TAGS = {
    "FrameAcquisitionDateTime": "(0018,9074)",
    "FrameReferenceDateTime": "(0018,9151)",
    "AcquisitionDateTime": "(0008,002A)",
    "AcquisitionTime": "(0008,0032)",
    "ContentTime": "(0008,0033)",
    "TriggerTime": "(0018,1060)",
    "NominalCardiacTriggerDelayTime": "(0020,9153)",
    "TemporalResolution": "(0020,0110)",
}

#: YYYYMMDDHHMMSS[.F{1,6}]: read by slicing, as strptime reads it when every field is in range
_DT = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})(?:\.([0-9]{1,6}))?")


def _fast_dt(v: str) -> datetime | None:
    """``v`` as a datetime when it is a plain 14-digit DT; None for anything strptime must judge."""
    m = _DT.fullmatch(v)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and s <= 59):
        return None
    try:
        return datetime(y, mo, d, h, mi, s, int((m.group(7) or "0").ljust(6, "0")))
    except ValueError:
        return None


def parse_dt(value: Any) -> datetime | None:
    """A DICOM DT (offset dropped): plain 14-digit values by slicing, anything else by ``strptime``."""
    if not value:
        return None
    v = str(value).strip().split("+")[0].split("-")[0]
    fast = _fast_dt(v)
    return fast if fast is not None else strptime_dt(v)


def strptime_dt(v: str) -> datetime | None:
    """``v`` (offset already dropped) by the DT formats perfnode accepts; None when none fits."""
    for fmt in ("%Y%m%d%H%M%S.%f", "%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d"):
        try:
            return datetime.strptime(v, fmt)
        except ValueError:
            continue
    return None


def date_time(ds: Dataset, date_kw: str, time_kw: str) -> datetime | None:
    """A DA + TM pair of ``ds`` as one datetime (None when either is missing or unreadable)."""
    d, t = ds.get(date_kw), ds.get(time_kw)
    if not d or not t:
        return None
    t = str(t).replace(":", "")
    whole, _, frac = t.partition(".")
    return parse_dt(f"{d}{whole.ljust(6, '0')}.{(frac or '0')[:6]}")


def instance_times(ds: Dataset) -> dict[str, datetime | None]:
    """The instance-level datetimes of ``ds`` by source keyword (sources 3–5)."""
    return {
        "AcquisitionDateTime": parse_dt(ds.get("AcquisitionDateTime")),
        "AcquisitionTime": date_time(ds, "AcquisitionDate", "AcquisitionTime"),
        "ContentTime": date_time(ds, "ContentDate", "ContentTime"),
    }


def _seconds_of(kw: str, vals: list[Any]) -> tuple[np.ndarray, datetime | None]:
    """Seconds of each frame from the source's earliest value (and that datetime, for DT sources)."""
    if kw in RELATIVE:
        s = np.array([v if v is not None else np.nan for v in vals], float)
        return (s - np.nanmin(s) if not np.isnan(s).all() else s), None
    known = {v for v in vals if v is not None}
    if not known:
        return np.full(len(vals), np.nan), None
    start = min(known)
    sec = {v: (v - start).total_seconds() for v in known}
    sec[None] = np.nan
    return np.array([sec[v] for v in vals], float), start


def choose(candidates: dict[str, list[Any]]) -> tuple[np.ndarray, str, datetime | None]:
    """Seconds of each frame (from the earliest), the source keyword, and the absolute start (datetimes).

    ``candidates`` maps each source of :data:`SOURCES` to one value per frame: datetimes for sources 1–5,
    seconds for 6–7, None where absent. See the module doc for the rule. Only the chosen source is
    converted (the others are judged by their distinct values)."""
    n = len(next(iter(candidates.values()))) if candidates else 0
    first_complete = None
    for kw in SOURCES:
        vals = candidates.get(kw)
        if vals is None or not n:
            continue
        distinct = set(vals)
        if None in distinct or any(isinstance(v, float) and np.isnan(v) for v in distinct):
            continue
        if len(distinct) > 1:
            s, start = _seconds_of(kw, vals)
            return s, kw, start
        first_complete = first_complete or kw
    if first_complete is not None:
        s, start = _seconds_of(first_complete, candidates[first_complete])
        return s, first_complete, start
    # no source covers every frame: each frame's first found (in the order of SOURCES)
    out = np.full(n, np.nan)
    used = np.full(n, "", object)
    starts: dict[str, datetime | None] = {}
    for kw in SOURCES:
        if kw not in candidates:
            continue
        s, starts[kw] = _seconds_of(kw, candidates[kw])
        todo = np.isnan(out) & ~np.isnan(s)
        out[todo], used[todo] = s[todo], kw
    found = [k for k in SOURCES if k in set(used.tolist())]
    start = next((starts[k] for k in found if starts.get(k) is not None), None)
    return out, "/".join(found), start


def time_points(frame_s: np.ndarray, t_code: np.ndarray, nt: int) -> np.ndarray:
    """Start of each time point (its earliest frame), seconds; NaN for time points without a time."""
    out = np.full(nt, np.inf)
    ok = ~np.isnan(frame_s)
    np.minimum.at(out, t_code[ok], frame_s[ok])
    out[np.isinf(out)] = np.nan
    return out
