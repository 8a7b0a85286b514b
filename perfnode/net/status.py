"""The one table of DIMSE status codes, and which problem selects which.

Code that finds a problem raises a :mod:`perfnode.errors` exception with a message naming the
attribute (tag and keyword) and the rule; the network handlers turn it into a status with
:func:`status_for` (table :data:`STATUS_FOR_ERROR`). Codes are from PS3.4 (Annex B storage,
C Q/R, J/GG storage commitment) and PS3.7 Annex C.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from perfnode.errors import (
    CannotUnderstand,
    DatasetMismatch,
    DicomError,
    DuplicateConflict,
    OutOfResources,
    SopClassNotSupported,
)

__all__ = ["CannotUnderstand", "DatasetMismatch", "DicomError", "DuplicateConflict", "OutOfResources",
           "SopClassNotSupported",
           "STATUS_FOR_ERROR", "status_dataset", "status_for"]

SUCCESS = 0x0000
# Storage (PS3.4 B.2.3)
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
#: Warning: stored, but the dataset does not conform to its SOP class (validation findings).
STORED_DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xB007
# General (PS3.7 C)
SOP_CLASS_NOT_SUPPORTED = 0x0122
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119
INVALID_ATTRIBUTE_VALUE = 0x0106
MISSING_ATTRIBUTE = 0x0120
NO_SUCH_ACTION_TYPE = 0x0123
NO_SUCH_EVENT_TYPE = 0x0113
INVALID_ARGUMENT_VALUE = 0x0115
# Query/Retrieve (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4)
PENDING = 0xFF00
PENDING_OPTIONAL_KEYS_NOT_SUPPORTED = 0xFF01
CANCEL = 0xFE00
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
UNABLE_TO_PROCESS = 0xC000
MOVE_DESTINATION_UNKNOWN = 0xA801
SUB_OPERATIONS_COMPLETE_WITH_FAILURES = 0xB000


#: The one table: which status each kind of problem becomes (first match along the class hierarchy).
STATUS_FOR_ERROR: dict[type[BaseException], int] = {
    OutOfResources: OUT_OF_RESOURCES,
    DatasetMismatch: DATASET_DOES_NOT_MATCH_SOP_CLASS,
    CannotUnderstand: CANNOT_UNDERSTAND,
    DuplicateConflict: DUPLICATE_SOP_INSTANCE,
    SopClassNotSupported: SOP_CLASS_NOT_SUPPORTED,
    DicomError: PROCESSING_FAILURE,
    OSError: OUT_OF_RESOURCES,
}


def status_for(exc: BaseException) -> int:
    """The status code for an exception (anything unexpected is a processing failure)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_FOR_ERROR:
            return STATUS_FOR_ERROR[cls]
    return PROCESSING_FAILURE


def status_dataset(status: int, comment: str = "", offending: list[int] | None = None) -> Dataset:
    """A status Dataset with an Error Comment (0000,0902), cut to the LO limit of 64 chars, and the
    Offending Element(s) (0000,0901) when given."""
    ds = Dataset()
    ds.Status = status
    if offending:
        ds.OffendingElement = offending
    if comment:
        ds.ErrorComment = " ".join(comment.split())[:64]
    return ds
