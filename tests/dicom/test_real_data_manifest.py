"""The vendored real scanner objects are byte-identical to the files listed in MANIFEST.tsv."""

from __future__ import annotations

import hashlib

from tests.real_data import REAL_DATA, SERIES, manifest, series_files


def test_every_file_matches_its_manifest_row():
    rows = manifest()
    assert len(rows) == 143
    for row in rows:
        path = REAL_DATA / row["folder"] / row["file"]
        data = path.read_bytes()
        assert len(data) == int(row["bytes"]), path
        assert hashlib.sha256(data).hexdigest() == row["sha256"], path


def test_no_file_outside_the_manifest():
    listed = {(r["folder"], r["file"]) for r in manifest()}
    present = {(name, p.name) for name in SERIES for p in series_files(name)}
    assert present == listed
    assert {r["folder"] for r in manifest()} == set(SERIES)
    assert (REAL_DATA / "README.md").is_file()
    assert len(list((REAL_DATA / "_licenses").glob("LICENSE-*.txt"))) == 7
