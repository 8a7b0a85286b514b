"""docker-compose.yml and the Dockerfile, short of building the image.

No container engine (nor Docker Hub) is reachable here, so this runs what the image would run: the
Dockerfile's ENTRYPOINT + CMD with the compose service's environment, against a real PostgreSQL
server standing in for the ``db`` service, probed with the image's HEALTHCHECK command and stopped
with compose's stop signal within its grace period.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from sqlalchemy.engine import make_url

from tests.nodes import free_port, need, run, wait_for_port
from tests.serve_helpers import count_instances, mr_object

ROOT = Path(__file__).resolve().parents[1]


def dockerfile() -> dict[str, str]:
    """Instruction → argument (continuation lines joined; every RUN joined, else the last one)."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            word = word.upper()
            out[word] = f"{out[word]} && {rest}" if word == "RUN" and word in out else rest.strip()
    return out


def test_compose_and_dockerfile_agree():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    node, db = compose["services"]["perfnode"], compose["services"]["db"]
    image = dockerfile()
    assert node["build"] == "." and node["depends_on"]["db"]["condition"] == "service_healthy"
    url = make_url(node["environment"]["PERFNODE_DATABASE"])
    assert url.drivername == "postgresql+psycopg" and url.host == "db"
    assert (url.username, url.password, url.database) == (
        db["environment"]["POSTGRES_USER"], db["environment"]["POSTGRES_PASSWORD"],
        db["environment"]["POSTGRES_DB"])
    assert node["ports"] == [f"{image['EXPOSE']}:{image['EXPOSE']}"]
    assert node["environment"]["PERFNODE_DATA"] in image["VOLUME"]
    assert f"{node['environment']['PERFNODE_DATA']}" in {v.split(":")[1] for v in node["volumes"]}
    assert json.loads(image["ENTRYPOINT"]) == ["perfnode"] and json.loads(image["CMD"]) == ["serve"]
    assert "dcmtk" in image["RUN"].split()  # the HEALTHCHECK's echoscu
    assert '".[postgres]"' in image["RUN"]  # the psycopg driver of PERFNODE_DATABASE
    assert node["stop_signal"] == "SIGTERM"


def test_the_image_command_with_the_compose_environment(pg_url, tmp_path):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["perfnode"]
    image = dockerfile()
    port = free_port()  # the image listens on EXPOSE (11112); a free port here, set the same way
    env = {**os.environ, **{k: str(v) for k, v in service["environment"].items()},
           "PERFNODE_DATA": str(tmp_path / "data"), "PERFNODE_DATABASE": pg_url, "PERFNODE_PORT": str(port)}
    assert make_url(pg_url).drivername == make_url(service["environment"]["PERFNODE_DATABASE"]).drivername
    entrypoint, cmd = json.loads(image["ENTRYPOINT"]), json.loads(image["CMD"])
    argv = [sys.executable, "-m", entrypoint[0], *entrypoint[1:], *cmd]  # the console script's module
    with open(tmp_path / "node.log", "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=90, proc=proc)
        health = shlex.split(image["HEALTHCHECK"].split(" CMD ", 1)[1].split("||")[0])
        assert health[0] == "echoscu" and health[-1] == image["EXPOSE"]
        res = run([need("echoscu"), *health[1:-1], str(port)])
        assert res.returncode == 0, res.stderr
        sent = mr_object(tmp_path / "one.dcm")
        res = run([need("storescu"), "-aec", service["environment"]["PERFNODE_AE_TITLE"], "127.0.0.1",
                   str(port), str(sent)])
        assert res.returncode == 0, res.stderr
        assert count_instances(pg_url) == 1  # indexed in the PostgreSQL database of the URL
        assert list((tmp_path / "data" / "objects").rglob("*.dcm"))  # under PERFNODE_DATA
    finally:
        proc.send_signal(signal.SIGTERM)  # compose's stop_signal
        code = proc.wait(timeout=float(service["stop_grace_period"].rstrip("s")))
    assert code == 0, (tmp_path / "node.log").read_text()[-2000:]
