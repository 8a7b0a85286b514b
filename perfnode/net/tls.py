"""TLS for DICOM (PS3.15 Annex B, BCP 195 TLS Profile / Non-downgrading BCP 195 TLS Profile).

:func:`server_context` and :func:`client_context` make :class:`ssl.SSLContext` objects as BCP 195
(RFC 9325) asks: TLS 1.2 or 1.3 only, forward-secret AEAD cipher suites for TLS 1.2 (ECDHE/DHE with
AES-GCM or ChaCha20-Poly1305), no compression, no renegotiation; peers' certificates checked against
the configured CA (and, as a client, the peer's host name unless the site turns that off).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from perfnode.errors import UsageError

#: TLS 1.2 cipher suites allowed (RFC 9325 4.2); TLS 1.3 suites are all AEAD and left to OpenSSL.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!SHA1"


def _base(purpose: ssl.Purpose) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path | None, what: str) -> None:
    for path, name in ((cert, "certificate"), (key, "key")):
        if path is not None and not Path(path).is_file():
            raise UsageError(f"TLS {name} {path}: no such file ({what})")
    try:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    except ssl.SSLError as exc:
        raise UsageError(f"TLS certificate {cert} / key {key}: {exc.reason or exc} ({what})") from None


def _load_ca(ctx: ssl.SSLContext, ca: Path, what: str) -> None:
    if not Path(ca).is_file():
        raise UsageError(f"TLS CA file {ca}: no such file ({what})")
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except ssl.SSLError as exc:
        raise UsageError(f"TLS CA file {ca}: {exc.reason or exc} ({what})") from None


def server_context(cert: Path, key: Path, ca: Path | None = None,
                   require_client_cert: bool = False) -> ssl.SSLContext:
    """The TLS port's context: our certificate and key; client certificates checked against ``ca``
    (required with ``require_client_cert``, else verified when a client offers one)."""
    ctx = _base(ssl.Purpose.CLIENT_AUTH)
    _load_chain(ctx, cert, key, "--tls-cert/--tls-key")
    if require_client_cert and ca is None:
        raise UsageError("--tls-require-client-cert needs --tls-ca (the CA signing the peers' certificates)")
    if ca is not None:
        _load_ca(ctx, ca, "--tls-ca")
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_context(ca: Path | None = None, cert: Path | None = None, key: Path | None = None,
                   check_hostname: bool = True) -> ssl.SSLContext:
    """A context for associations to ``tls = true`` peers: their certificate verified against ``ca``
    (the system's CAs when none), ours presented when the site has one (mutual authentication)."""
    ctx = _base(ssl.Purpose.SERVER_AUTH)
    if ca is not None:
        _load_ca(ctx, ca, "[tls] ca")
    if cert is not None:
        _load_chain(ctx, cert, key, "[tls] cert/key")
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def describe(sock: object) -> str:
    """``TLSv1.3 TLS_AES_256_GCM_SHA384`` for a TLS socket, ``""`` otherwise (for log and audit lines)."""
    if isinstance(sock, ssl.SSLSocket):
        cipher = sock.cipher()
        return f"{sock.version()} {cipher[0] if cipher else ''}".strip()
    return ""
