"""``conformance/run`` in CI: every PERF transaction against DCMTK, Orthanc, pynetdicom and perfnode passes,
and every row of the IHE Integration Statement is covered by a passed case."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from perfnode import conformance
from tests.test_ihe_statement import RUN

pytestmark = pytest.mark.slow


def test_conformance_run_passes_and_covers_the_integration_statement():
    out = RUN.parent / "report"  # the report stays in the checkout (gitignored) for CI to keep
    res = subprocess.run([sys.executable, str(RUN), "--out", str(out)], capture_output=True, text=True,
                         timeout=900)
    summary = json.loads((out / "summary.json").read_text())
    failed = [f"{c['id']}: {c['observed']}" for c in summary["cases"] if c["result"] != "pass"]
    assert res.returncode == 0 and not failed, "\n".join(failed) + res.stdout[-3000:] + res.stderr[-3000:]
    passed = {c["id"] for c in summary["cases"] if c["result"] == "pass"}
    for row in conformance.IHE_ROWS:
        assert set(row.cases) <= passed, row
    page = (out / "index.html").read_text()
    for c in summary["cases"]:
        assert c["id"] in page and c["exchange"] and c["expected"] and c["observed"]
