"""Reading one PDU off a socket without trusting the peer (PS3.8 9.3).

The PDU header (type, reserved, 4-byte length) is checked before anything is allocated for the
body: an A-ASSOCIATE-RQ/-AC/-RJ, A-RELEASE or A-ABORT may be at most :data:`MAX_CONTROL_PDU`
bytes, a P-DATA-TF at most the Maximum Length we announced (``max_pdu``, PS3.8 D.1). The body is
read into a buffer that grows as data arrives, so a peer declaring 4 GB and sending 6 bytes costs
a few KB. The whole PDU must arrive within ``timeout`` seconds of its first byte.

A peer breaking a rule raises a :class:`PduError` whose message names the rule; the caller (the DUL
reactor, :mod:`perfnode.net.reactor`, or the association gate, :mod:`perfnode.net.gate`) logs it
with the peer's address and aborts.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time

A_ASSOCIATE_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT = 0x04, 0x05, 0x06, 0x07
PDU_TYPES = frozenset(range(0x01, 0x08))
PDU_NAMES = {0x01: "A-ASSOCIATE-RQ", 0x02: "A-ASSOCIATE-AC", 0x03: "A-ASSOCIATE-RJ", 0x04: "P-DATA-TF",
             0x05: "A-RELEASE-RQ", 0x06: "A-RELEASE-RP", 0x07: "A-ABORT"}
HEADER = struct.Struct(">BBL")

#: Largest association-control PDU accepted (bytes after the header). 128 presentation contexts with
#: a dozen transfer syntaxes each and a user identity token fit in well under a quarter of this.
MAX_CONTROL_PDU = 1 << 20
#: A body is first read into a buffer of at most this size, which then doubles as data arrives.
FIRST_CHUNK = 1 << 20

#: A-ABORT reasons (PS3.8 Table 9-26, source 2 = service provider).
UNRECOGNIZED_PDU = 0x01
UNEXPECTED_PDU = 0x02
INVALID_PDU_PARAMETER = 0x06

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class PduError(Exception):
    """The peer broke a PDU rule (message names it); ``abort_reason`` goes into our A-ABORT."""

    def __init__(self, message: str, abort_reason: int = 0x00) -> None:
        super().__init__(message)
        self.abort_reason = abort_reason


class PeerClosed(PduError):
    """The connection ended (``partial`` bytes of a PDU had arrived, 0 = between PDUs)."""

    def __init__(self, partial: int = 0, expected: int = 0) -> None:
        msg = "connection closed" if partial == 0 else (
            f"connection closed after {partial} of {expected or '≥ 6'} bytes of a PDU")
        super().__init__(msg)
        self.partial = partial


class PduTimeout(PduError):
    """The PDU did not arrive completely in time."""


def abort_pdu(reason: int = 0x00, source: int = 0x02) -> bytes:
    """An encoded A-ABORT PDU (PS3.8 9.3.8): service-provider source by default."""
    return HEADER.pack(A_ABORT, 0, 4) + bytes((0, 0, source, reason))


def check_header(pdu_type: int, length: int, max_pdata: int) -> None:
    """Refuse a PDU header before its body is read: unknown type, or longer than allowed."""
    if pdu_type not in PDU_TYPES:
        raise PduError(f"unknown PDU type 0x{pdu_type:02X} (PS3.8 9.3)", UNRECOGNIZED_PDU)
    if pdu_type == P_DATA_TF:
        if max_pdata and length > max_pdata:
            raise PduError(f"P-DATA-TF of {length} bytes, over the Maximum Length {max_pdata} we "
                           f"announced (max_pdu, PS3.8 D.1)", INVALID_PDU_PARAMETER)
    elif length > MAX_CONTROL_PDU:
        raise PduError(f"{PDU_NAMES[pdu_type]} of {length} bytes, over the {MAX_CONTROL_PDU} accepted",
                       INVALID_PDU_PARAMETER)


class PduReader:
    """Reads whole PDUs from a blocking (TCP or TLS) socket, with the checks above.

    ``pending`` holds bytes already read from this socket by someone else (the gate that read the
    A-ASSOCIATE-RQ); they are consumed first.
    """

    def __init__(self, sock: socket.socket, pending: bytes | bytearray = b"",
                 send_timeout: float | None = None) -> None:
        self.sock = sock
        self.pending = bytearray(pending)
        #: The socket's timeout between reads, i.e. for sends: a peer that stops reading our
        #: responses cannot hold the thread longer than this.
        self.send_timeout = send_timeout

    def has_data(self) -> bool:
        """Whether bytes are waiting that ``select`` on the socket would not report."""
        if self.pending:
            return True
        pending = getattr(self.sock, "pending", None)
        return bool(pending and pending())

    def read(self, max_pdata: int, timeout: float) -> bytearray:
        """One whole PDU (header included). Raises :class:`PduError` (or a subclass)."""
        deadline = time.monotonic() + timeout
        try:
            header = bytearray(6)
            self._fill(memoryview(header), 0, deadline, expected=0)
            pdu_type, _, length = HEADER.unpack(header)
            check_header(pdu_type, length, max_pdata)
            total = 6 + length
            buf = bytearray(min(total, 6 + FIRST_CHUNK))
            buf[:6] = header
            got = 6
            while got < total:
                if got == len(buf):  # full: grow, since data keeps coming
                    buf.extend(bytes(min(len(buf), total - len(buf))))
                got = self._fill(memoryview(buf), got, deadline, expected=total)
            return buf
        finally:
            with contextlib.suppress(OSError):
                self.sock.settimeout(self.send_timeout)

    def _fill(self, view: memoryview, got: int, deadline: float, expected: int) -> int:
        """Read into ``view[got:]`` until full; return the new fill level."""
        size = len(view)
        with view:
            if self.pending:
                n = min(len(self.pending), size - got)
                view[got:got + n] = self.pending[:n]
                del self.pending[:n]
                got += n
            while got < size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PduTimeout(f"incomplete PDU: {got} of {expected or 6} bytes after the "
                                     f"timeout" if got else "no PDU within the timeout")
                if _QUICKACK is not None:
                    with contextlib.suppress(OSError):
                        self.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                self.sock.settimeout(remaining)
                try:
                    n = self.sock.recv_into(view[got:], min(size - got, 1 << 20))
                except (TimeoutError, ssl.SSLWantReadError):
                    continue
                except OSError as exc:
                    raise PeerClosed(got, expected) from exc
                if n == 0:
                    raise PeerClosed(got, expected)
                got += n
        return got
