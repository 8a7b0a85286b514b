"""A running ``perfnode serve`` with its DICOMweb port, for the web tests (one per test module)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.nodes import Node, free_port, wait_for_port


@dataclass
class WebNode:
    node: Node
    web_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def dicomweb(self) -> str:
        return self.url + "/dicom-web"


def start_web_node(folder: Path, config: str = "", extra: list[str] | None = None) -> WebNode:
    web_port = free_port()
    # the tests' C-FIND peer (pynetdicom "FINDSCU") is not in the AE table: let unknown AEs query
    args = ["--web-port", str(web_port), "--allow-unknown", "store,query,retrieve,commit", *(extra or [])]
    if config:
        cfg = folder / "perfnode.toml"
        folder.mkdir(parents=True, exist_ok=True)
        cfg.write_text(config)
        args += ["--config", str(cfg)]
    node = Node(data=folder / "data", port=free_port(), extra=args).start()
    wait_for_port(web_port, timeout=60, proc=node.proc)
    return WebNode(node, web_port)


@pytest.fixture(scope="module")
def web_node(tmp_path_factory) -> Iterator[WebNode]:
    """A node with the web server on a free port (pipeline on, no destinations)."""
    wn = start_web_node(tmp_path_factory.mktemp("web"), "[pipeline]\nstable_s = 2\n")
    yield wn
    wn.node.stop()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def get(url: str, **kw) -> requests.Response:
    return requests.get(url, timeout=60, **kw)
