"""A hostile peer, byte by byte: raw PDUs (PS3.8 9.3) and the node's vital signs.

Used by the reliability tests (short form) and ``benchmarks/reliability.py`` (long form). Nothing
here knows perfnode: the same attacks run against DCMTK ``storescp`` or Orthanc.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.dsutils import encode

VERIFICATION = "1.2.840.10008.1.1"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"


def _item(item_type: int, body: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(body)) + body


def _uid(item_type: int, uid: str) -> bytes:
    return _item(item_type, uid.encode("ascii"))


def pdu(pdu_type: int, body: bytes, length: int | None = None) -> bytes:
    """A PDU: type, reserved, 4-byte length (``length`` overrides the true one), body."""
    return struct.pack(">BBL", pdu_type, 0, len(body) if length is None else length) + body


def associate_rq(called: str = "PERFNODE", calling: str = "ATTACKER",
                 contexts: tuple[tuple[str, tuple[str, ...]], ...] = (
                     (VERIFICATION, (IMPLICIT_LE,)), (MR_STORAGE, (EXPLICIT_LE, IMPLICIT_LE))),
                 max_pdu: int = 16384) -> bytes:
    """An A-ASSOCIATE-RQ PDU (PS3.8 9.3.2) proposing ``contexts`` (ids 1, 3, 5 …)."""
    body = struct.pack(">HH", 1, 0) + called.ljust(16).encode() + calling.ljust(16).encode() + bytes(32)
    body += _uid(0x10, APPLICATION_CONTEXT)
    for i, (abstract, syntaxes) in enumerate(contexts):
        cx = bytes((2 * i + 1, 0, 0, 0)) + _uid(0x30, abstract) + b"".join(_uid(0x40, ts) for ts in syntaxes)
        body += _item(0x20, cx)
    user = _item(0x51, struct.pack(">L", max_pdu)) + _uid(0x52, "1.2.826.0.1.3680043.9.7433.1")
    body += _item(0x50, user)
    return pdu(0x01, body)


def pdv(context_id: int, fragment: bytes, command: bool, last: bool = True) -> bytes:
    """One Presentation Data Value item (PS3.8 9.3.5.1, E.2)."""
    header = bytes((context_id, (1 if command else 0) | (2 if last else 0)))
    return struct.pack(">L", len(fragment) + 2) + header + fragment


def p_data(*pdvs: bytes, length: int | None = None) -> bytes:
    return pdu(0x04, b"".join(pdvs), length)


def command_set(**elements: object) -> bytes:
    """A DIMSE command set (Implicit VR LE, with its group length), e.g. ``CommandField=0x30``."""
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    body = encode(ds, True, True)
    assert body is not None
    ds.CommandGroupLength = len(body)
    out = encode(ds, True, True)
    assert out is not None
    return out


def echo_command(message_id: int = 1) -> bytes:
    return command_set(AffectedSOPClassUID=VERIFICATION, CommandField=0x0030, MessageID=message_id,
                       CommandDataSetType=0x0101)


def store_command(sop_instance: str, message_id: int = 1, sop_class: str = MR_STORAGE) -> bytes:
    return command_set(AffectedSOPClassUID=sop_class, CommandField=0x0001, MessageID=message_id, Priority=0,
                       CommandDataSetType=0x0000, AffectedSOPInstanceUID=sop_instance)


RELEASE_RQ = pdu(0x05, bytes(4))
ABORT = pdu(0x07, bytes((0, 0, 0, 0)))


def read_pdu(sock: socket.socket, timeout: float = 10.0) -> tuple[int, bytes] | None:
    """(type, body) of the next PDU from the node, or ``None`` when it closed the connection."""
    sock.settimeout(timeout)
    head = _read(sock, 6)
    if len(head) < 6:
        return None
    pdu_type, _, length = struct.unpack(">BBL", head)
    body = _read(sock, length)
    return (pdu_type, body) if len(body) == length else None


def _read(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except (ConnectionResetError, TimeoutError):
            return buf
        if not chunk:
            return buf
        buf += chunk
    return buf


def connect(port: int, host: str = "127.0.0.1", source: str | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if source:
        sock.bind((source, 0))
    sock.connect((host, port))
    return sock


def associate(port: int, source: str | None = None,
              **kwargs: object) -> tuple[socket.socket, tuple[int, bytes]]:
    """Open a raw association; returns the socket and the node's answer (type 2 = accepted)."""
    sock = connect(port, source=source)
    sock.sendall(associate_rq(**kwargs))  # type: ignore[arg-type]
    answer = read_pdu(sock)
    assert answer is not None, "the node closed the connection instead of answering the A-ASSOCIATE-RQ"
    return sock, answer


def closed_by_peer(sock: socket.socket, timeout: float) -> tuple[bool, list[int]]:
    """Wait up to ``timeout`` s for the node to close ``sock``; (closed, PDU types it sent meanwhile)."""
    deadline = time.monotonic() + timeout
    seen: list[int] = []
    while time.monotonic() < deadline:
        got = read_pdu(sock, timeout=max(0.05, deadline - time.monotonic()))
        if got is None:
            return (time.monotonic() < deadline), seen
        seen.append(got[0])
    return False, seen


def echo(port: int, host: str = "127.0.0.1", timeout: float = 10.0, source: str | None = None,
         called: str = "PERFNODE") -> tuple[bool, float, str]:
    """C-ECHO with pynetdicom: (success, seconds, what happened)."""
    ae = AE(ae_title="PROBE")
    ae.add_requested_context(VERIFICATION)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = timeout
    t0 = time.monotonic()
    kwargs = {"bind_address": (source, 0)} if source else {}
    assoc = ae.associate(host, port, ae_title=called, **kwargs)
    if not assoc.is_established:
        what = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "no association"
        return False, time.monotonic() - t0, what
    try:
        status = assoc.send_c_echo()
    finally:
        with contextlib.suppress(Exception):
            assoc.release()
    ok = bool(status) and int(status.get("Status", -1)) == 0
    return ok, time.monotonic() - t0, "success" if ok else "no or failed C-ECHO response"


def echo_within(port: int, seconds: float, **kwargs: object) -> tuple[bool, float]:
    """Keep trying C-ECHO until one succeeds or ``seconds`` passed: (succeeded, seconds taken)."""
    t0 = time.monotonic()
    while True:
        ok, _, _ = echo(port, timeout=max(1.0, min(10.0, seconds)), **kwargs)  # type: ignore[arg-type]
        if ok:
            return True, time.monotonic() - t0
        if time.monotonic() - t0 > seconds:
            return False, time.monotonic() - t0
        time.sleep(0.2)


@dataclass(frozen=True)
class Vitals:
    """What the kernel says about a process: memory, threads, descriptors, TCP connections it holds
    (listening sockets not counted)."""

    rss_mb: float
    threads: int
    fds: int
    connections: int


def _tcp_inodes(pid: int) -> dict[str, str]:
    """Socket inode → TCP state (hex, "0A" = LISTEN) for the sockets of ``pid``'s network namespace."""
    out = {}
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            out[parts[9]] = parts[3]
    return out


def vitals(pid: int) -> Vitals:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kb = int(fields["VmRSS"].split()[0])
    tcp = _tcp_inodes(pid)
    fds = connections = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        fds += 1
        if target.startswith("socket:["):
            state = tcp.get(target[8:-1])
            connections += state is not None and state != "0A"
    return Vitals(rss_kb / 1024, int(fields["Threads"]), fds, connections)


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


class Prober(threading.Thread):
    """C-ECHO every ``interval`` s while an attack runs; :attr:`longest_outage` is the longest time
    (s) during which no C-ECHO succeeded, :attr:`failures` how many failed."""

    def __init__(self, port: int, source: str | None = "127.0.0.2", interval: float = 0.5,
                 timeout: float = 5.0, called: str = "PERFNODE") -> None:
        super().__init__(daemon=True)
        self.port, self.source, self.interval = port, source, interval
        self.timeout, self.called = timeout, called
        self.longest_outage = 0.0
        self.failures = self.successes = 0
        self.last_failure = ""
        self._halt = threading.Event()

    def run(self) -> None:
        last_ok = time.monotonic()
        while not self._halt.is_set():
            ok, _, what = echo(self.port, timeout=self.timeout, source=self.source, called=self.called)
            now = time.monotonic()
            if ok:
                self.successes += 1
                last_ok = now
            else:
                self.failures += 1
                self.last_failure = what
                self.longest_outage = max(self.longest_outage, now - last_ok)
            self._halt.wait(self.interval)

    def stop(self) -> Prober:
        self._halt.set()
        self.join(self.timeout + 5)
        return self
