"""perfnode: a DICOM-native PACS node for CT/MR perfusion imaging."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("perfnode")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.1.0"

SOFTWARE_NAME = "perfnode"
#: UID root for the objects perfnode creates (pydicom's root, open to its users).
UID_ROOT = "1.2.826.0.1.3680043.8.498."
IMPLEMENTATION_VERSION_NAME = "PERFNODE_010"
