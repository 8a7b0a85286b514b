"""The vendored OSIPI reference data are byte for byte what their README says (size and SHA-256)."""

from __future__ import annotations

import hashlib
import re

from tests.perfusion.refdata import REFERENCE_DATA

#: README rows: | `folder/file` | `source path` | `commit` date | `sha256` |
ROW = re.compile(r"^\| `([a-z0-9_]+/[^`]+)` \| `[^`]+`.*\| `([0-9a-f]{64})` \|$", re.M)


def test_every_vendored_file_matches_its_readme_checksum():
    listed = dict(ROW.findall((REFERENCE_DATA / "README.md").read_text()))
    assert len(listed) == 8, listed
    for relative, sha in listed.items():
        data = (REFERENCE_DATA / relative).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha, f"{relative}: changed since it was vendored"
    on_disk = {str(p.relative_to(REFERENCE_DATA)) for p in REFERENCE_DATA.rglob("*") if p.is_file()}
    assert on_disk == set(listed) | {"README.md", "LICENSE-Apache-2.0.txt"}
    assert "Apache License" in (REFERENCE_DATA / "LICENSE-Apache-2.0.txt").read_text()
