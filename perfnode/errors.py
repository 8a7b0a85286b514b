"""Problems found where they happen (archive, DICOM reading), with a message naming the attribute
(tag and keyword) and the rule. Which DIMSE status each one becomes is decided in one table,
:mod:`perfnode.net.status`; nothing here knows about the network.
"""

from __future__ import annotations


class DicomError(Exception):
    """A problem with a DICOM object or request; ``str(exc)`` is what the peer is told."""


class OutOfResources(DicomError):
    """The object could not be written (disk full, I/O error)."""


class DatasetMismatch(DicomError):
    """The dataset's SOP Class/Instance disagrees with the request."""


class CannotUnderstand(DicomError):
    """Unreadable dataset, or a required UID missing or invalid."""


class SopClassNotSupported(DicomError):
    """The object's SOP Class is not one the node stores (STOW-RS; C-STORE refuses it at negotiation)."""


class DuplicateConflict(DicomError):
    """Same SOP Instance UID, different bytes, and the policy forbids overwriting."""


# Storage Commitment Failure Reason values (PS3.4 J.3.2.1.1, also DIMSE statuses of PS3.7 C)
PROCESSING_FAILURE = 0x0110
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119


class CommandError(Exception):
    """A command could not do what it was asked; ``str(exc)`` is the one line its user sees
    (``perfnode`` exits with :attr:`exit_status`)."""

    exit_status = 1


class UsageError(CommandError):
    """A wrong argument: a path, URL, host or key that cannot be right (exit status 2)."""

    exit_status = 2


class IndexUnavailable(CommandError):
    """The index database cannot be reached or opened (the message names it, without password)."""


class BadIndexUrl(UsageError):
    """The index database URL is malformed or names an unknown database kind."""


class NoArchive(UsageError):
    """A command that reads an archive was pointed at a folder or database that holds none."""
