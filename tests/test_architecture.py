"""The layering rules of the README's architecture section, checked on the real import graph.

The contracts are in ``pyproject.toml`` (``[tool.importlinter]``): perfusion/dicom know nothing of ours
but codes, perfusion never imports pydicom, archive never imports net/pipeline, net and pipeline use
the archive only through its facade, no import cycles inside net/archive/pipeline.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    res = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout and "9 kept" in res.stdout, res.stdout


def test_the_graph_the_contracts_see_is_the_real_one():
    """A contract over an empty or wrong graph would pass whatever the code does: check known edges."""
    graph = grimp.build_graph("perfnode")
    assert "perfnode.archive.facade" in graph.find_modules_directly_imported_by("perfnode.net.store")
    assert "perfnode.net.server" in graph.find_modules_directly_imported_by("perfnode.node")
    # the two arrows issue 16 named are gone
    assert not graph.find_shortest_chains("perfnode.archive", "perfnode.net", as_packages=True)
    assert graph.find_shortest_chain("perfnode.net.store", "perfnode.net.server") is None
    assert graph.find_shortest_chain("perfnode.net.server", "perfnode.net.store") is None
    # and the check does find a chain where there is one
    assert graph.find_shortest_chains("perfnode.net", "perfnode.archive", as_packages=True)
