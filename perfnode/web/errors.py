"""HTTP errors of the DICOMweb services: each carries its status code and a message that names the
attribute (tag and keyword) or the PS3.18 rule, returned to the client as ``text/plain``."""

from __future__ import annotations


class WebError(Exception):
    status = 400

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class BadRequest(WebError):
    status = 400


class Unauthorized(WebError):
    status = 401


class Forbidden(WebError):
    status = 403


class NotFound(WebError):
    status = 404


class NotAcceptable(WebError):
    status = 406


class Conflict(WebError):
    status = 409


class PayloadTooLarge(WebError):
    status = 413


class UnsupportedMediaType(WebError):
    status = 415


class Unavailable(WebError):
    status = 503
