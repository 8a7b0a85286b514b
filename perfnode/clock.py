"""The one clock: aware UTC datetimes everywhere (the index stores them as UTC).

DICOM dates and times inside objects (Content Date/Time …) are the objects' own business (local time by
DICOM convention) and are not made here.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, as an aware datetime in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is refused (its zone is unknown)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: give it a time zone (perfnode.clock.utcnow)")
    return value.astimezone(UTC)
