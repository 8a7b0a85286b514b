"""A run with a skip that is not on the allow-list (tests/conftest.py ``ALLOWED_SKIPS``) fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    test = tmp_path / "test_sample.py"
    test.write_text("import pytest\n" + body)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
           "--rootdir", str(tmp_path), str(test)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_an_unlisted_skip_fails_the_run(tmp_path):
    res = run_pytest(tmp_path, 'def test_a():\n    pytest.skip("chromium is not installed")\n')
    assert res.returncode == 1, res.stdout
    assert "skips not on the allow-list" in res.stdout and "chromium is not installed" in res.stdout


def test_allowed_skips_and_xfails_pass(tmp_path):
    res = run_pytest(tmp_path, 'def test_b():\n    pytest.skip("cannot mount a tmpfs here (needs root)")\n\n'
                               '@pytest.mark.xfail(strict=True)\ndef test_c():\n    assert 0\n')
    assert res.returncode == 0, res.stdout
