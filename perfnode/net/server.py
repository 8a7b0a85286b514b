"""The DICOM server: one pynetdicom AE built from a list of service modules.

Contract for service modules (kept stable; other parts of perfnode add their own):

* :data:`SERVICES` lists module names. Each module exposes

  - ``contexts(settings) -> list[Context]``: the presentation contexts it accepts
    (abstract syntax, transfer syntaxes, SCP/SCU role selection). The conformance statement
    (:mod:`perfnode.conformance`) is generated from the same lists.
  - ``handlers(ctx: NodeContext) -> list[tuple[event, handler]]``: pynetdicom event bindings; a
    handler translates a DIMSE request into a call on ``ctx.archive`` and a status, nothing else.
  - optionally ``setup(ctx: NodeContext) -> None``: called once before the port opens.
  - optionally ``start(ctx: NodeContext) -> Callable[[], None] | None``: a background worker
    started with the server; the returned callable stops it at shutdown.

* :func:`start_server` returns a :class:`RunningServer` (non-blocking, ``.stop()``, ``.port``,
  ``.ctx``). The node as a whole (archive, server, pipeline) is composed in :mod:`perfnode.node`.

Socket tuning: every accepted connection gets ``TCP_NODELAY``, and on Linux ``TCP_QUICKACK`` is
re-armed before each receive, so a peer that waits for our ACK (delayed-ACK + Nagle) is never
held up ~40–200 ms per object.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import socket
import sys
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pydicom.config
from pynetdicom import AE, evt
from pynetdicom.transport import AssociationSocket

from perfnode.archive.facade import Archive
from perfnode.config import Settings
from perfnode.net.ae import server_ae
from perfnode.net.context import Context, NodeContext, association_stats, peer_name

__all__ = ["SERVICES", "Context", "RunningServer", "all_contexts", "association_stats", "build_ae",
           "quiet_libraries", "service_modules", "start_server", "tune_socket"]

log = logging.getLogger("perfnode.server")
#: ``sys.setswitchinterval`` for the node's process (Python's default is 0.005 s).
SWITCH_INTERVAL_S = 0.001

#: Service modules, in the order their contexts are offered.
SERVICES: list[str] = ["perfnode.net.echo", "perfnode.net.store",
                       "perfnode.net.find", "perfnode.net.retrieve", "perfnode.net.commitment"]


def service_modules(names: list[str] | None = None) -> list[ModuleType]:
    return [importlib.import_module(n) for n in (SERVICES if names is None else names)]


def all_contexts(settings: Settings) -> list[tuple[str, Context]]:
    """(module name, context) for every service module, in offer order."""
    return [(m.__name__, c) for m in service_modules() for c in m.contexts(settings)]


class _TunedSocket:
    """Replaces ``AssociationSocket.recv``: re-arm TCP_QUICKACK, read with ``recv_into``."""

    QUICKACK = getattr(socket, "TCP_QUICKACK", None)

    def __init__(self, assoc_sock: AssociationSocket) -> None:
        self.assoc_sock = assoc_sock

    def recv(self, nr_bytes: int) -> bytearray:
        sock = self.assoc_sock.socket
        if sock is None:
            return bytearray()
        buf = bytearray(nr_bytes)
        view = memoryview(buf)
        got = 0
        while got < nr_bytes:
            if self.QUICKACK is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, self.QUICKACK, 1)
            n = sock.recv_into(view[got:], min(nr_bytes - got, 1 << 20))
            if n == 0:
                view.release()
                del buf[got:]
                return buf
            got += n
        return buf


def tune_socket(assoc_sock: AssociationSocket) -> None:
    """TCP_NODELAY on, and a receive that re-arms TCP_QUICKACK before each read."""
    sock = assoc_sock.socket
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # pragma: no cover - non-TCP socket
        return
    assoc_sock.recv = _TunedSocket(assoc_sock).recv  # type: ignore[method-assign]


@dataclass
class RunningServer:
    """A started DICOM server: ``stop()`` shuts it down (idempotent)."""

    settings: Settings
    ctx: NodeContext
    ae: AE
    server: Any
    stoppers: list[Callable[[], None]] = field(default_factory=list)
    #: Close the archive at stop (when :func:`start_server` opened it).
    owns_archive: bool = False
    _stopped: bool = False

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.server.shutdown()
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception:  # noqa: BLE001
                log.exception("stopping a service failed")
        if self.owns_archive:
            self.ctx.archive.close()
        log.info("stopped %s on port %s", self.settings.ae_title, self.port)


_STARTED: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _summary(event: Any) -> str:
    stats = association_stats(event.assoc)
    took = time.monotonic() - _STARTED.get(event.assoc, time.monotonic())
    counts = ", ".join(f"{k} {v}" for k, v in sorted(stats.items())) or "no requests"
    return f"{peer_name(event)} after {took:.1f} s: {counts}"


def _log_handlers(settings: Settings) -> list[tuple[Any, Callable]]:
    def on_open(event: Any) -> None:
        tune_socket(event.assoc.dul.socket)

    def on_accepted(event: Any) -> None:
        _STARTED[event.assoc] = time.monotonic()
        log.debug("association accepted from %s", peer_name(event))

    def on_rejected(event: Any) -> None:
        log.warning("association rejected from %s: calling AE not in the AE table (--require-known-peers)"
                    if settings.require_known_peers else "association rejected from %s", peer_name(event))

    def on_released(event: Any) -> None:
        log.info("association released: %s", _summary(event))

    def on_aborted(event: Any) -> None:
        log.warning("association aborted: %s", _summary(event))

    return [(evt.EVT_CONN_OPEN, on_open), (evt.EVT_ACCEPTED, on_accepted), (evt.EVT_REJECTED, on_rejected),
            (evt.EVT_RELEASED, on_released), (evt.EVT_ABORTED, on_aborted)]


def build_ae(settings: Settings) -> AE:
    """The node's SCP AE with every service module's presentation contexts (:func:`server_ae`)."""
    return server_ae(settings, [cx for _name, cx in all_contexts(settings)])


def quiet_libraries() -> None:
    """Malformed input is reported once, by our handlers, not by pydicom warnings or Alembic chatter."""
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?$")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    # Its warnings are ignored anyway: do not spend time validating every value read.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    logging.getLogger("alembic").setLevel(logging.WARNING)


def start_server(settings: Settings, archive: Archive | None = None) -> RunningServer:
    """Bind the port and serve in background threads; ``archive`` is opened from the settings if not given."""
    quiet_libraries()
    # Network threads mostly wait; when one wakes (a PDU, a response to send) it should get the GIL
    # within a millisecond rather than after the default 5 ms slice of a busy hook or query thread.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    owns = archive is None
    if archive is None:
        archive = Archive.open(settings.data, settings.database_url, settings.duplicate_policy)
        archive.recover()
    ctx = NodeContext(settings=settings, archive=archive)
    modules = service_modules()
    for m in modules:
        if (setup := getattr(m, "setup", None)) is not None:
            setup(ctx)
    ae = build_ae(settings)
    handlers = _log_handlers(settings)
    for m in modules:
        handlers += m.handlers(ctx)
    server = ae.start_server((settings.host, settings.port), block=False, evt_handlers=handlers)
    running = RunningServer(settings, ctx, ae, server, owns_archive=owns)
    try:
        for m in modules:
            start = getattr(m, "start", None)
            if start is not None:
                stop = start(ctx)
                if stop is not None:
                    running.stoppers.append(stop)
    except BaseException:  # a service could not start: stop the others
        running.stop()
        raise
    return running
