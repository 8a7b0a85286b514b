"""Reading what WADO-RS sends from a stored file: Part 10 bytes (as stored or re-encoded), the header as
DICOM JSON with bulk data URIs, single frames, bulk data values. pydicom does the parsing; pixel data
is never read whole unless it has to be re-encoded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread, dcmwrite
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels import pack_bits, pixel_array
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from perfnode.web.errors import BadRequest, NotAcceptable, NotFound

PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float
_BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN", "OB or OW", "US or OW"}
#: Binary values larger than this are sent as a BulkDataURI in metadata (PS3.18 F.2.6).
BULK_THRESHOLD = 1024


def read_header(path: Path) -> Dataset:
    """The whole data set with large values left in the file (read when asked for)."""
    return dcmread(path, defer_size=BULK_THRESHOLD)


def _raw(ds: Dataset, tag: int) -> Any:
    return ds.get_item(tag) if tag in ds else None


def _length(elem: Any) -> int:
    if isinstance(elem, RawDataElement):
        return int(elem.length) if elem.length != 0xFFFFFFFF else 1 << 31
    value = getattr(elem, "value", None)
    return len(value) if isinstance(value, bytes | bytearray) else 0


def metadata_json(path: Path, instance_url: str) -> dict[str, Any]:
    """The instance's data set as DICOM JSON; large top-level binaries (pixel data included) as
    ``BulkDataURI`` ``{instance_url}/bulkdata/{tag}`` (PS3.18 F.2.6)."""
    ds = read_header(path)
    bulk: dict[str, dict[str, str]] = {}
    for tag in list(ds.keys()):
        elem = ds.get_item(tag)
        vr = str(elem.VR) if elem.VR else ""
        if (int(tag) in PIXEL_TAGS or vr in _BINARY_VRS) and _length(elem) > BULK_THRESHOLD:
            key = f"{int(tag):08X}"
            bulk[key] = {
                "vr": vr if vr in _BINARY_VRS - {"OB or OW", "US or OW"} else "OW",
                "BulkDataURI": f"{instance_url}/bulkdata/{key}",
            }
            del ds[tag]
    out = ds.to_json_dict(bulk_data_threshold=1 << 30)
    out.update(bulk)
    return dict(sorted(out.items()))


# -- Part 10 bytes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """An instance ready to send: either the stored file as is (``path``) or re-encoded ``data``."""

    transfer_syntax: str
    path: Path | None = None
    data: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size  # type: ignore[union-attr]


def _transcoder() -> Any:
    try:
        from perfnode.dicom import transcode  # interop's reusable transcoding (issue 15)
    except ImportError:  # pragma: no cover - until it lands: uncompressed little endian only
        return None
    return transcode


def producible(stored_ts: str) -> list[str]:
    """Transfer syntaxes an object stored in ``stored_ts`` can be sent in, stored one first."""
    tc = _transcoder()
    if tc is not None:
        return [str(t) for t in tc.producible(stored_ts)]
    return list(dict.fromkeys([stored_ts, ExplicitVRLittleEndian, ImplicitVRLittleEndian]))


def choose_syntax(stored_ts: str, wanted: list[str | None]) -> str | None:
    """The first wanted syntax we can produce (``None``/``*`` = as stored); ``None`` when none."""
    can = producible(stored_ts)
    for ts in wanted:
        if ts is None or ts == "*":
            return stored_ts
        if ts in can:
            return ts
    return None


def encode(path: Path, stored_ts: str, target_ts: str) -> Encoded:
    """The instance in ``target_ts``: the stored file when it matches, else re-encoded in memory."""
    if target_ts == stored_ts:
        return Encoded(stored_ts, path=path)
    ds = dcmread(path)
    tc = _transcoder()
    try:
        if tc is not None:
            tc.transcode(ds, target_ts)
        else:  # pragma: no cover - fallback until perfnode.dicom.transcode lands
            if UID(stored_ts).is_compressed:
                ds.decompress(generate_instance_uid=False)
            ds.file_meta.TransferSyntaxUID = target_ts
    except Exception as exc:  # noqa: BLE001 - a decoder or encoder refused this object
        raise NotAcceptable(
            f"cannot re-encode {UID(stored_ts).name} as {UID(target_ts).name}: {exc}"
        ) from exc
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return Encoded(target_ts, data=buf.getvalue())


# -- frames and bulk data --------------------------------------------------------------------


def number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def parse_frame_list(text: str, n_frames: int) -> list[int]:
    """``"1,3,5"`` → 0-based indices; every number must be a frame of the instance (PS3.18 10.4.1.1.6)."""
    try:
        numbers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadRequest(
            f"frame list {text!r}: comma-separated frame numbers expected (PS3.18 8.3.3.1)"
        ) from None
    if not numbers:
        raise BadRequest("empty frame list (PS3.18 8.3.3.1)")
    bad = [n for n in numbers if not 1 <= n <= n_frames]
    if bad:
        raise NotFound(f"frame(s) {bad} not in this instance: (0028,0008) NumberOfFrames is {n_frames}")
    return [n - 1 for n in numbers]


def frame_native(path: Path, ds: Dataset, index: int) -> bytes:
    """One frame, decoded, as little-endian native bytes (1-bit data packed again)."""
    arr = pixel_array(path, index=index, raw=True)
    if int(ds.get("BitsAllocated", 8) or 8) == 1:
        return pack_bits(arr)
    return np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def frame_encapsulated(path: Path, ds: Dataset, index: int) -> bytes:
    """One frame of encapsulated (compressed) pixel data, as stored."""
    from pydicom.encaps import get_frame

    elem = ds.get_item(0x7FE00010)
    if isinstance(elem, RawDataElement) and elem.value is None and elem.value_tell is not None:
        with open(path, "rb") as fp:
            fp.seek(elem.value_tell)
            return get_frame(fp, index, number_of_frames=number_of_frames(ds))
    return get_frame(ds.PixelData, index, number_of_frames=number_of_frames(ds))


def bulk_value(ds: Dataset, path_text: str) -> bytes:
    """The value of a binary attribute by ``tag`` or ``tag/item/tag…`` (item numbers from 0)."""
    parts = [p for p in path_text.split("/") if p]
    node: Any = ds
    try:
        for i, part in enumerate(parts):
            if i % 2 == 0:
                tag = Tag(int(part, 16))
                elem = node[tag]
                node = elem.value
            else:
                node = node[int(part)]
    except (ValueError, KeyError, IndexError, TypeError):
        raise NotFound(f"bulk data {path_text!r}: no such attribute in this instance") from None
    if int(Tag(int(parts[-1], 16))) in PIXEL_TAGS and len(parts) == 1:
        return bytes(node) if isinstance(node, bytes | bytearray) else b""
    if not isinstance(node, bytes | bytearray):
        raise NotFound(f"bulk data {path_text!r}: not a binary attribute")
    return bytes(node)
