"""The association gate: a connection becomes an association only once its A-ASSOCIATE-RQ is whole.

pynetdicom starts two threads per TCP connection and lets them wait, unbounded, for the request.
Here the listening server (:class:`GatedServer`) hands each accepted connection to one
:class:`Gate` thread, which reads the A-ASSOCIATE-RQ PDU of every pending connection with
``select``:

* the request must be complete within the ARTIM timeout (``acse_timeout``, PS3.8 9.1.5) of the
  connection, else the connection is closed;
* its header is checked before the body is read (type A-ASSOCIATE-RQ, length at most
  :data:`~perfnode.net.pdu.MAX_CONTROL_PDU`): anything else is answered with an A-ABORT and closed;
* at most ``max_pending`` connections wait at once, ``max_pending_per_host`` from one address;
  more are closed at once (one log line per host and 10 s); together they may hold at most
  ``max_pending_bytes`` of unfinished requests.

A whole request is then handed to pynetdicom (:class:`GatedRequestHandler`) with the bytes already
read, and only then does it cost threads, and, once negotiated, a slot (:mod:`.admission`).
With TLS (``server.ssl_context``), the handshake is done here too, without blocking.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pynetdicom import evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.transport import (
    AddressInformation,
    AssociationSocket,
    RequestHandler,
    ThreadedAssociationServer,
)

from perfnode.net.admission import Admission
from perfnode.net.pdu import (
    A_ASSOCIATE_RQ,
    HEADER,
    MAX_CONTROL_PDU,
    PDU_NAMES,
    PduError,
    abort_pdu,
    check_header,
)

log = logging.getLogger("perfnode.server")

#: Seconds between two "too many pending connections" lines for one host.
REFUSAL_LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class GateLimits:
    """How long and how many connections may wait for their A-ASSOCIATE-RQ."""

    artim_timeout: float = 30.0
    max_pending: int = 512
    max_pending_per_host: int = 256
    #: Bytes of unfinished A-ASSOCIATE-RQs held at once; a connection that would go over is aborted.
    max_pending_bytes: int = 64 << 20


@dataclass
class Arrival:
    """A connection whose A-ASSOCIATE-RQ has been read whole (``data``: the bytes read so far)."""

    sock: socket.socket
    data: bytearray


@dataclass
class _Pending:
    sock: socket.socket
    host: str
    port: int
    deadline: float
    data: bytearray = field(default_factory=bytearray)
    need: int = 0  # whole PDU length once the header is known
    handshaking: bool = False
    fd: int = -1

    @property
    def peer(self) -> str:
        return f"{self.host}:{self.port}"


class Gate(threading.Thread):
    """One thread reading the A-ASSOCIATE-RQ of every pending connection."""

    def __init__(self, server: GatedServer, limits: GateLimits) -> None:
        super().__init__(name="association-gate", daemon=True)
        self.server = server
        self.limits = limits
        self._selector = selectors.DefaultSelector()
        self._incoming: queue.SimpleQueue[tuple[socket.socket, Any]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._pending: dict[int, _Pending] = {}
        self._per_host: Counter[str] = Counter()
        self._buffered = 0
        self._last_refusal_log: dict[str, float] = {}
        self._refused_since_log: Counter[str] = Counter()
        self._stopping = False
        #: Counters for tests and the log: handed_off, timed_out, refused, aborted, closed.
        self.stats: Counter[str] = Counter()

    # -- called from the server's thread ---------------------------------------------------------
    def put(self, sock: socket.socket, address: Any) -> None:
        self._incoming.put((sock, address))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        if self.is_alive() and threading.current_thread() is not self:
            self.join(5)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- the gate's thread -----------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._stopping:
                timeout = self._next_deadline() - time.monotonic() if self._pending else None
                for key, mask in self._selector.select(None if timeout is None else max(0.0, timeout)):
                    if key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            while self._wake_r.recv(4096):
                                pass
                        continue
                    self._step(key.data, mask)
                self._take_incoming()
                self._expire()
        finally:
            for p in list(self._pending.values()):
                self._close(p)
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _next_deadline(self) -> float:
        return min(p.deadline for p in self._pending.values())

    def _take_incoming(self) -> None:
        while True:
            try:
                sock, address = self._incoming.get_nowait()
            except queue.Empty:
                return
            host, port = str(address[0]), int(address[1])
            if len(self._pending) >= self.limits.max_pending:
                self._refuse(sock, host, f"{len(self._pending)} connections waiting for their "
                                         f"A-ASSOCIATE-RQ (max_pending {self.limits.max_pending})")
                continue
            if self._per_host[host] >= self.limits.max_pending_per_host:
                self._refuse(sock, host, f"{self._per_host[host]} connections from {host} waiting for their "
                                         f"A-ASSOCIATE-RQ (max_pending_per_host "
                                         f"{self.limits.max_pending_per_host})")
                continue
            try:
                sock.setblocking(False)
                p = _Pending(sock, host, port, time.monotonic() + self.limits.artim_timeout)
                if self.server.ssl_context is not None:
                    p.sock = self.server.ssl_context.wrap_socket(sock, server_side=True,
                                                                 do_handshake_on_connect=False)
                    p.handshaking = True
                self._selector.register(p.sock, selectors.EVENT_READ, p)
            except (OSError, ValueError) as exc:
                log.info("connection from %s:%s dropped: %s", host, port, exc)
                with contextlib.suppress(OSError):
                    sock.close()
                continue
            p.fd = p.sock.fileno()
            self._pending[p.fd] = p
            self._per_host[host] += 1

    def _refuse(self, sock: socket.socket, host: str, why: str) -> None:
        self.stats["refused"] += 1
        with contextlib.suppress(OSError):
            sock.close()
        self._refused_since_log[host] += 1
        now = time.monotonic()
        if now - self._last_refusal_log.get(host, -REFUSAL_LOG_EVERY_S) >= REFUSAL_LOG_EVERY_S:
            log.warning("connection(s) from %s closed at once (%d since the last such line): %s",
                        host, self._refused_since_log.pop(host), why)
            self._last_refusal_log[host] = now

    def _expire(self) -> None:
        now = time.monotonic()
        for p in [p for p in self._pending.values() if p.deadline <= now]:
            self.stats["timed_out"] += 1
            what = (f"{len(p.data)} of {p.need or '≥ 6'} bytes of its A-ASSOCIATE-RQ" if p.data
                    else "no A-ASSOCIATE-RQ")
            log.warning("connection from %s closed: %s after %.0f s (ARTIM timeout, acse_timeout)",
                        p.peer, what, self.limits.artim_timeout)
            self._close(p)

    def _step(self, p: _Pending, mask: int) -> None:
        try:
            if p.handshaking:
                self._handshake(p)
                if p.handshaking:
                    return
            self._read(p)
        except PduError as exc:
            self.stats["aborted"] += 1
            log.warning("connection from %s aborted: %s", p.peer, exc)
            with contextlib.suppress(OSError):
                p.sock.send(abort_pdu(exc.abort_reason))
            self._close(p)
        except (OSError, ValueError) as exc:
            self._closed_by_peer(p, exc)

    def _handshake(self, p: _Pending) -> None:
        sock: ssl.SSLSocket = p.sock  # type: ignore[assignment]
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._selector.modify(sock, selectors.EVENT_READ, p)
            return
        except ssl.SSLWantWriteError:
            self._selector.modify(sock, selectors.EVENT_WRITE, p)
            return
        except ssl.SSLError as exc:
            self.stats["aborted"] += 1
            log.warning("TLS handshake with %s failed: %s", p.peer, exc.reason or exc)
            _audit_alert(str(p.peer), f"TLS handshake from {p.peer} failed: {exc.reason or exc}")
            self._close(p)
            return
        p.handshaking = False
        self._selector.modify(sock, selectors.EVENT_READ, p)

    def _read(self, p: _Pending) -> None:
        while True:
            try:
                chunk = p.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                return
            if not chunk:
                self._closed_by_peer(p, None)
                return
            if self._buffered + len(chunk) > self.limits.max_pending_bytes:
                raise PduError(f"{self._buffered} bytes of unfinished A-ASSOCIATE-RQs held "
                               f"(max {self.limits.max_pending_bytes})")
            p.data += chunk
            self._buffered += len(chunk)
            if not p.need and len(p.data) >= 6:
                pdu_type, _, length = HEADER.unpack_from(p.data)
                check_header(pdu_type, length, 0)
                if pdu_type != A_ASSOCIATE_RQ:
                    raise PduError(f"{PDU_NAMES[pdu_type]} where an A-ASSOCIATE-RQ was expected "
                                   f"(PS3.8 9.2, state Sta2)", 0x02)
                assert length <= MAX_CONTROL_PDU
                p.need = 6 + length
            if p.need and len(p.data) >= p.need:
                self._hand_off(p)
                return

    def _closed_by_peer(self, p: _Pending, exc: BaseException | None) -> None:
        self.stats["closed"] += 1
        if p.data:
            log.info("connection from %s closed by the peer after %d of %s bytes of its A-ASSOCIATE-RQ%s",
                     p.peer, len(p.data), p.need or "≥ 6", f" ({exc})" if exc else "")
        else:  # port probes, health checks
            log.debug("connection from %s closed before any data", p.peer)
        self._close(p)

    def _forget(self, p: _Pending) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(p.sock)
        if self._pending.get(p.fd) is p:
            del self._pending[p.fd]
            self._buffered -= len(p.data)
            self._per_host[p.host] -= 1
            if self._per_host[p.host] <= 0:
                del self._per_host[p.host]

    def _close(self, p: _Pending) -> None:
        self._forget(p)
        with contextlib.suppress(OSError):
            p.sock.close()

    def _hand_off(self, p: _Pending) -> None:
        self._forget(p)
        try:
            p.sock.setblocking(True)
            self.server.finish_request(Arrival(p.sock, p.data), (p.host, p.port))
            self.stats["handed_off"] += 1
        except Exception:  # noqa: BLE001 - one bad connection never stops the gate
            log.exception("could not start an association for %s", p.peer)
            with contextlib.suppress(OSError):
                p.sock.close()


class GatedSocket(AssociationSocket):
    """pynetdicom's socket wrapper, holding the bytes the gate already read (``prefetched``)."""

    prefetched: bytearray

    @property
    def ready(self) -> bool:
        return bool(getattr(self, "prefetched", None)) or super().ready


class GatedRequestHandler(RequestHandler):
    """pynetdicom's request handler for an :class:`Arrival` (its ``_create_association``, with a
    :class:`GatedSocket` that starts with the bytes read by the gate)."""

    request: Arrival  # type: ignore[assignment]

    def _create_association(self) -> Any:
        from pynetdicom.association import Association

        server: GatedServer = self.server  # type: ignore[assignment]
        assoc = Association(self.ae, MODE_ACCEPTOR)
        assoc._server = server
        assoc.name = f"AcceptorThread@{datetime.now():%Y%m%d%H%M%S}"
        sock = GatedSocket(assoc, client_socket=self.request.sock)
        sock.prefetched = self.request.data
        assoc.set_socket(sock)
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        assoc.acceptor.supported_contexts = server.copy_contexts()
        assoc.requestor.address_info = AddressInformation.from_tuple(self.client_address)
        for event, handlers in server._handlers.items():
            if event.is_intervention and handlers:
                assoc.bind(event, *handlers)
            elif isinstance(event, evt.NotificationEvent):
                for handler in handlers:
                    assoc.bind(event, handler[0], handler[1])
        return assoc


class GatedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the :class:`Gate` in front and :class:`Admission` slots."""

    #: Connections the kernel queues before ``accept`` (socketserver's default is 5: under a flood,
    #: a peer's SYN would be dropped and retried a second later).
    request_queue_size = 128

    def __init__(self, *args: Any, limits: GateLimits, admission: Admission, **kwargs: Any) -> None:
        kwargs.setdefault("request_handler", GatedRequestHandler)
        super().__init__(*args, **kwargs)
        self.admission = admission
        self.gate = Gate(self, limits)
        self.gate.start()

    def copy_contexts(self) -> Any:
        from copy import deepcopy  # pynetdicom.transport.deepcopy is replaced by reactor.copy_contexts

        import pynetdicom.transport
        return getattr(pynetdicom.transport, "deepcopy", deepcopy)(self.contexts)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept without wrapping in TLS: the gate does the handshake without blocking this thread."""
        assert self.socket is not None
        return self.socket.accept()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.gate.put(request, client_address)

    def shutdown(self) -> None:
        self.gate.stop()
        super().shutdown()


def _audit_alert(subject: str, description: str) -> None:
    """A security alert (Node Authentication) in the node's audit trail."""
    from perfnode import audit
    from perfnode.audit import messages

    node = messages.Participant("perfnode", "")
    audit.current().emit(messages.security_alert(messages.NODE_AUTHENTICATION, node, subject, description))
