"""The container deployment, built and run for real (slow, opt-in: marked ``docker``, which the default
run deselects; ``./run.sh docker-test`` installs Docker, starts its daemon and runs ``pytest -m docker``).

Air-gapped: ``deploy/airgap/prepare.sh`` builds the base images from Debian packages (debootstrap →
``docker import``, PostgreSQL from Debian's package) and the wheelhouse; ``docker-compose`` with
``docker-compose.airgap.yml`` builds the node's image from them without any registry and runs node +
PostgreSQL; a phantom DSC series is sent in by DCMTK ``storescu`` and its Parametric Maps come back to a
DCMTK ``storescp`` on this machine, given to the node as a peer and destination by environment variables.
Online: the same Dockerfile with its online step (Python and DCMTK from Debian's mirror) on the debootstrap
image standing in for Docker Hub's ``debian:bookworm-slim`` (the packages from PyPI cannot be fetched
inside a build container here: see the test).

The figures (image sizes, build and start-up times) are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.nodes import free_port, need, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.docker,
    pytest.mark.timeout(3600),
]


def sh(cmd: list[str], timeout: float = 1800, env: dict[str, str] | None = None,
       check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                         env={**os.environ, **(env or {})})
    if check and res.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} → {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def image_mb(tag: str) -> float:
    return int(sh(["docker", "image", "inspect", "--format", "{{.Size}}", tag]).stdout.strip()) / 1e6


@pytest.fixture(scope="module")
def docker() -> None:
    for tool in ("docker", "docker-compose", "debootstrap"):
        assert shutil.which(tool), f"{tool} not installed (./run.sh docker-test installs it)"
    info = sh(["docker", "info"], check=False, timeout=60)
    assert info.returncode == 0, f"no Docker daemon: {info.stderr.strip()[-500:]}"


@pytest.fixture(scope="module")
def prepared(docker) -> dict[str, float]:
    """deploy/airgap/prepare.sh: base images and wheelhouse (kept between runs; it skips what exists)."""
    t0 = time.monotonic()
    sh([str(ROOT / "deploy/airgap/prepare.sh")], timeout=3000)
    return {"prepare_s": time.monotonic() - t0}


def test_airgapped_compose_receives_a_series_and_sends_its_maps(prepared, tmp_path):
    storescp, storescu, echoscu = need("storescp"), need("storescu"), need("echoscu")
    project = f"perfnode-test-{uuid.uuid4().hex[:8]}"
    dicom_port, maps_port = free_port(), free_port()
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/db_password").write_text(uuid.uuid4().hex + "\n")
    (tmp_path / "perfnode.toml").write_text("[pipeline]\nstable_s = 5\n")
    # test only: let the node reach this machine's DCMTK storescp (the "PACS") as host.docker.internal
    (tmp_path / "override.yml").write_text(
        "services:\n  perfnode:\n    extra_hosts:\n      - \"host.docker.internal:host-gateway\"\n")
    env = {"COMPOSE_PROJECT_NAME": project, "PERFNODE_DICOM_PORT": str(dicom_port),
           "PERFNODE_DB_PASSWORD_FILE": str(tmp_path / "secrets/db_password"),
           "PERFNODE_CONFIG_FILE": str(tmp_path / "perfnode.toml"),
           "PERFNODE_PEERS": f"MAPS=host.docker.internal:{maps_port}", "PERFNODE_DESTINATIONS": "MAPS"}
    compose = ["docker-compose", "-f", "docker-compose.yml", "-f", "docker-compose.airgap.yml",
               "-f", str(tmp_path / "override.yml")]
    maps_dir = tmp_path / "maps"
    maps_dir.mkdir()
    receiver = subprocess.Popen([storescp, "-aet", "MAPS", "-od", str(maps_dir), str(maps_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    figures = dict(prepared)
    try:
        t0 = time.monotonic()
        sh([*compose, "build"], env=env, timeout=3000)
        figures["build_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        sh([*compose, "up", "-d"], env=env, timeout=600)
        wait_for_port(dicom_port, timeout=300)
        deadline = time.monotonic() + 300
        while sh([echoscu, "-aec", "PERFNODE", "127.0.0.1", str(dicom_port)], check=False).returncode != 0:
            assert time.monotonic() < deadline, sh([*compose, "logs"], env=env, check=False).stdout[-4000:]
            time.sleep(1)
        figures["start_to_echo_s"] = time.monotonic() - t0
        container = sh([*compose, "ps", "-q", "perfnode"], env=env).stdout.strip()
        deadline = time.monotonic() + 120  # the image's HEALTHCHECK (first run after its start period)
        while (health := sh(["docker", "inspect", "--format", "{{.State.Health.Status}}", container]
                            ).stdout.strip()) != "healthy":
            assert health == "starting" and time.monotonic() < deadline, health
            time.sleep(2)
        figures["start_to_healthy_s"] = time.monotonic() - t0

        series = tmp_path / "dsc"
        sh([sys.executable, "-m", "perfnode.cli", "phantom", "dsc", "--shape", "concat", "--out", str(series),
            "--snr", "100"])
        sent = sorted(series.rglob("*.dcm"))
        assert sent
        sh([storescu, "-aec", "PERFNODE", "+sd", "+r", "+sp", "*.dcm", "127.0.0.1", str(dicom_port),
            str(series)])
        source_series = str(dcmread(sent[0], stop_before_pixels=True).SeriesInstanceUID)

        t0 = time.monotonic()
        deadline = time.monotonic() + 900
        maps: list = []
        while time.monotonic() < deadline:
            maps = [dcmread(f, stop_before_pixels=True) for f in maps_dir.iterdir() if f.is_file()]
            if len([m for m in maps if m.SOPClassUID == PARAMETRIC_MAP]) >= 4:
                time.sleep(5)  # the rest of the maps of the job
                maps = [dcmread(f, stop_before_pixels=True) for f in maps_dir.iterdir() if f.is_file()]
                break
            time.sleep(2)
        figures["series_to_maps_s"] = time.monotonic() - t0
        pms = [m for m in maps if m.SOPClassUID == PARAMETRIC_MAP]
        assert len(pms) >= 4, sh([*compose, "logs", "perfnode"], env=env, check=False).stdout[-4000:]
        quantities = set()
        for m in pms:
            refs = {str(r.SeriesInstanceUID) for r in m.ReferencedSeriesSequence}
            assert source_series in refs  # maps of the series we sent
            quantities.add(str(m.DerivationDescription).split()[0] if "DerivationDescription" in m else "")
        # the index is the PostgreSQL container's: the series and the maps are rows there
        count = sh([*compose, "exec", "-T", "db", "psql", "-U", "perfnode", "-d", "perfnode", "-tAc",
                    "select count(*) from instances"], env=env).stdout.strip()
        assert int(count) >= len(sent) + len(pms)
        figures["node_image_mb"] = image_mb("perfnode/perfnode:latest")
        figures["postgres_image_mb"] = image_mb("perfnode/postgres:15-bookworm")
        figures["node_base_image_mb"] = image_mb("perfnode/node-base:bookworm")
        figures["maps_received"] = len(pms)
        print("\ncompose (air-gapped) figures:", json.dumps({k: round(v, 1) for k, v in figures.items()}))
    finally:
        sh([*compose, "down", "-v", "--remove-orphans"], env=env, check=False, timeout=300)
        receiver.terminate()
        receiver.wait(10)


def test_online_dockerfile_steps(prepared):
    """The Dockerfile's online steps on a bare Debian image (the debootstrap one, in place of Docker Hub's
    debian:bookworm-slim, which no registry here serves): Python, venv and DCMTK installed by apt-get from
    Debian's mirror during the build. The Python packages come from the wheelhouse: pip inside a build
    container cannot reach PyPI here (this network re-signs TLS with a CA the image does not trust)."""
    tag = f"perfnode/perfnode-online-test:{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    try:
        out = sh(["docker", "build", "--no-cache", "--build-arg", "BASE_IMAGE=perfnode/debian:bookworm",
                  "--build-arg", "PIP_OPTIONS=--no-index --find-links /wheels", "-t", tag, "."], timeout=3000)
        assert "apt-get update" in out.stdout  # the online step ran: the bare image had no Python
        build_s = time.monotonic() - t0
        out = sh(["docker", "run", "--rm", tag, "--version"]).stdout
        assert out.startswith("perfnode ")
        echo = sh(["docker", "run", "--rm", "--entrypoint", "echoscu", tag, "--version"]).stdout
        assert "dcmtk" in echo  # the health check's echoscu is DCMTK's, not pynetdicom's look-alike
        print(f"\nonline Dockerfile (apt-get from the Debian mirror): built in {build_s:.0f} s, "
              f"image {image_mb(tag):.0f} MB")
    finally:
        sh(["docker", "image", "rm", "-f", tag], check=False)
