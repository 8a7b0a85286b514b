"""OHIF Viewer (the published ``@ohif/app`` build) with the node as its DICOMweb data source, in headless
Chromium: the study list shows the phantom study, the study opens, the Parametric Map series is listed and
fetched, and the maps are shown (as the pipeline's colour renderings: see the README on OHIF 3.13's
Parametric Map overlay, which does not take maps of multi-frame or dynamic sources)."""

from __future__ import annotations

import re
import time

import pytest
import requests
from pydicom import dcmread

from perfnode.phantoms import make
from tests.nodes import free_port, need, run
from tests.web.browser import browser_page, image_stats, save_screenshot
from tests.web.conftest import start_web_node, wait_for
from tests.web.ohif import OhifServer, ohif_dist

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    dist = ohif_dist()
    ohif_port = free_port()
    wn = start_web_node(
        tmp_path_factory.mktemp("ohif"),
        f"""
[pipeline]
stable_s = 2
colour = true

[web]
cors_origins = ["http://127.0.0.1:{ohif_port}"]
""",
    )
    try:
        _, files = make("dsc", "concat", tmp_path_factory.mktemp("dsc"), snr=30, seed=11)
        res = run(
            [need("storescu"), "-aec", "PERFNODE", "127.0.0.1", str(wn.node.port), *map(str, files)],
            timeout=120,
        )
        assert res.returncode == 0, res.stderr
        head = dcmread(files[0], stop_before_pixels=True)

        def done():
            jobs = requests.get(
                f"{wn.url}/viewer/api/jobs", params={"series": head.SeriesInstanceUID}, timeout=30
            ).json()
            return jobs if jobs and jobs[0]["state"] in ("done", "failed", "held") else None

        # the maps are archived whether sent ("done") or held by the quality gate (noisy phantom)
        assert wait_for(done, 240, "the maps")[0]["state"] in ("done", "held")
        with OhifServer(dist, wn.dicomweb, ohif_port) as ohif:
            yield wn, ohif, head
    finally:
        wn.node.stop()


def _dismiss(page) -> None:
    for text in ("Skip all", "Confirm and hide"):
        button = page.get_by_text(text, exact=True)
        if button.count() and button.first.is_visible():
            button.first.click()


def test_ohif_lists_and_opens_the_study_and_its_maps(setup):
    wn, ohif, head = setup
    with browser_page() as page:
        dicomweb: list[tuple[int, str]] = []
        page.on("response", lambda r: dicomweb.append((r.status, r.url)) if "/dicom-web/" in r.url else None)
        page.goto(f"http://127.0.0.1:{ohif.port}/")
        row = page.get_by_text(str(head.AccessionNumber), exact=True)
        row.wait_for(timeout=90_000)  # the study list, from QIDO-RS
        assert page.get_by_text(str(head.StudyDescription)).count() >= 1
        save_screenshot(page, "ohif-study-list")

        page.goto(f"http://127.0.0.1:{ohif.port}/viewer?StudyInstanceUIDs={head.StudyInstanceUID}")
        maps_entry = page.get_by_text("perfnode DSC maps")
        maps_entry.wait_for(timeout=90_000)  # the Parametric Map series, in OHIF's study browser
        time.sleep(2)
        _dismiss(page)
        save_screenshot(page, "ohif-viewer")
        colour = page.get_by_text(re.compile(r"^rCBF\b.*colour")).first  # the rCBF colour rendering
        colour.wait_for(timeout=60_000)
        colour.dblclick()
        viewport = page.locator(".cornerstone-viewport-element canvas, [data-viewport-uid] canvas").first
        viewport.wait_for(timeout=60_000)

        def coloured():
            std, colours = image_stats(viewport.screenshot())
            return colours > 50 and std > 10

        wait_for(coloured, 60, "the rCBF map in OHIF's viewport")
        save_screenshot(page, "ohif-rcbf-map")
        # everything OHIF asked of the node was answered (no 4xx/5xx), the map series included
        assert dicomweb and all(status < 400 for status, _ in dicomweb), [d for d in dicomweb if d[0] >= 400]
        assert any("/frames/" in url for _, url in dicomweb)
