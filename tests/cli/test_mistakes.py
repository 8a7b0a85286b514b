"""Every plain mistake answers in one line naming what was wrong, from the outside: exit status 2 for a
wrong argument, 1 for a failure, never a traceback (unless ``--debug``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nodes import free_port


def perfnode(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfnode.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})})


def one_line(res: subprocess.CompletedProcess, status: int, *names: str) -> str:
    """The run failed with ``status``, said so in exactly one line on stderr naming each of ``names``,
    and printed no traceback."""
    err = res.stderr.strip()
    assert res.returncode == status, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and len(err.splitlines()) == 1, res.stderr
    for name in names:
        assert name in err, (name, err)
    return err


@pytest.fixture
def closed_port() -> int:
    return free_port()  # nothing listens there


UNKNOWN_HOST = "no-such-host.invalid"  # RFC 2606: never resolves


@pytest.mark.parametrize("argv", [
    ["echo", f"PACS@{UNKNOWN_HOST}:104"],
    ["find", f"PACS@{UNKNOWN_HOST}:104", "-k", "PatientID=1"],
    ["move", f"PACS@{UNKNOWN_HOST}:104", "--dest", "X", "-k", "StudyInstanceUID=1.2.3"],
    ["get", f"PACS@{UNKNOWN_HOST}:104", "-k", "StudyInstanceUID=1.2.3", "--out", "{tmp}/got"],
])
def test_unknown_host(argv, tmp_path):
    res = perfnode(*[a.format(tmp=tmp_path) for a in argv])
    one_line(res, 1, UNKNOWN_HOST)


def test_send_to_unknown_host(tmp_path):
    from tests.serve_helpers import mr_object

    f = mr_object(tmp_path / "one.dcm")
    one_line(perfnode("send", str(f), "--to", f"PACS@{UNKNOWN_HOST}:104", "--no-progress"), 1, UNKNOWN_HOST)


def test_nobody_listening(closed_port):
    one_line(perfnode("echo", f"PACS@127.0.0.1:{closed_port}"), 1, f"127.0.0.1:{closed_port}")


def test_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        port = s.getsockname()[1]
        res = perfnode("serve", "--port", str(port), "--data", str(tmp_path / "data"), timeout=60)
    one_line(res, 1, str(port))


@pytest.mark.parametrize("url, status, names", [
    ("foo://bar", 2, ["foo://bar"]),
    ("postgresql+psycopg://perfnode:secret@127.0.0.1:{port}/db", 1, ["127.0.0.1", "{port}"]),
    ("not a url", 2, ["not a url"]),
])
def test_bad_database_url(url, status, names, tmp_path, closed_port):
    url = url.format(port=closed_port)
    res = perfnode("serve", "--port", "0", "--data", str(tmp_path / "d"), "--database", url, timeout=60)
    err = one_line(res, status, *[n.format(port=closed_port) for n in names])
    assert "secret" not in err  # the password is never shown


@pytest.mark.parametrize("command", [["jobs"], ["check", "--series", "1.2.3"],
                                     ["report", "1.2.3", "--out", "x"]])
def test_a_folder_without_archive_is_refused_not_created(command, tmp_path):
    wrong = tmp_path / "wrong"
    one_line(perfnode(*command, "--data", str(wrong), cwd=tmp_path), 2, str(wrong))
    assert not wrong.exists()  # nothing created


def test_phantom_into_an_impossible_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    one_line(perfnode("phantom", "dsc", "--out", str(tmp_path / "file" / "sub")), 2, str(tmp_path / "file"))


def test_missing_argument_is_one_line():
    one_line(perfnode("echo"), 2, "perfnode echo", "--help")


def test_unknown_config_file(tmp_path):
    one_line(perfnode("echo", "X@127.0.0.1:1", "--config", str(tmp_path / "nope.toml")), 2, "nope.toml")


def test_debug_shows_the_traceback(tmp_path):
    res = perfnode("--debug", "serve", "--data", str(tmp_path / "d"), "--database", "foo://bar")
    assert res.returncode != 0 and "Traceback" in res.stderr and "BadIndexUrl" in res.stderr


def test_send_of_a_file_that_is_not_dicom(tmp_path, closed_port):
    f = tmp_path / "notes.dcm"
    f.write_text("not DICOM")
    one_line(perfnode("send", str(f), "--to", f"PACS@127.0.0.1:{closed_port}", "--no-progress"), 1, str(f))


@pytest.mark.parametrize("argv, status, names", [
    (["--port", "99999"], 2, ["port", "99999"]),
    (["--tls-port", "2762"], 2, ["--tls-cert"]),
    (["--tls-port", "0", "--tls-cert", "{tmp}/nope.crt", "--tls-key", "{tmp}/nope.key"], 2,
     ["{tmp}/nope.crt"]),
    (["--allow-unknown", "everything"], 2, ["everything"]),
])
def test_serve_option_mistakes_open_nothing(argv, status, names, tmp_path):
    data = tmp_path / "data"
    res = perfnode("serve", "--data", str(data), *[a.format(tmp=tmp_path) for a in argv], timeout=60)
    one_line(res, status, *[n.format(tmp=tmp_path) for n in names])
    assert not data.exists()  # refused before the archive was opened


def test_error_comments_fit_their_64_characters():
    from perfnode.net.status import status_dataset

    text = "calling AE 'A_LONG_AE_TITLE1' is not in the AE table: the report could not be delivered"
    assert str(status_dataset(0x0110, text).ErrorComment) == text[:64]  # LO: 64 characters at most


def test_commit_refusal_reads_whole(node_factory, tmp_path):
    """The node cannot send a report to an AE outside its AE table: the refusal says so in full."""
    from tests.serve_helpers import mr_object

    node = node_factory(extra_args=["--allow-unknown", "store,commit"])
    f = mr_object(tmp_path / "one.dcm")
    res = perfnode("commit", f"PERFNODE@127.0.0.1:{node.port}", str(f), "--ae-title", "SOME_MODALITY",
                   "--timeout", "5")
    assert res.returncode == 1
    assert "cannot report to AE 'SOME_MODALITY': not in the AE table\n" in res.stdout, res.stdout
