"""OHIF Viewer for the interoperability test: its published build (the ``@ohif/app`` package from the npm
registry, fetched once with ``npm pack`` into a cache folder), served as a single-page app with an
``app-config.js`` whose DICOMweb data source is the node under test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

OHIF_VERSION = "3.13.2"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "perfnode" / f"ohif-{OHIF_VERSION}"


def ohif_dist() -> Path:
    dist = CACHE / "package" / "dist"
    if (dist / "index.html").is_file():
        return dist
    npm = shutil.which("npm")
    if not npm:
        pytest.skip("npm not installed (./run.sh setup installs Node.js)")
    CACHE.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        [npm, "pack", f"@ohif/app@{OHIF_VERSION}", "--pack-destination", str(CACHE)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    tgz = CACHE / f"ohif-app-{OHIF_VERSION}.tgz"
    with tarfile.open(tgz) as tar:
        tar.extractall(CACHE, filter="data")
    tgz.unlink()
    return dist


def app_config(dicomweb: str) -> str:
    """OHIF's configuration with the node as its one DICOMweb data source (the README shows the same)."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "perfnode",
        "configuration": {
            "friendlyName": "perfnode",
            "name": "perfnode",
            "wadoUriRoot": dicomweb,
            "qidoRoot": dicomweb,
            "wadoRoot": dicomweb,
            "qidoSupportsIncludeField": True,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": False,
            "supportsWildcard": True,
            "staticWado": False,
            "singlepart": "bulkdata,video",
            "omitQuotationForMultipartRequest": True,
            "bulkDataURI": {"enabled": True},
        },
    }
    config = {
        "routerBasename": "/",
        "showStudyList": True,
        "extensions": [],
        "modes": [],
        "maxNumberOfWebWorkers": 1,
        "showCPUFallbackMessage": False,
        "showWarningMessageForCrossOrigin": False,
        "defaultDataSourceName": "perfnode",
        "dataSources": [source],
    }
    return "window.config = " + json.dumps(config, indent=1) + ";\n"


class OhifServer:
    """OHIF's files on a local port (index.html for every app route), app-config.js pointing at the node."""

    def __init__(self, dist: Path, dicomweb: str, port: int) -> None:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.responses import FileResponse, Response
        from starlette.routing import Route

        config = app_config(dicomweb)

        async def serve(request):
            rel = request.path_params.get("path", "")
            if rel == "app-config.js":
                return Response(config, media_type="application/javascript")
            target = (dist / rel).resolve()
            if rel and target.is_relative_to(dist.resolve()) and target.is_file():
                return FileResponse(target)
            return FileResponse(dist / "index.html")

        app = Starlette(routes=[Route("/{path:path}", serve)])
        self.port = port
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> OhifServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
