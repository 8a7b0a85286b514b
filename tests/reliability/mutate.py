"""Broken objects on purpose: the corruptions issue 17 found acknowledged as stored, and random ones.

Each mutation takes a valid Part 10 file's bytes and returns new bytes (a whole Part 10 file, whose
File Meta Information still says what the sender will claim on the wire). :func:`oracle` judges a
stored file independently of perfnode's validator: DCMTK ``dcmdump`` must parse it without error
and pydicom must decode its pixels.
"""

from __future__ import annotations

import io
import random
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, generate_uid

MR = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


def conformant_mr(rows: int = 32, columns: int = 32, frames: int = 1, seed: int = 0,
                  study: str | None = None, series: str | None = None) -> Dataset:
    """A small MR Image with every Type 1 attribute of its IOD (so a clean one draws no finding)."""
    rng = np.random.default_rng(seed)
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = MR, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study or generate_uid(), series or generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Mutant^Test", "MUT-1", "", "O"
    ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName, ds.StudyID = "20260101", "120000", "", "1"
    ds.AccessionNumber, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "", "MR", 1, 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "NONE", ""
    ds.MRAcquisitionType, ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength = "2D", 30, 1500, 1
    ds.SliceThickness = 5.0
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = rng.integers(0, 4096, (frames, rows, columns), dtype=np.uint16).tobytes()
    return ds


def part10(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """Encode ``ds`` as a Part 10 file in ``transfer_syntax`` (RLE compresses the pixels)."""
    ds = Dataset(ds)  # shallow copy: the meta and encoding below are this copy's
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if transfer_syntax == RLELossless:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(RLELossless, encoding_plugin="pydicom")
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def with_sequence(ds: Dataset) -> Dataset:
    """``ds`` with an undefined-length sequence before the pixels (pydicom writes them so)."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "113691", "DCM", "IHE Perfusion"
    ds.ProcedureCodeSequence = Sequence([item, Dataset(item)])
    ds["ProcedureCodeSequence"].is_undefined_length = True
    for it in ds.ProcedureCodeSequence:
        it.is_undefined_length_sequence_item = True
    return ds


def split(data: bytes) -> tuple[bytes, bytes, str]:
    """(File Meta Information incl. preamble, dataset bytes, transfer syntax UID) of a Part 10 file."""
    group_length = struct.unpack_from("<I", data, 140)[0]
    cut = 144 + group_length
    meta = pydicom.dcmread(io.BytesIO(data[:cut] + b""), stop_before_pixels=True, force=True).file_meta
    return data[:cut], data[cut:], str(meta.TransferSyntaxUID)


def relabel(data: bytes, transfer_syntax: str) -> bytes:
    """The same dataset bytes under File Meta Information naming another transfer syntax."""
    head, body, _ = split(data)
    meta = pydicom.dcmread(io.BytesIO(head), force=True).file_meta
    meta.TransferSyntaxUID = transfer_syntax
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    return out.getvalue() + body


def _pixel_element(body: bytes) -> int:
    i = body.rfind(b"\xe0\x7f\x10\x00")
    assert i >= 0, "no Pixel Data"
    return i


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    """Cut the file inside its Pixel Data: the element declares more bytes than follow."""
    head, body, _ = split(data)
    start = _pixel_element(body)
    return head + body[: start + 12 + int((len(body) - start - 12) * keep)]


def short_pixels(data: bytes) -> bytes:
    """Pixel Data with a consistent length field but half the bytes Rows × Columns × bits need."""
    head, body, _ = split(data)
    start = _pixel_element(body)
    value = body[start + 12:]
    half = value[: len(value) // 4 * 2]
    return head + body[:start + 8] + struct.pack("<I", len(half)) + half


def unterminated_sequence(data: bytes) -> bytes:
    """Drop the Sequence Delimitation Item of the first undefined-length sequence."""
    head, body, _ = split(data)
    i = body.find(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    assert i >= 0, "no undefined-length sequence"
    return head + body[:i] + body[i + 8:]


def without(data: bytes, keyword: str) -> bytes:
    """The object re-encoded without one attribute (native transfer syntaxes)."""
    _, _, ts = split(data)
    ds = pydicom.dcmread(io.BytesIO(data))
    del ds[keyword]
    return part10(ds, ts)


def fragments_cut(data: bytes) -> bytes:
    """Encapsulated Pixel Data whose last fragment runs past the end of the file."""
    head, body, _ = split(data)
    return head + body[: len(body) - 20]


def fragments_unterminated(data: bytes) -> bytes:
    head, body, _ = split(data)
    assert body.endswith(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    return head + body[:-8]


#: name → (how the object is made, how it is broken, the start of the status comment perfnode gives)
TARGETED: dict[str, tuple[Callable[[], bytes], Callable[[bytes], bytes], str]] = {
    "pixel data cut short": (lambda: part10(conformant_mr()), truncated,
                             "unreadable: (7FE0,0010) PixelData: value of"),
    "pixel data shorter than declared": (lambda: part10(conformant_mr()), short_pixels,
                                         "unreadable: (7FE0,0010) PixelData: 1024 bytes, but"),
    "explicit labelled implicit": (lambda: part10(conformant_mr()),
                                   lambda d: relabel(d, ImplicitVRLittleEndian),
                                   "unreadable: (0008,0008) ImageType: value of"),
    "implicit labelled explicit": (lambda: part10(conformant_mr(), ImplicitVRLittleEndian),
                                   lambda d: relabel(d, ExplicitVRLittleEndian),
                                   "unreadable: (0008,0008) ImageType: no valid VR"),
    "unterminated sequence": (lambda: part10(with_sequence(conformant_mr())), unterminated_sequence,
                              "unreadable: (0008,1032) ProcedureCodeSequence: (0010,0010) at"),
    "no Rows": (lambda: part10(conformant_mr()), lambda d: without(d, "Rows"),
                "unreadable: (0028,0010) Rows: missing or zero"),
    "no Columns": (lambda: part10(conformant_mr()), lambda d: without(d, "Columns"),
                   "unreadable: (0028,0011) Columns: missing or zero"),
    "RLE fragment cut short": (lambda: part10(conformant_mr(), RLELossless), fragments_cut,
                               "unreadable: (7FE0,0010) PixelData: encapsulated Pixel Data"),
    "RLE fragments unterminated": (lambda: part10(conformant_mr(), RLELossless), fragments_unterminated,
                                   "unreadable: (7FE0,0010) PixelData: encapsulated Pixel Data not "
                                   "terminated"),
}


def random_mutation(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One random corruption of the dataset bytes (the File Meta Information is kept)."""
    head, body, ts = split(data)
    b = bytearray(body)
    kind = rng.choice(["flip", "byte", "cut", "insert", "delete", "length", "relabel", "swap"])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "byte":
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.choice([0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    elif kind == "cut":
        b = b[: rng.randrange(len(b))]
    elif kind == "insert":
        i = rng.randrange(len(b))
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == "delete":
        i = rng.randrange(len(b))
        del b[i: i + rng.randint(1, 16)]
    elif kind == "length":  # overwrite what may be a length field with a hostile value
        i = rng.randrange(max(1, min(len(b), 400) - 4))
        b[i:i + 4] = struct.pack("<I", rng.choice([0xFFFFFFFF, 0, 1, 0x7FFFFFFF, rng.randrange(1 << 20)]))
    elif kind == "relabel":
        implicit = str(ImplicitVRLittleEndian)
        other = implicit if ts != implicit else str(ExplicitVRLittleEndian)
        return kind, relabel(head + bytes(b), other)
    else:  # swap two chunks
        i, j = sorted(rng.randrange(len(b)) for _ in range(2))
        n = rng.randint(1, 32)
        b[i:i + n], b[j:j + n] = b[j:j + n], b[i:i + n]
    return kind, head + bytes(b)


def oracle(path: Path) -> str | None:
    """``None`` when the file is whole by outside judges, else what is wrong with it.

    DCMTK ``dcmdump`` must read it without error, and pydicom must read every element and decode
    the pixels to an array of the declared shape.
    """
    dcmdump = shutil.which("dcmdump")
    if dcmdump:
        res = subprocess.run([dcmdump, "-q", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             timeout=60)
        if res.returncode != 0:
            return f"dcmdump exit {res.returncode}: {res.stderr.decode(errors='replace').strip()[:200]}"
    try:
        ds = pydicom.dcmread(path)
        for elem in ds.iterall():
            _ = elem.value
        if "PixelData" in ds:
            arr = ds.pixel_array
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            expected = (ds.Rows, ds.Columns) if frames == 1 else (frames, ds.Rows, ds.Columns)
            if tuple(arr.shape[: len(expected)]) != tuple(expected):
                return f"pydicom: pixel array {arr.shape}, expected {expected}"
    except Exception as exc:  # noqa: BLE001 - any failure is the verdict
        return f"pydicom: {type(exc).__name__}: {exc}"[:200]
    return None
