"""Files named on the command line → DICOM headers by series, and one line for each file that is not DICOM."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydicom.dataset import Dataset


def why_unreadable(path: Path | str, exc: BaseException) -> str:
    """One line naming the file, what is wrong and the rule, for a file pydicom could not read."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "DICM" in text or "File Meta" in text:
        text = ("not DICOM: no 'DICM' prefix after the 128-byte preamble and no File Meta Information "
                "(PS3.10 7.1)")
    elif isinstance(exc, OSError):
        text = f"cannot be read: {text}"
    else:
        text = f"not readable as DICOM: {type(exc).__name__}: {text}"
    return f"{path}: {text}"


def read_series(paths: Iterable[Path | str]) -> tuple[dict[str, list[Dataset]], list[str]]:
    """Headers (pixel data deferred) by Series Instance UID, and one line per file that could not be read."""
    from perfnode.dicom.frames import expand, read_header

    series: dict[str, list[Dataset]] = {}
    unreadable: list[str] = []
    for p in expand(paths):
        try:
            ds = read_header(p)
        except Exception as exc:  # noqa: BLE001 - any file that is not readable DICOM: one line, go on
            unreadable.append(why_unreadable(p, exc))
            continue
        if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
            unreadable.append(
                f"{p}: not a DICOM instance: no (0008,0016) SOPClassUID / (0008,0018) "
                "SOPInstanceUID (PS3.3 C.12.1)"
            )
            continue
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    return series, unreadable
