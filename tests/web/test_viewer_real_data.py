"""The viewer on real scanner objects (tests/data/real-data), stored by STOW-RS: a series of classic
single-frame images (GE, one image per slice and phase) and a series of one Enhanced MR instance per
time point (Siemens XA30) each open as one 4-D set with the slices and time points perfnode's own
assembler finds (``perfnode.dicom.frames.assemble``)."""

from __future__ import annotations

import pytest
import requests
from pydicom import dcmread

from perfnode.dicom.frames import assemble
from tests.real_data import series_files
from tests.web.browser import browser_page, ensure_viewer_built, image_stats, save_screenshot

pytestmark = pytest.mark.slow

SERIES = ("ge_epi_multiphase_classic", "siemens_xa30_bold_enh")


def stow(url: str, files) -> None:
    boundary = "realdataboundary"
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + f.read_bytes() + b"\r\n"
            for f in files
        )
        + f"--{boundary}--\r\n".encode()
    )
    r = requests.post(
        f"{url}/studies",
        data=body,
        timeout=120,
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'},
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("name", SERIES)
def test_real_series_open_as_one_4d_set(web_node, name):
    ensure_viewer_built()
    files = series_files(name)
    stow(web_node.dicomweb, files)
    head = dcmread(files[0], stop_before_pixels=True)
    nt, nz = assemble(files).data.shape[-4:-2]
    with browser_page() as page:
        page.goto(f"{web_node.url}/viewer/?study={head.StudyInstanceUID}&series={head.SeriesInstanceUID}")
        page.wait_for_function("window.perfnodeViewer.ready || window.perfnodeViewer.error", timeout=90_000)
        assert page.evaluate("window.perfnodeViewer.error || null") is None
        got = page.evaluate(
            "[window.perfnodeViewer.state.source.object.nz, window.perfnodeViewer.state.source.object.nt]"
        )
        assert got == [nz, nt]
        assert f"({nz} slice(s) × {nt} time point(s))" in page.locator("#perf-attributes").inner_text()
        std, colours = image_stats(page.locator("#stack-canvas").screenshot())
        assert std > 5 and colours > 5
        page.click("#stack-canvas", position={"x": 128, "y": 128})
        page.wait_for_function("document.querySelector('#curve-voxel').textContent.startsWith('voxel')")
        save_screenshot(page, f"viewer-real-{name}")
        assert not page.errors, page.errors
