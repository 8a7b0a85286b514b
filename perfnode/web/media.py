"""HTTP media types for DICOMweb (PS3.18 8.7): ``Accept`` negotiation and multipart/related bodies.

* :func:`parse_accept` turns an ``Accept`` header into :class:`MediaRange` objects, best first;
* :class:`Multipart` writes a ``multipart/related`` body part by part (RFC 2387), so a response
  can stream one instance, frame or bulk data item at a time.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from perfnode.web.errors import NotAcceptable

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
OCTET = "application/octet-stream"
EXPLICIT_LE = "1.2.840.10008.1.2.1"

#: Compressed pixel data transfer syntax → the single-frame media type of PS3.18 Table 8.7.3-2.
FRAME_MEDIA_TYPE = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}


@dataclass(frozen=True)
class MediaRange:
    """One element of an ``Accept`` header: ``type/subtype`` with its parameters and quality."""

    type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    def matches(self, media_type: str) -> bool:
        """Whether this range accepts ``media_type`` (``*/*``, ``major/*`` or exact)."""
        if self.type in ("*/*", "*"):
            return True
        major, _, minor = self.type.partition("/")
        t_major, _, t_minor = media_type.partition("/")
        return major == t_major and minor in ("*", t_minor)

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")


def _split(header: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes."""
    out, cur, quoted = [], [], False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [s.strip() for s in out if s.strip()]


def parse_media_type(text: str) -> MediaRange:
    parts = _split(text, ";")
    if not parts:
        return MediaRange("*/*")
    params: dict[str, str] = {}
    q = 1.0
    for p in parts[1:]:
        key, _, value = p.partition("=")
        key, value = key.strip().lower(), value.strip().strip('"')
        if key == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
        else:
            params[key] = value
    return MediaRange(parts[0].lower(), params, q)


def parse_accept(header: str | None) -> list[MediaRange]:
    """The ranges of an ``Accept`` header, highest quality first (``*/*`` when absent or empty)."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges = [parse_media_type(p) for p in _split(header, ",")]
    ranges = [r for r in ranges if r.q > 0]
    return sorted(ranges, key=lambda r: -r.q)  # stable: header order breaks ties


def multipart_payload_types(ranges: list[MediaRange], default: str) -> list[tuple[str, str | None]]:
    """The part types a client accepts in a ``multipart/related`` response, best first.

    Returns ``(type, transfer-syntax or None)`` pairs; ``*/*`` and ``multipart/related`` without a
    ``type`` parameter mean ``default`` (PS3.18 8.7.3.5).
    """
    out: list[tuple[str, str | None]] = []
    for r in ranges:
        if r.type == "multipart/related":
            out.append((r.params.get("type", default).lower(), r.transfer_syntax))
        elif r.type in ("*/*", "multipart/*", "*"):
            out.append((default, r.transfer_syntax))
    return out


def require_json(ranges: list[MediaRange]) -> None:
    """QIDO-RS and metadata answer ``application/dicom+json`` (or plain JSON); XML is not offered."""
    if not any(r.matches(DICOM_JSON) or r.type == "application/json" for r in ranges):
        raise NotAcceptable(
            f"this service answers {DICOM_JSON} only (PS3.18 8.7.4); the request accepts "
            + ", ".join(r.type for r in ranges)
        )


class Multipart:
    """A ``multipart/related`` body written part by part."""

    def __init__(self, part_type: str, boundary: str | None = None) -> None:
        self.boundary = boundary or secrets.token_hex(16)
        self.part_type = part_type

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="{self.part_type}"; boundary={self.boundary}'

    def part_head(self, content_type: str, location: str | None = None, length: int | None = None) -> bytes:
        head = f"--{self.boundary}\r\nContent-Type: {content_type}\r\n"
        if location:
            head += f"Content-Location: {location}\r\n"
        if length is not None:
            head += f"Content-Length: {length}\r\n"
        return (head + "\r\n").encode("ascii")

    PART_END = b"\r\n"

    def close(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode("ascii")
