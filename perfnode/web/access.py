"""Who may use the web services: an ASGI middleware in front of every route.

* Anonymous requests are served from loopback only by default (``[web] anonymous = "loopback"``;
  ``"all"`` or ``"none"`` otherwise);
* otherwise ``Authorization: Bearer <token>`` (``[web] tokens``) or ``Basic`` (``[web.users]``,
  passwords as ``sha256:<hex>``) is required; a missing or wrong credential gets 401 with a
  ``WWW-Authenticate`` challenge. The user (or ``"anonymous"``) is put in ``scope["state"]["user"]``
  for the handlers and the access log.

Other schemes (mutual TLS, OAuth) plug in as further :data:`CHECKS`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from perfnode.config import WebSettings

log = logging.getLogger("perfnode.web.access")


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _password_ok(stored: str, given: str) -> bool:
    if stored.startswith("sha256:"):
        return hmac.compare_digest(stored[7:].lower(), hashlib.sha256(given.encode()).hexdigest())
    return hmac.compare_digest(stored.encode(), given.encode())


def check_bearer(web: WebSettings, scheme: str, value: str) -> str | None:
    if scheme == "bearer" and any(hmac.compare_digest(value.encode(), t.encode()) for t in web.tokens):
        return "token"
    return None


def check_basic(web: WebSettings, scheme: str, value: str) -> str | None:
    if scheme != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    stored = web.users.get(user)
    return user if stored is not None and _password_ok(stored, password) else None


#: Credential checks, tried in order: ``check(web, scheme, value) -> user or None``.
CHECKS: list[Callable[[WebSettings, str, str], str | None]] = [check_bearer, check_basic]


class AccessControl:
    def __init__(self, app: ASGIApp, web: WebSettings) -> None:
        self.app = app
        self.web = web

    def user(self, scope: Scope) -> str | None:
        """The authenticated user, ``"anonymous"`` when allowed without credentials, else ``None``."""
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1").strip()
        if auth:
            scheme, _, value = auth.partition(" ")
            for check in CHECKS:
                if (user := check(self.web, scheme.lower(), value.strip())) is not None:
                    return user
            return None
        client = scope.get("client")
        host = client[0] if client else None
        if self.web.anonymous == "all" or (self.web.anonymous == "loopback" and is_loopback(host)):
            return "anonymous"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        user = self.user(scope)
        if user is None:
            client = scope.get("client")
            log.warning(
                "web: 401 for %s %s from %s",
                scope.get("method"),
                scope.get("path"),
                client[0] if client else "?",
            )
            challenges = [b'Basic realm="perfnode"'] if self.web.users else []
            if self.web.tokens:
                challenges.append(b'Bearer realm="perfnode"')
            body = (
                b"401 Unauthorized: credentials required (anonymous access is allowed from "
                + self.web.anonymous.encode()
                + b" only; see [web] in the README)\n"
            )
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ]
            headers += [(b"www-authenticate", c) for c in challenges or [b'Basic realm="perfnode"']]
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)
