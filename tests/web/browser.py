"""Headless Chromium for the web tests: the system browser (``/usr/bin/chromium``) driven by Playwright;
no browser is ever downloaded. Screenshots go to ``$PERFNODE_ARTIFACTS`` (default ``test-artifacts/``)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PERFNODE_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWER = ROOT / "perfnode" / "web" / "viewer"


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("chromium not installed (./run.sh test installs it)")
    return path


def ensure_viewer_built() -> None:
    """The viewer bundle, built as ./run.sh setup builds it (npm ci + esbuild) when it is missing."""
    if (VIEWER / "dist" / "viewer.js").is_file():
        return
    npm = shutil.which("npm")
    if not npm:
        pytest.skip("npm not installed (./run.sh setup installs Node.js and builds the viewer)")
    for cmd in (["ci", "--no-audit", "--no-fund"], ["run", "build"]):
        res = subprocess.run([npm, *cmd], cwd=VIEWER, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr


@contextmanager
def browser_page(width: int = 1400, height: int = 1800) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.errors = []  # type: ignore[attr-defined]
            page.on("pageerror", lambda e: page.errors.append(str(e)))
            yield page
        finally:
            browser.close()


def save_screenshot(page, name: str, selector: str | None = None) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    (page.locator(selector) if selector else page).screenshot(path=str(path))
    return path


def image_stats(png: bytes | Path) -> tuple[float, int]:
    """(standard deviation, number of distinct colours) of a screenshot: 0 and 1 for a blank one."""
    data = png.read_bytes() if isinstance(png, Path) else png
    arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).reshape(-1, 3)
    return float(arr.std()), len(np.unique(arr, axis=0))
