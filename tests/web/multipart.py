"""A strict reader of ``multipart/related`` responses (RFC 2046 5.1, RFC 2387, PS3.18 8.6.1.2), written
independently of the server's writer so that the tests validate the wire format."""

from __future__ import annotations

from dataclasses import dataclass

from perfnode.web.media import parse_media_type


@dataclass
class Part:
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return parse_media_type(self.headers.get("content-type", "")).type

    @property
    def params(self) -> dict[str, str]:
        return parse_media_type(self.headers.get("content-type", "")).params


def read_multipart(content_type: str, body: bytes, part_type: str) -> list[Part]:
    """Parts of a multipart/related body; asserts what PS3.18 requires of it."""
    mt = parse_media_type(content_type)
    assert mt.type == "multipart/related", content_type
    assert mt.params.get("type", "").lower() == part_type, f"type parameter: {content_type}"
    boundary = mt.params.get("boundary")
    assert boundary and 1 <= len(boundary) <= 70, f"boundary: {content_type}"
    dash = b"--" + boundary.encode()
    assert body.startswith(dash + b"\r\n"), body[:80]
    chunks = (b"\r\n" + body).split(b"\r\n" + dash)
    assert chunks[0] == b""
    assert chunks[-1] in (b"--", b"--\r\n"), f"close delimiter missing: {chunks[-1][:40]!r}"
    parts = []
    for chunk in chunks[1:-1]:
        assert chunk.startswith(b"\r\n")
        head, sep, data = chunk[2:].partition(b"\r\n\r\n")
        assert sep, "part without a blank line after its headers"
        headers = {}
        for line in head.decode("ascii").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            assert int(headers["content-length"]) == len(data)
        parts.append(Part(headers, data))
    for p in parts:
        assert p.content_type == part_type, p.headers
    return parts
