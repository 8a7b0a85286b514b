"""The one table of DIMSE status codes, and the exceptions that select them.

Code that finds a problem raises a :class:`DicomError` subclass with a message naming the
attribute (tag and keyword) and the rule; the network handlers turn it into a status with
:func:`status_for`. Codes are from PS3.4 (Annex B storage, C Q/R, J/GG storage commitment)
and PS3.7 Annex C.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

SUCCESS = 0x0000
# Storage (PS3.4 B.2.3)
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
# General (PS3.7 C)
SOP_CLASS_NOT_SUPPORTED = 0x0122
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119
INVALID_ATTRIBUTE_VALUE = 0x0106
MISSING_ATTRIBUTE = 0x0120
NO_SUCH_ACTION_TYPE = 0x0123
# Query/Retrieve (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4)
PENDING = 0xFF00
PENDING_OPTIONAL_KEYS_NOT_SUPPORTED = 0xFF01
CANCEL = 0xFE00
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
UNABLE_TO_PROCESS = 0xC000
MOVE_DESTINATION_UNKNOWN = 0xA801
SUB_OPERATIONS_COMPLETE_WITH_FAILURES = 0xB000


class DicomError(Exception):
    """A problem that maps to one DIMSE status; ``str(exc)`` is the Error Comment."""

    status: int = PROCESSING_FAILURE


class OutOfResources(DicomError):
    status = OUT_OF_RESOURCES


class DatasetMismatch(DicomError):
    """The dataset's SOP Class/Instance disagrees with the request (PS3.4 B.2.3 0xA900)."""

    status = DATASET_DOES_NOT_MATCH_SOP_CLASS


class CannotUnderstand(DicomError):
    """Unreadable dataset, or a required UID missing or invalid (PS3.4 B.2.3 0xCxxx)."""

    status = CANNOT_UNDERSTAND


class DuplicateConflict(DicomError):
    """Same SOP Instance UID, different bytes, and the policy forbids overwriting."""

    status = DUPLICATE_SOP_INSTANCE


def status_for(exc: BaseException) -> int:
    """The status code for an exception (anything unexpected is a processing failure)."""
    if isinstance(exc, DicomError):
        return exc.status
    if isinstance(exc, OSError):
        return OUT_OF_RESOURCES
    return PROCESSING_FAILURE


def status_dataset(status: int, comment: str = "") -> Dataset:
    """A status Dataset with an Error Comment (0000,0902), cut to the LO limit of 64 chars."""
    ds = Dataset()
    ds.Status = status
    if comment:
        ds.ErrorComment = comment[:64]
    return ds
