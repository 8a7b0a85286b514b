"""Send a stored object in a transfer syntax the peer accepts: as stored when it can, else re-encoded.

Used wherever perfnode sends objects (C-MOVE and C-GET sub-operations, ``perfnode send``, pipeline
delivery, DICOMweb): :func:`choose` picks the syntax, :func:`transcode` re-encodes a dataset in place,
:func:`for_peer` does both or raises :class:`NoAcceptableSyntax` naming what was stored, what the
peer accepted and what perfnode can produce.

* Stored syntax accepted: the object goes out unchanged.
* Compressed (JPEG, JPEG-LS, JPEG 2000, RLE): decoded with pydicom's pixel handlers (pylibjpeg,
  openjpeg, pyjpegls, RLE), then written uncompressed or re-encoded losslessly (RLE, JPEG-LS lossless,
  JPEG 2000 lossless). A lossy source keeps (0028,2110) Lossy Image Compression ``01``.
* Explicit VR Big Endian: byte-swapped to little endian (pixel data by Bits Allocated, OW/OF/OL/OD/OV
  values by their word size); a plain re-encoding by pydicom would keep big-endian pixel bytes.
* Deflated Explicit VR Little Endian: inflated when read; deflated again when it is the target.

The SOP Instance UID never changes: every re-encoding is lossless with respect to the stored pixels.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from perfnode.errors import DicomError

__all__ = ["NoAcceptableSyntax", "TranscodeError", "candidates", "choose", "for_peer", "producible",
           "transcode"]

#: Uncompressed little-endian syntaxes perfnode writes itself (pynetdicom encodes, deflates).
NATIVE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)
#: Lossless encodings perfnode can produce from decoded pixels, in order of preference.
LOSSLESS_ENCODINGS = (JPEGLSLossless, JPEG2000Lossless, RLELossless)
#: Syntaxes whose pixel data lost information when they were made (PS3.5 8.2).
LOSSY = {JPEGBaseline8Bit, JPEGExtended12Bit, JPEG2000, JPEGLSNearLossless}
#: Value representations holding binary words, with their size in bytes (byte-swapped from big endian).
_WORD_VR = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


class TranscodeError(DicomError):
    """The object cannot be re-encoded (no decoder, corrupt pixel data, encoder refused it)."""


class NoAcceptableSyntax(DicomError):
    """No transfer syntax the peer accepted can carry this object; the message names them all."""


def _name(ts: str) -> str:
    return UID(ts).name


@cache
def _can_encode(ts: str) -> bool:
    from pydicom.pixels.encoders.base import get_encoder  # what pydicom.pixels re-exports

    try:
        return bool(get_encoder(ts).is_available)
    except (NotImplementedError, ValueError, KeyError):
        return False


def has_pixels(ds: Dataset) -> bool:
    return "PixelData" in ds


def producible(ds_or_ts: Dataset | str, has_pixel_data: bool = True) -> list[UID]:
    """Transfer syntaxes an object stored as ``ts`` can be sent in, stored syntax first."""
    if isinstance(ds_or_ts, Dataset):
        ts = UID(str(ds_or_ts.file_meta.TransferSyntaxUID))
        has_pixel_data = has_pixels(ds_or_ts)
    else:
        ts = UID(ds_or_ts)
    out = [ts, *NATIVE]
    if has_pixel_data:
        out += [t for t in LOSSLESS_ENCODINGS if _can_encode(t)]
    return list(dict.fromkeys(out))


def candidates(stored: str, accepted: Iterable[str], has_pixel_data: bool = True) -> list[UID]:
    """The accepted syntaxes this object could go out in, best first (stored one, then uncompressed)."""
    ok = {str(t) for t in accepted}
    return [t for t in producible(stored, has_pixel_data) if t in ok]


def choose(stored: str, accepted: Iterable[str], has_pixel_data: bool = True) -> UID | None:
    """The syntax to send an object stored as ``stored`` in, or ``None`` when none fits."""
    found = candidates(stored, accepted, has_pixel_data)
    return found[0] if found else None


def no_acceptable(stored: str, accepted: Iterable[str], sop_class: str = "",
                  has_pixel_data: bool = True, why: str = "") -> NoAcceptableSyntax:
    acc = sorted({str(t) for t in accepted})
    what = f" for {UID(sop_class).name}" if sop_class else ""
    offered = ", ".join(_name(t) for t in producible(stored, has_pixel_data))
    msg = (f"stored as {_name(stored)}; the peer accepted {', '.join(map(_name, acc)) or 'nothing'}{what}; "
           f"perfnode can send it as {offered}")
    return NoAcceptableSyntax(msg + (f" ({why})" if why else ""))


def _swap(data: bytes, width: int) -> bytes:
    if width <= 1 or not data:
        return data
    n = len(data) // width * width
    swapped = np.frombuffer(data[:n], dtype=f">u{width}").astype(f"<u{width}").tobytes()
    return swapped + data[n:]


def _little_endian_values(ds: Dataset) -> None:
    """Byte-swap the binary word values of a dataset read as big endian (recursively)."""
    for elem in ds:  # iterating converts raw elements with the dataset's (big-endian) encoding
        if elem.VR == "SQ":
            for item in elem.value:
                _little_endian_values(item)
        elif elem.VR in _WORD_VR and isinstance(elem.value, bytes | bytearray) and elem.tag != 0x7FE00010:
            elem.value = _swap(bytes(elem.value), _WORD_VR[elem.VR])


def _convert_all(ds: Dataset) -> None:
    for elem in ds:  # Dataset.__iter__ replaces each raw element by its converted value
        if elem.VR == "SQ":
            for item in elem.value:
                _convert_all(item)


def _to_little_endian(ds: Dataset) -> None:
    """An uncompressed big-endian dataset, made little endian in place."""
    _little_endian_values(ds)
    if "PixelData" in ds:
        elem = ds["PixelData"]
        bits = int(ds.get("BitsAllocated", 16) or 16)
        width = bits // 8 if bits > 8 else (2 if elem.VR == "OW" else 1)
        elem.value = _swap(bytes(elem.value), width)
        if bits <= 8:
            elem.VR = "OB"


def _mark_lossy(ds: Dataset, source: UID) -> None:
    ds.LossyImageCompression = "01"
    methods = {JPEGBaseline8Bit: "ISO_10918_1", JPEGExtended12Bit: "ISO_10918_1", JPEG2000: "ISO_15444_1",
               JPEGLSNearLossless: "ISO_14495_1"}
    if "LossyImageCompressionMethod" not in ds and source in methods:
        ds.LossyImageCompressionMethod = methods[source]


def transcode(ds: Dataset, target: str) -> Dataset:
    """Re-encode ``ds`` (read from a stored file) for ``target`` in place; returns ``ds``.

    Raises :class:`TranscodeError` when the pixel data cannot be decoded or encoded.
    """
    source = UID(str(ds.file_meta.TransferSyntaxUID))
    target = UID(target)
    if source == target:
        return ds
    if target not in producible(source, has_pixels(ds)):
        raise TranscodeError(f"perfnode cannot write {_name(target)} (from {_name(source)})")
    try:
        if source.is_compressed:
            ds.decompress(generate_instance_uid=False)  # → Explicit VR Little Endian
            if source in LOSSY:
                _mark_lossy(ds, source)
        elif not source.is_little_endian:
            _to_little_endian(ds)
        if target.is_compressed:
            ds.compress(target, generate_instance_uid=False)
        else:
            ds.file_meta.TransferSyntaxUID = target
        _convert_all(ds)  # values, not raw bytes of the old encoding, are written from now on
        ds.set_original_encoding(target.is_implicit_VR, True, ds.original_character_set)
    except TranscodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoder/encoder errors come in many types
        raise TranscodeError(f"cannot re-encode {_name(source)} as {_name(target)}: "
                             f"{type(exc).__name__}: {exc}") from exc
    return ds


def for_peer(ds: Dataset, accepted: Iterable[str]) -> Dataset:
    """``ds`` in the best syntax the peer accepted for its SOP class (re-encoded if needed).

    Tries each possible syntax in turn (an encoder may refuse a particular image, e.g. JPEG-LS and
    32-bit pixels); raises :class:`NoAcceptableSyntax` naming stored, accepted and producible syntaxes.
    """
    accepted = {str(t) for t in accepted}
    stored = UID(str(ds.file_meta.TransferSyntaxUID))
    reasons: list[str] = []
    for ts in candidates(stored, accepted, has_pixels(ds)):
        if ts == stored:
            return ds
        try:
            return transcode(ds, ts)
        except TranscodeError as exc:
            reasons.append(str(exc))
    raise no_acceptable(stored, accepted, str(ds.get("SOPClassUID", "")), has_pixels(ds), "; ".join(reasons))
