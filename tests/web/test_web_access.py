"""Who may use the web port, TLS, and how ``perfnode serve`` reports a web port it cannot open."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys

import pytest
import requests

from tests.nodes import free_port, run
from tests.web.conftest import start_web_node


@pytest.fixture(scope="module")
def locked_node(tmp_path_factory):
    """Anonymous access off even on loopback; one token, one Basic user."""
    digest = hashlib.sha256(b"correct horse").hexdigest()
    wn = start_web_node(
        tmp_path_factory.mktemp("locked"),
        f"""
[web]
anonymous = "none"
tokens = ["t0ken-for-tests-0123456789"]

[web.users]
alice = "sha256:{digest}"
""",
    )
    yield wn
    wn.node.stop()


def test_credentials_required_when_anonymous_is_off(locked_node):
    url = f"{locked_node.dicomweb}/studies"
    r = requests.get(url, timeout=30)
    assert r.status_code == 401
    assert {c.split()[0] for c in r.headers["WWW-Authenticate"].split(", ")} <= {"Basic", "Bearer"}
    assert "anonymous access" in r.text
    assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
    assert requests.get(url, auth=("alice", "wrong"), timeout=30).status_code == 401
    assert (
        requests.get(
            url, headers={"Authorization": "Bearer t0ken-for-tests-0123456789"}, timeout=30
        ).status_code
        == 200
    )
    assert requests.get(url, auth=("alice", "correct horse"), timeout=30).status_code == 200
    # STOW-RS is behind the same gate
    r = requests.post(url, data=b"", headers={"Content-Type": "multipart/related; boundary=x"}, timeout=30)
    assert r.status_code == 401


def test_loopback_is_anonymous_by_default(web_node):
    assert requests.get(f"{web_node.dicomweb}/studies", timeout=30).status_code == 200


def test_access_rules_by_client_address():
    """The decision itself, for addresses a loopback-only test machine cannot connect from."""
    from perfnode.config import WebSettings
    from perfnode.web.access import AccessControl

    ac = AccessControl(app=None, web=WebSettings())
    assert ac.user({"client": ("127.0.0.1", 1), "headers": []}) == "anonymous"
    assert ac.user({"client": ("::1", 1), "headers": []}) == "anonymous"
    assert ac.user({"client": ("192.0.2.7", 1), "headers": []}) is None  # not loopback: credentials
    assert AccessControl(None, WebSettings(anonymous="all")).user({"client": ("192.0.2.7", 1), "headers": []})


def test_web_port_in_use_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run(
            [
                sys.executable,
                "-m",
                "perfnode.cli",
                "serve",
                "--port",
                str(free_port()),
                "--host",
                "127.0.0.1",
                "--data",
                str(tmp_path / "d"),
                "--web-port",
                str(port),
            ],
            timeout=120,
        )
    assert res.returncode == 2
    assert f"web port 127.0.0.1:{port}: address in use" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_web_settings_are_one_line(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[web]\nanonymous = "sometimes"\n')
    res = run(
        [
            sys.executable,
            "-m",
            "perfnode.cli",
            "serve",
            "--config",
            str(cfg),
            "--data",
            str(tmp_path / "d"),
            "--web-port",
            "0",
        ],
        timeout=120,
    )
    assert (
        res.returncode == 2 and "[web] anonymous: expected 'loopback', 'all' or 'none', got 'sometimes'"
        in res.stderr and "Traceback" not in res.stderr
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_https_when_a_certificate_is_configured(tmp_path):
    key, cert = tmp_path / "web.key", tmp_path / "web.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    wn = start_web_node(tmp_path / "tls", f'[web]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    try:
        r = requests.get(f"https://127.0.0.1:{wn.web_port}/dicom-web/studies", verify=str(cert), timeout=30)
        assert r.status_code == 200 and r.json() == []
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{wn.web_port}/dicom-web/studies", timeout=10)
    finally:
        wn.node.stop()
