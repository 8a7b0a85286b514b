"""The web server of ``perfnode serve``, started by the composition root (:mod:`perfnode.node`).

``start`` runs uvicorn (the ASGI server) in a thread of the node's process, on ``[web] port`` (default
8042), with TLS when ``[web] tls_cert``/``tls_key`` are set, and returns the callable that stops it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
from collections.abc import Callable

from perfnode.config import ConfigError, WebSettings
from perfnode.net.context import NodeContext

log = logging.getLogger("perfnode.web")


def _bind(host: str, port: int) -> socket.socket:
    """Bind now, in the caller's thread, so that a port in use is a one-line error at start-up."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP
    # (without it a keep-alive response waited ~40 ms for the client's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "address in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise ConfigError(f"web port {host}:{port}: {why} (--web-port N, or --no-web)") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class WebServer:
    """uvicorn serving the web app in a background thread."""

    def __init__(self, ctx: NodeContext, web: WebSettings) -> None:
        import uvicorn

        from perfnode.web.app import build_app
        from perfnode.web.backend import Backend

        self.web = web
        self.sock = _bind(web.bind_host(ctx.settings), web.port)
        self.port = self.sock.getsockname()[1]
        app = build_app(Backend(ctx), web)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=5,  # a node stop waits at most 5 s for responses in flight
            ssl_certfile=str(web.tls_cert) if web.tls else None,
            ssl_keyfile=str(web.tls_key) if web.tls else None,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="perfnode-web", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> Callable[[], None]:
        self.thread.start()
        scheme = "https" if self.web.tls else "http"
        log.info(
            "DICOMweb on %s://%s:%s/dicom-web/, viewer on /viewer/ (anonymous access: %s)",
            scheme,
            self.sock.getsockname()[0],
            self.port,
            self.web.anonymous,
        )
        return self.stop

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def start(ctx: NodeContext) -> Callable[[], None] | None:
    web = ctx.settings.web
    if not web.enabled:
        return None
    return WebServer(ctx, web).start()
