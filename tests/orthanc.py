"""Orthanc as a real peer: started with its own JSON configuration in a folder, loopback ports only.

Used by the storage-commitment tests and by ``conformance/run``. Orthanc answers a Storage
Commitment N-ACTION and sends the N-EVENT-REPORT on a **new** association to the requester's entry
in ``DicomModalities`` (what most archives do).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Debian's package (``apt-get install orthanc``; ``./run.sh test`` installs it).
EXECUTABLE = "Orthanc"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Orthanc:
    """A running Orthanc: ``dicom_port``, ``http_port``, ``rest(method, path, body)``, ``stop()``."""

    folder: Path
    ae_title: str = "ORTHANC"
    #: name → (AE title, host, port) of the peers it may talk to (C-MOVE targets, commitment reports).
    modalities: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    dicom_port: int = 0
    http_port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.folder / "orthanc.log"

    def start(self, timeout: float = 60.0) -> Orthanc:
        exe = shutil.which(EXECUTABLE)
        if exe is None:
            raise FileNotFoundError("Orthanc is not installed (apt-get install orthanc; ./run.sh test does)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dicom_port = self.dicom_port or free_port()
        self.http_port = self.http_port or free_port()
        config = {
            "Name": "perfnode-peer", "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"), "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port, "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomCheckCalledAet": True, "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True, "DicomCheckModalityHost": False, "Plugins": [],
            "StorageCompression": False, "DicomScuTimeout": 20, "DicomAssociationCloseDelay": 0,
            "DicomModalities": {name: [ae, host, port] for name, (ae, host, port) in self.modalities.items()},
            "ConcurrentJobs": 2, "LogExportedResources": False, "SaveJobs": False,
        }
        cfg = self.folder / "orthanc.json"
        cfg.write_text(json.dumps(config, indent=1))
        logf = self.log.open("ab")
        self.proc = subprocess.Popen([exe, "--verbose", str(cfg)], stdout=logf, stderr=subprocess.STDOUT,
                                     cwd=self.folder)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                self.rest("GET", "/system")
                return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"Orthanc did not answer on HTTP port {self.http_port} within {timeout:g} s")

    def rest(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             timeout: float = 60.0) -> Any:
        """One REST call; JSON in, JSON out (``raw`` sends bytes, e.g. a DICOM file)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read()
        try:
            return json.loads(text) if text else None
        except ValueError:
            return text

    def instances(self) -> list[str]:
        """SOP Instance UIDs stored in Orthanc."""
        out = []
        for oid in self.rest("GET", "/instances"):
            tags = self.rest("GET", f"/instances/{oid}/simplified-tags")
            out.append(str(tags["SOPInstanceUID"]))
        return sorted(out)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

