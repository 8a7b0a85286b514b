"""docker-compose.yml and the Dockerfile, checked without a container engine (fast; in every run).

The images are built and run for real by ``tests/deploy/test_compose.py`` (opt-in, slow). Here: compose
and the Dockerfile agree (ports, volumes, secrets, the database URL and its password file), the build
context keeps out what it must (``.dockerignore``), and the image's command runs with the compose
service's environment (as compose substitutes it) against a real PostgreSQL server standing in for the
``db`` service, reading the mounted config file and the password from a secret file, probed with the
image's HEALTHCHECK command and stopped with compose's stop signal within its grace period.
"""

from __future__ import annotations

import json
import os
import re
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


def substitute(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR}`` substitution."""
    def one(m: re.Match) -> str:
        return env.get(m.group(1)) or (m.group(3) or "")
    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", one, value)


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_and_dockerfile_agree():
    doc = compose()
    node, db = doc["services"]["perfnode"], doc["services"]["db"]
    image = dockerfile()
    env = node["environment"]
    assert node["build"] == "." and node["depends_on"]["db"]["condition"] == "service_healthy"
    url = make_url(env["PERFNODE_DATABASE"])
    assert url.drivername == "postgresql+psycopg" and url.host == "db"
    assert (url.username, url.database) == (db["environment"]["POSTGRES_USER"],
                                            db["environment"]["POSTGRES_DB"])
    # the password is a secret both read from a file, never in the compose file
    assert url.password is None and "POSTGRES_PASSWORD" not in db["environment"]
    assert env["PERFNODE_DATABASE_PASSWORD_FILE"] == db["environment"]["POSTGRES_PASSWORD_FILE"] \
        == "/run/secrets/db_password"
    assert node["secrets"] == db["secrets"] == ["db_password"] and "db_password" in doc["secrets"]
    assert "password" not in json.dumps(doc).lower().replace("password_file", "").replace("db_password", "")
    assert [substitute(p, {}) for p in node["ports"]] == [f"11112:{image['EXPOSE']}"]
    assert env["PERFNODE_DATA"] in image["VOLUME"]
    mounts = {substitute(v, {}).split(":")[1]: substitute(v, {}).split(":")[0] for v in node["volumes"]}
    assert env["PERFNODE_DATA"] in mounts and env["PERFNODE_CONFIG"] in mounts
    assert (ROOT / mounts[env["PERFNODE_CONFIG"]]).is_file()  # the default config file exists
    # peers and destinations come in by environment variables
    assert substitute(env["PERFNODE_PEERS"], {"PERFNODE_PEERS": "A=h:1"}) == "A=h:1"
    assert substitute(env["PERFNODE_PIPELINE__DESTINATIONS"], {"PERFNODE_DESTINATIONS": "A"}) == "A"
    assert json.loads(image["ENTRYPOINT"]) == ["perfnode"] and json.loads(image["CMD"]) == ["serve"]
    assert "dcmtk" in image["RUN"].split()  # the HEALTHCHECK's echoscu
    assert '"/src[postgres]"' in image["RUN"]  # the psycopg driver of PERFNODE_DATABASE
    assert node["stop_signal"] == "SIGTERM"
    airgap = yaml.safe_load((ROOT / "docker-compose.airgap.yml").read_text())["services"]
    pip_options = airgap["perfnode"]["build"]["args"]["PIP_OPTIONS"].split()
    assert pip_options == ["--no-index", "--find-links", "/wheels"]
    assert airgap["db"]["image"].startswith("perfnode/postgres:")


def test_the_build_context_holds_only_what_the_image_needs():
    """``.dockerignore``: everything out but pyproject, README, the package and the wheelhouse."""
    rules = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert rules[0] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "perfnode", "deploy/wheelhouse"}
    image = dockerfile()
    text = (ROOT / "Dockerfile").read_text()
    copied = {c.rstrip("/") for c in re.findall(r"COPY (?!--from)(\S+)", text)}
    assert copied <= allowed | {"pyproject.toml"}, copied
    assert "COPY --from=build /opt/perfnode /opt/perfnode" in text
    assert "/wheels" not in image["COPY"]  # the wheelhouse stays in the build stage


def test_the_image_command_with_the_compose_environment(pg_url, tmp_path):
    service = compose()["services"]["perfnode"]
    image = dockerfile()
    port = free_port()  # the image listens on EXPOSE (11112); a free port here, set the same way
    secret = tmp_path / "db_password"
    secret.write_text("not-needed-by-the-test-server\n")
    config = tmp_path / "perfnode.toml"
    config.write_text((ROOT / "deploy/perfnode.toml").read_text() + '\n[peers.MAPS]\nhost = "127.0.0.1"\n'
                      'port = 104\n')
    shell = {"PERFNODE_PEERS": "PACS=127.0.0.1:11113", "PERFNODE_DESTINATIONS": "PACS"}
    env = {**os.environ, **{k: substitute(str(v), shell) for k, v in service["environment"].items()},
           "PERFNODE_DATA": str(tmp_path / "data"), "PERFNODE_PORT": str(port),
           "PERFNODE_CONFIG": str(config), "PERFNODE_DATABASE_PASSWORD_FILE": str(secret)}
    env["PERFNODE_DATABASE"] = pg_url  # the test server's URL, standing in for db:5432
    assert make_url(pg_url).drivername == make_url(service["environment"]["PERFNODE_DATABASE"]).drivername
    entrypoint, cmd = json.loads(image["ENTRYPOINT"]), json.loads(image["CMD"])
    shown = subprocess.run([sys.executable, "-m", entrypoint[0], "config", "--json"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)
    assert set(settings) >= {"peers.PACS", "peers.MAPS"}  # the environment's peers and the file's
    assert settings["pipeline"]["destinations"]["value"] == ["PACS"]
    argv = [sys.executable, "-m", entrypoint[0], *entrypoint[1:], *cmd]  # the console script's module
    with open(tmp_path / "node.log", "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=90, proc=proc)
        health = image["HEALTHCHECK"].split(" CMD ", 1)[1]
        assert health.startswith("echoscu ") and health.split("||")[0].split()[-1] == image["EXPOSE"]
        probe = health.replace(f" {image['EXPOSE']} ", f" {port} ")
        res = subprocess.run(["sh", "-c", probe], env={**env, "PATH": os.environ["PATH"]},
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        sent = mr_object(tmp_path / "one.dcm")
        res = run([need("storescu"), "-aec", env["PERFNODE_AE_TITLE"], "127.0.0.1", str(port), str(sent)])
        assert res.returncode == 0, res.stderr
        assert count_instances(pg_url) == 1  # indexed in the PostgreSQL database of the URL
        assert list((tmp_path / "data" / "objects").rglob("*.dcm"))  # under PERFNODE_DATA
    finally:
        proc.send_signal(signal.SIGTERM)  # compose's stop_signal
        code = proc.wait(timeout=float(service["stop_grace_period"].rstrip("s")))
    assert code == 0, (tmp_path / "node.log").read_text()[-2000:]
