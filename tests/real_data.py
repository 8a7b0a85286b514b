"""Real scanner objects vendored in ``tests/data/real-data`` (see its README and MANIFEST.tsv)."""

from __future__ import annotations

import csv
from pathlib import Path

REAL_DATA = Path(__file__).resolve().parent / "data" / "real-data"

SERIES = (
    "siemens_xa30_bold_enh",
    "siemens_xa10_bold_enh",
    "siemens_xa60_dwi_enh",
    "siemens_ve11_pcasl_mosaic",
    "siemens_ve11_pcasl_m0_mosaic",
    "philips_asl_3dpcasl_enh",
    "philips_asl_multiphase_pwi_enh",
    "ge_epi_multiphase_classic",
    "ge_dwi_classic",
    "canon_dwi_enh",
)


def manifest() -> list[dict[str, str]]:
    """The rows of MANIFEST.tsv: folder, file, bytes, sha256, source repository/commit/path."""
    with open(REAL_DATA / "MANIFEST.tsv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def series_files(name: str) -> list[Path]:
    """The files of one series folder, in name order."""
    return sorted(p for p in (REAL_DATA / name).iterdir() if p.is_file())
