"""Loader for the OSIPI reference data vendored in ``tests/data/osipi`` (see its README for columns,
provenance and licence; ``test_osipi_manifest.py`` checks every file against the README's SHA-256)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

REFERENCE_DATA = Path(__file__).resolve().parents[1] / "data" / "osipi"


def ref_path(relative: str) -> Path:
    """Path of a reference file (a missing file is an error: the data are part of the repository)."""
    p = REFERENCE_DATA / relative
    if not p.is_file():
        raise FileNotFoundError(f"OSIPI reference data {p} missing from the repository")
    return p


def read_rows(relative: str) -> list[dict[str, str]]:
    """CSV rows as dicts; BOM-safe, header names stripped of the leading spaces some files have."""
    with ref_path(relative).open(encoding="utf-8-sig", newline="") as fh:
        return [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(fh)]


def arr(cell: str) -> np.ndarray:
    """A whitespace-separated array cell."""
    return np.array(cell.split(), dtype=float)


def read_json(relative: str) -> dict:
    return json.loads(ref_path(relative).read_text())


def cases(relative: str) -> list:
    """Rows as pytest params labelled by their ``label`` column."""
    return [pytest.param(r, id=r["label"]) for r in read_rows(relative)]
