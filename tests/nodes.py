"""Helpers to run real processes in tests: a ``perfnode serve`` node, DCMTK tools, free ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(tool: str) -> str:
    """Path of a system tool (DCMTK, dicom3tools), or skip the test (the set-up installs them).

    The virtual environment's own ``bin`` is skipped: pynetdicom installs Python look-alikes
    called ``storescu``, ``findscu`` … there, and the tests mean DCMTK's.
    """
    venv_bin = os.path.realpath(os.path.join(sys.prefix, "bin"))
    dirs = [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep)
            if d and os.path.realpath(d) != venv_bin]
    path = shutil.which(tool, path=os.pathsep.join(dirs))
    if not path:
        pytest.skip(f"{tool} not installed (./run.sh setup installs it)")
    return path


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


@dataclass
class Node:
    """A running ``perfnode serve`` subprocess."""

    data: Path
    port: int
    ae_title: str = "PERFNODE"
    database: str | None = None
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{(self.data / 'index.sqlite').resolve()}"

    def start(self) -> Node:
        cmd = [sys.executable, "-m", "perfnode.cli", "serve", "--ae-title", self.ae_title,
               "--port", str(self.port), "--data", str(self.data)]
        if self.database:
            cmd += ["--database", self.database]
        cmd += self.extra
        self.data.mkdir(parents=True, exist_ok=True)
        self.log = self.data.parent / f"{self.data.name}-{self.port}.log"
        logf = open(self.log, "ab")  # noqa: SIM115 - handed to the child process
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
        logf.close()
        wait_for_port(self.port, timeout=90, proc=self.proc)  # slow start on a loaded 2-core machine
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # the node's faulthandler logs every thread's stack
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> Node:
        self.stop()
        return self.start()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def logged(self, text: str, timeout: float = 10.0) -> bool:
        """Whether ``text`` appears in the node's log within ``timeout`` s (a log line may follow
        the response the test has already read)."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


def run(cmd: list[str], timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
    """Run a command, capture its output as text."""
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd[0]} exited {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def perfnode(*args: str) -> list[str]:
    """The command line of ``perfnode ARGS`` with this interpreter (no PATH needed)."""
    return [sys.executable, "-m", "perfnode", *args]
