"""The composition root: settings → archive → DICOM services, DICOMweb → pipeline, started and stopped
as one.

Nothing else wires perfnode together. ``perfnode serve`` calls :func:`run_node`; tests and benchmarks
call :func:`start_node` (non-blocking) and ``.stop()``::

    node = start_node(load_settings(config_file, port=0))
    node.port, node.archive        # the bound port; the Archive facade (perfnode.archive.facade)
    node.stop()

Who depends on whom (an import-contract test keeps it so): this module and ``commands/`` use every
layer; ``pipeline`` uses ``net`` (SCU side, to deliver maps) and the archive facade; ``net`` uses the
archive facade; ``archive`` uses ``dicom``; ``dicom`` and ``perfusion`` use nothing of ours but
``dicom.codes``.
"""

from __future__ import annotations

import faulthandler
import gc
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from perfnode.archive.facade import Archive
from perfnode.config import Settings
from perfnode.net.server import RunningServer, start_server

log = logging.getLogger("perfnode.server")

#: ``gc.set_threshold`` for the node's process (Python's default is 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 100)
#: A shutdown slower than this writes every thread's stack to stderr (and carries on).
SLOW_STOP_S = 15.0


@dataclass
class RunningNode:
    """A started node: archive, DICOM server and pipeline. ``stop()`` shuts all down (idempotent)."""

    settings: Settings
    archive: Archive
    server: RunningServer
    stoppers: list[Callable[[], None]] = field(default_factory=list)
    _stopped: bool = False

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.server.stop()
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception:  # noqa: BLE001
                log.exception("stopping a service failed")
        self.archive.close()


def open_archive(settings: Settings) -> Archive:
    """The archive the settings name (data folder, index URL, duplicate policy)."""
    return Archive.open(settings.data, settings.database_url, settings.duplicate_policy,
                        validation=settings.store.validation)


def start_node(settings: Settings) -> RunningNode:
    """Open the archive, start the DICOM server and the pipeline; return at once."""
    from perfnode.pipeline.runner import start_pipeline
    from perfnode.web.service import start as start_web

    archive = open_archive(settings)
    archive.recover()
    archive.on_stored(archive.record_findings)  # the IHE PERF findings of every stored object
    try:
        server = start_server(settings, archive)
    except BaseException:
        archive.close()
        raise
    node = RunningNode(settings, archive, server)
    try:
        for start in (lambda: start_web(server.ctx), lambda: start_pipeline(archive, settings)):
            stop = start()
            if stop is not None:
                node.stoppers.append(stop)
    except BaseException:  # e.g. the web port is in use: stop what started
        node.stop()
        raise
    # Everything built so far lives as long as the node: keep it out of the cyclic collector's full
    # passes, and collect young objects less often (a full pass cost ≈ 70 ms in the middle of a
    # 50 MB C-STORE; the receive path makes little cyclic garbage).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    log.info("%s listening on port %s (%s)", settings.ae_title, node.port, archive.describe())
    return node


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


def run_node(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly."""
    faulthandler.enable()  # a crash, or SIGABRT from a supervisor, prints every thread's stack
    wait = wait_for_signal()  # before the port opens: a signal from then on is never lost
    node = start_node(settings)
    try:
        number = wait()
        log.info("shutting down (%s)", signal.Signals(number).name)
    finally:
        faulthandler.dump_traceback_later(SLOW_STOP_S)
        try:
            node.stop()
        finally:
            faulthandler.cancel_dump_traceback_later()
