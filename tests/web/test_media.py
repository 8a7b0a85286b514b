"""Accept headers and multipart bodies (PS3.18 8.7), without a server."""

from __future__ import annotations

from perfnode.web.media import DICOM, Multipart, multipart_payload_types, parse_accept
from tests.web.multipart import read_multipart


def test_accept_parsing_quality_quotes_and_defaults():
    ranges = parse_accept(
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.80;q=0.5, '
        'multipart/related; type="application/dicom"; transfer-syntax=*, image/png;q=0'
    )
    assert [r.params.get("transfer-syntax") for r in ranges] == [
        "*",
        "1.2.840.10008.1.2.4.80",
    ]  # q order, q=0 gone
    assert multipart_payload_types(ranges, DICOM) == [(DICOM, "*"), (DICOM, "1.2.840.10008.1.2.4.80")]
    assert multipart_payload_types(parse_accept(None), DICOM) == [(DICOM, None)]  # no Accept: the default
    unquoted = parse_accept(
        "multipart/related; type=application/octet-stream; transfer-syntax=*"
    )  # as OHIF sends
    assert multipart_payload_types(unquoted, "x") == [("application/octet-stream", "*")]
    assert parse_accept('multipart/related; type="a,b"')[0].params["type"] == "a,b"  # a comma inside quotes


def test_multipart_writer_is_read_back_strictly():
    mp = Multipart(DICOM)
    body = (
        mp.part_head(f"{DICOM}; transfer-syntax=1.2.840.10008.1.2.1")
        + b"\r\n--not-a-boundary\r\n"
        + mp.PART_END
        + mp.part_head(DICOM, length=3)
        + b"abc"
        + mp.PART_END
        + mp.close()
    )
    parts = read_multipart(mp.content_type, body, DICOM)
    assert [p.body for p in parts] == [b"\r\n--not-a-boundary\r\n", b"abc"]
    assert parts[0].params["transfer-syntax"] == "1.2.840.10008.1.2.1"
