"""Loader for the OSIPI reference data in ../shared/reference-data (see its README for columns)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

REFERENCE_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "reference-data"


def ref_path(relative: str) -> Path:
    """Path of a reference file; skips the test with a clear reason when it is absent."""
    p = REFERENCE_DATA / relative
    if not p.is_file():
        pytest.skip(f"OSIPI reference data {p} not present")
    return p


def read_rows(relative: str) -> list[dict[str, str]]:
    """CSV rows as dicts; BOM-safe, header names stripped of the leading spaces some files have."""
    p = REFERENCE_DATA / relative
    if not p.is_file():
        return []
    with p.open(encoding="utf-8-sig", newline="") as fh:
        return [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(fh)]


def arr(cell: str) -> np.ndarray:
    """A whitespace-separated array cell."""
    return np.array(cell.split(), dtype=float)


def read_json(relative: str) -> dict:
    p = REFERENCE_DATA / relative
    return json.loads(p.read_text()) if p.is_file() else {}


def cases(relative: str) -> list:
    """Rows as pytest params labelled by their ``label`` column (one placeholder that skips if absent)."""
    rows = read_rows(relative)
    if not rows:
        return [pytest.param(None, id="missing", marks=pytest.mark.skip(
            reason=f"OSIPI reference data {REFERENCE_DATA / relative} not present"))]
    return [pytest.param(r, id=r["label"]) for r in rows]
