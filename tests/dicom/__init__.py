"""Tests of perfnode/dicom: PERF checks, concatenations, 4-D assembly, findings in the index."""

from __future__ import annotations


def sample(name: str) -> str:
    """Path of one of pydicom's real sample files (package pydicom-data, a test dependency)."""
    import warnings

    from pydicom.data import get_testdata_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(f"{name}: not in pydicom-data (pip install -e '.[test]' installs it)")
    return str(path)
