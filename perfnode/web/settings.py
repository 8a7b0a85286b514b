"""The ``[web]`` table of the config file: the DICOMweb server and the viewer.

::

    [web]
    enabled = true              # --no-web turns it off
    port = 8042                 # --web-port N
    host = ""                   # bind address; default: the node's --host ("" = all interfaces)
    anonymous = "loopback"      # who needs no credentials: "loopback" (default), "all" or "none"
    tokens = ["long-random-string"]            # Authorization: Bearer …
    cors_origins = ["http://localhost:3000"]   # e.g. an OHIF Viewer served from elsewhere
    tls_cert = "/etc/perfnode/web.crt"         # HTTPS when both are set (default: [tls] cert/key)
    tls_key = "/etc/perfnode/web.key"
    max_qido_results = 10000    # QIDO-RS answers at most this many matches per request

    [web.users]                 # Basic authentication: user = "sha256:<hex of the password>"
    alice = "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"

Environment variables ``PERFNODE_WEB_PORT`` and ``PERFNODE_WEB_ENABLED`` override the file;
``perfnode serve --web-port N`` / ``--no-web`` override both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from perfnode.config import ConfigError, Settings, validate_port

ANONYMOUS = ("loopback", "all", "none")


@dataclass(frozen=True)
class WebSettings:
    enabled: bool = True
    port: int = 8042
    #: Bind address; ``None`` = the DICOM node's ``host``.
    host: str | None = None
    anonymous: str = "loopback"
    tokens: tuple[str, ...] = ()
    #: user → ``"sha256:<hex>"`` (or the plain password, not recommended).
    users: dict[str, str] = field(default_factory=dict)
    cors_origins: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_qido_results: int = 10_000
    #: Responses at least this large, of a compressible type, are gzip-ed for clients that accept it.
    gzip_min_bytes: int = 1024

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> WebSettings:
        """Read ``[web]`` (falling back to ``[tls]`` for the certificate), the environment, then
        ``overrides`` (``None`` values ignored)."""
        raw = dict(settings.section("web"))
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"[web]: unknown setting(s) {', '.join(sorted(unknown))}")
        for key in ("port", "enabled"):
            env = os.environ.get(f"PERFNODE_WEB_{key.upper()}")
            if env is not None:
                raw[key] = env
        raw.update(settings.section("web.cli"))  # perfnode serve --web-port / --no-web
        raw.update({k: v for k, v in overrides.items() if v is not None})
        tls = settings.section("tls")
        raw.setdefault("tls_cert", tls.get("cert"))
        raw.setdefault("tls_key", tls.get("key"))
        try:
            out = cls(
                enabled=_bool(raw.get("enabled", True)),
                port=validate_port(int(raw.get("port", 8042))),
                host=raw.get("host"),
                anonymous=str(raw.get("anonymous", "loopback")),
                tokens=tuple(str(t) for t in raw.get("tokens", ())),
                users={str(k): str(v) for k, v in raw.get("users", {}).items()},
                cors_origins=tuple(str(o) for o in raw.get("cors_origins", ())),
                tls_cert=Path(raw["tls_cert"]) if raw.get("tls_cert") else None,
                tls_key=Path(raw["tls_key"]) if raw.get("tls_key") else None,
                max_qido_results=int(raw.get("max_qido_results", 10_000)),
                gzip_min_bytes=int(raw.get("gzip_min_bytes", 1024)),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[web]: {exc}") from None
        if out.anonymous not in ANONYMOUS:
            raise ConfigError(f"[web] anonymous {out.anonymous!r}: expected one of {', '.join(ANONYMOUS)}")
        if bool(out.tls_cert) != bool(out.tls_key):
            raise ConfigError("[web]: tls_cert and tls_key go together")
        for p in (out.tls_cert, out.tls_key):
            if p is not None and not p.is_file():
                raise ConfigError(f"[web]: {p}: no such file")
        return out

    def bind_host(self, settings: Settings) -> str:
        host = settings.host if self.host is None else self.host
        return host or "0.0.0.0"

    def with_(self, **changes: Any) -> WebSettings:
        return replace(self, **changes)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)
