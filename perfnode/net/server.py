"""The DICOM server: one pynetdicom AE built from a list of service modules.

Contract for service modules (kept stable; other parts of perfnode add their own):

* :data:`SERVICES` lists module names. Each module exposes

  - ``contexts(settings) -> list[Context]``: the presentation contexts it accepts
    (abstract syntax, transfer syntaxes, SCP/SCU role selection). The conformance statement
    (:mod:`perfnode.conformance`) is generated from the same lists.
  - ``handlers(ctx: NodeContext) -> list[tuple[event, handler]]``: pynetdicom event bindings.
  - optionally ``start(ctx: NodeContext) -> Callable[[], None] | None``: a background worker
    started with the server; the returned callable stops it at shutdown.
  - optionally ``after_store(ctx, instance_id, path, header)``: appended to ``NodeContext.after_store``.

* :func:`run_server` blocks until SIGTERM/SIGINT; :func:`start_server` returns a
  :class:`RunningServer` (non-blocking, ``.stop()``, ``.port``, ``.ctx``) for tests and benchmarks.

* ``NodeContext.after_store`` hooks run after an instance is durable, indexed and acknowledged,
  in a small thread pool off the network thread (:meth:`RunningServer.run_after_store`);
  their errors are logged and swallowed.

Socket tuning: every accepted connection gets ``TCP_NODELAY``, and on Linux ``TCP_QUICKACK`` is
re-armed before each receive, so a peer that waits for our ACK (delayed-ACK + Nagle) is never
held up ~40–200 ms per object.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import importlib
import logging
import secrets
import signal
import socket
import sys
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pydicom.config
from pynetdicom import AE, evt
from pynetdicom.transport import AssociationSocket

from perfnode.archive.db import Database
from perfnode.archive.storage import Storage
from perfnode.config import Settings
from perfnode.net import reactor
from perfnode.net.context import NodeContext

log = logging.getLogger("perfnode.server")
#: ``sys.setswitchinterval`` for the node's process (Python's default is 0.005 s).
SWITCH_INTERVAL_S = 0.001
#: ``gc.set_threshold`` for the node's process (Python's default is 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 100)
#: A shutdown slower than this writes every thread's stack to stderr (and carries on).
SLOW_STOP_S = 15.0

#: Service modules, in the order their contexts are offered.
SERVICES: list[str] = ["perfnode.net.echo", "perfnode.net.store",
                       "perfnode.net.find", "perfnode.net.retrieve", "perfnode.net.commitment",
                       "perfnode.pipeline.service", "perfnode.web.service"]


@dataclass(frozen=True)
class Context:
    """One accepted presentation context (an abstract syntax with its transfer syntaxes).

    ``scp_role``/``scu_role`` are for SCP/SCU Role Selection negotiation (PS3.7 D.3.3.4),
    e.g. C-GET where the node acts as Storage SCU on the same association; ``None`` means
    "no role selection". ``role`` is what the conformance statement lists ("SCP", "SCU", …).
    """

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]
    scp_role: bool | None = None
    scu_role: bool | None = None
    role: str = "SCP"


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


def _peer(event: Any) -> str:
    r = event.assoc.requestor
    return f"{(r.ae_title or '').strip() or '?'}@{r.address}:{r.port}"


@dataclass
class RunningServer:
    """A started node: ``stop()`` shuts it down (idempotent)."""

    settings: Settings
    ctx: NodeContext
    ae: AE
    server: Any
    stoppers: list[Callable[[], None]] = field(default_factory=list)
    hooks: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, "after-store"))
    _stopped: bool = False

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def run_after_store(self, instance_id: int, path: Path, header: Any) -> None:
        """Run the ``after_store`` hooks for one stored instance in the background."""
        for hook in list(self.ctx.after_store):
            self.hooks.submit(self._run_hook, hook, instance_id, path, header)

    def _run_hook(self, hook: Callable, instance_id: int, path: Path, header: Any) -> None:
        try:
            hook(self.ctx, instance_id, path, header)
        except Exception:  # noqa: BLE001 - hooks never break the node
            log.exception("after_store hook %s failed for instance %s",
                          getattr(hook, "__name__", hook), instance_id)

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
        self.hooks.shutdown(wait=True)
        self.ctx.db.dispose()
        log.info("stopped %s on port %s", self.settings.ae_title, self.port)


_STATS: weakref.WeakKeyDictionary[Any, Counter[str]] = weakref.WeakKeyDictionary()
_STARTED: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def association_stats(assoc: Any) -> Counter[str]:
    """Per-association counters (``stats[assoc]["stored"] += 1``), logged when it ends."""
    stats = _STATS.get(assoc)
    if stats is None:
        stats = _STATS[assoc] = Counter()
    return stats


def _summary(event: Any) -> str:
    stats = association_stats(event.assoc)
    took = time.monotonic() - _STARTED.get(event.assoc, time.monotonic())
    counts = ", ".join(f"{k} {v}" for k, v in sorted(stats.items())) or "no requests"
    return f"{_peer(event)} after {took:.1f} s: {counts}"


def _log_handlers(settings: Settings) -> list[tuple[Any, Callable]]:
    def on_open(event: Any) -> None:
        tune_socket(event.assoc.dul.socket)

    def on_accepted(event: Any) -> None:
        _STARTED[event.assoc] = time.monotonic()
        log.debug("association accepted from %s", _peer(event))

    def on_rejected(event: Any) -> None:
        log.warning("association rejected from %s: calling AE not in the AE table (--require-known-peers)"
                    if settings.require_known_peers else "association rejected from %s", _peer(event))

    def on_released(event: Any) -> None:
        log.info("association released: %s", _summary(event))

    def on_aborted(event: Any) -> None:
        log.warning("association aborted: %s", _summary(event))

    return [(evt.EVT_CONN_OPEN, on_open), (evt.EVT_ACCEPTED, on_accepted), (evt.EVT_REJECTED, on_rejected),
            (evt.EVT_RELEASED, on_released), (evt.EVT_ABORTED, on_aborted)]


def build_ae(settings: Settings) -> AE:
    reactor.install()
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_associations = settings.max_associations
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    ae.maximum_pdu_size = settings.max_pdu
    if settings.require_known_peers:
        # An empty list would disable the check: with no known peers, use an unguessable title.
        ae.require_calling_aet = list(settings.peers) or [secrets.token_hex(8).upper()]
    for _name, cx in all_contexts(settings):
        ae.add_supported_context(cx.abstract_syntax, list(cx.transfer_syntaxes),
                                 scu_role=cx.scu_role, scp_role=cx.scp_role)
    return ae


def quiet_libraries() -> None:
    """Malformed input is reported once, by our handlers, not by pydicom warnings or Alembic chatter."""
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?$")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    # Its warnings are ignored anyway: do not spend time validating every value read.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    logging.getLogger("alembic").setLevel(logging.WARNING)


def start_server(settings: Settings, db: Database | None = None) -> RunningServer:
    """Open the index and the file store, bind the port and serve in background threads."""
    from perfnode.net import store  # the receive-to-file machinery lives there

    quiet_libraries()
    # Network threads mostly wait; when one wakes (a PDU, a response to send) it should get the GIL
    # within a millisecond rather than after the default 5 ms slice of a busy hook or query thread.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    storage = Storage(settings.data)
    removed = storage.clean_tmp()
    if removed:
        log.info("removed %d partial files from %s", removed, storage.tmp)
    db = db or Database(settings.database_url)
    ctx = NodeContext(settings=settings, db=db, storage=storage)
    store.install_receive_files(storage)
    modules = service_modules()
    ae = build_ae(settings)
    handlers = _log_handlers(settings)
    for m in modules:
        handlers += m.handlers(ctx)
        if (hook := getattr(m, "after_store", None)) is not None:
            ctx.after_store.append(hook)
    server = ae.start_server((settings.host, settings.port), block=False, evt_handlers=handlers)
    running = RunningServer(settings, ctx, ae, server)
    ctx.run_after_store = running.run_after_store
    try:
        for m in modules:
            start = getattr(m, "start", None)
            if start is not None:
                stop = start(ctx)
                if stop is not None:
                    running.stoppers.append(stop)
    except BaseException:  # a service could not start (e.g. its port is in use): stop the others
        running.stop()
        raise
    # Everything built so far lives as long as the node: keep it out of the cyclic collector's full
    # passes, and collect young objects less often (a full pass cost ≈ 70 ms in the middle of a
    # 50 MB C-STORE; the receive path makes little cyclic garbage).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    log.info("%s listening on port %s (data %s, index %s)", settings.ae_title, running.port,
             storage.root, db.engine.url.render_as_string(hide_password=True))
    return running


def wait_for_signal(
        signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> Callable[[], int]:
    """Catch ``signals`` from now on; the returned callable blocks until one has arrived and
    returns its number (it restores the previous handlers).

    The Python-level handler does nothing: the interpreter's C handler writes the signal number to
    a wake-up socket, which the main thread reads. A handler that set a ``threading.Event`` could
    deadlock if the signal landed while the main thread held that event's lock inside ``wait()``.
    """
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = {s: signal.signal(s, lambda *_: None) for s in signals}

    def wait() -> int:
        try:
            while True:
                data = reader.recv(64)
                for number in data:
                    if number in signals:
                        return number
        finally:
            signal.set_wakeup_fd(previous_fd)
            for s, h in previous.items():
                signal.signal(s, h)
            reader.close()
            writer.close()

    return wait


def run_server(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly."""
    faulthandler.enable()  # a crash, or SIGABRT from a supervisor, prints every thread's stack
    wait = wait_for_signal()  # before the port opens: a signal from then on is never lost
    running = start_server(settings)
    try:
        number = wait()
        log.info("shutting down (%s)", signal.Signals(number).name)
    finally:
        faulthandler.dump_traceback_later(SLOW_STOP_S)
        try:
            running.stop()
        finally:
            faulthandler.cancel_dump_traceback_later()
