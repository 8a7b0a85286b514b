"""Shared fixtures: a running node on a free port with a temporary data folder."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Nodes started by tests (in process or as `perfnode serve` subprocesses) do not open the DICOMweb
# port unless a test asks for it (`--web-port N`): many nodes run side by side, and 8042 is one port.
os.environ.setdefault("PERFNODE_WEB__ENABLED", "0")

from tests.nodes import Node, free_port


@pytest.fixture
def node_factory(tmp_path) -> Iterator:
    """Start nodes: ``node_factory(extra_args=[...], database=URL, name="a")``; stopped afterwards."""
    started: list[Node] = []

    def make(extra_args: list[str] | None = None, database: str | None = None, name: str = "node",
             ae_title: str = "PERFNODE") -> Node:
        n = Node(data=tmp_path / name, port=free_port(), ae_title=ae_title, database=database,
                 extra=list(extra_args or []))
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
