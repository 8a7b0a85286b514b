"""The IHE Integration Statement is generated from ``perfnode.conformance.IHE_ROWS`` and checked against the
code: the service table the server negotiates, the commands that exist, the conformance run's cases."""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

from perfnode import conformance
from perfnode.cli import build_parser
from perfnode.config import Settings
from perfnode.net.server import all_contexts

RUN = Path(conformance.IHE_STATEMENT).parent / "run"


def run_module():
    """``conformance/run`` as a module (its ``CASES``), without running it."""
    loader = importlib.machinery.SourceFileLoader("conformance_run", str(RUN))
    spec = importlib.util.spec_from_loader("conformance_run", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["conformance_run"] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


def test_committed_statement_matches_the_code():
    text = conformance.IHE_STATEMENT.read_text()
    assert conformance.render(text) == text, "run: python -m perfnode.conformance"
    assert "| PERF | Image Manager/Image Archive | Storage Commitment [RAD-10] | R | SCP |" in text
    readme = (RUN.parent.parent / "README.md").read_text()
    assert "conformance/ihe-integration-statement.md" in readme


def test_every_row_is_backed_by_the_service_table_or_a_command():
    negotiated: dict[str, set[tuple[str, str]]] = {}
    for module, cx in all_contexts(Settings()):
        negotiated.setdefault(module.rsplit(".", 1)[-1], set()).add((cx.abstract_syntax, cx.role))
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for row in conformance.IHE_ROWS:
        if row.role == "SCP":
            classes = {uid for uid, role in negotiated.get(row.service, set()) if "SCP" in role}
            assert set(row.sop_classes) <= classes, (row.transaction, row.service)
        else:
            assert row.service in commands, row
        if row.sop_classes == (conformance.STORAGE_COMMITMENT,) and row.role != "SCP":
            # the SCU side receives the report on a new association: the server's context takes role selection
            assert (conformance.STORAGE_COMMITMENT, "SCP, SCU") in negotiated["commitment"]


def test_every_row_names_cases_of_the_conformance_run():
    ids = {step.id for step in run_module().CASES}
    named = {c for row in conformance.IHE_ROWS for c in row.cases}
    assert named <= ids, named - ids
    assert {r.actor for r in conformance.IHE_ROWS if r.profile == "PERF"} == {
        "Image Manager/Image Archive", "Image Display", "Acquisition Modality (simulator)"}
    transactions = {(r.actor, r.transaction.split("[")[-1].rstrip("]")) for r in conformance.IHE_ROWS}
    for tx in ("RAD-8", "RAD-10", "RAD-14", "RAD-16", "RAD-18"):  # PERF table 25.1-1, Image Manager
        assert ("Image Manager/Image Archive", tx) in transactions
