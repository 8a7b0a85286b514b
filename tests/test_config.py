"""Typed settings: every table validated at start, refusals in one line naming file, table and key;
``perfnode config --show`` says where each value came from."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from perfnode.config import ConfigError, PipelineSettings, Settings, load_settings
from tests.nodes import perfnode

PEER = '[peers.PACS]\nhost = "127.0.0.1"\nport = 104\n'


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "perfnode.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(("text", "where", "why"), [
    ('[pipeline]\nworkers = "two"\n', "[pipeline] workers", "integer"),
    ('[pipeline]\nenabled = "false"\n', "[pipeline] enabled", "boolean"),  # a string is not false
    ('[piepline]\nenabled = false\n', "[piepline]", "unknown table"),
    ('[pipeline]\nenabeld = false\n', "[pipeline] enabeld", "unknown setting"),
    ('[node]\nport = "104"\n', "[node] port", "integer"),
    ('[node]\nprot = 104\n', "[node] prot", "unknown setting"),
    ('[node]\nduplicate_policy = "keep"\n', "[node] duplicate_policy", "'reject' or 'replace'"),
    ('[commitment]\nsame_association = 1\n', "[commitment] same_association", "boolean"),
    ('[qc]\nprotocol = "site"\n', "[qc] protocol", "unknown setting"),
    ('[peers.PACS]\nhost = "h"\n', "[peers.PACS] port", "missing"),
    ('[peers.PACS]\nhost = "h"\nport = 104\nsecure = "yes"\n', "[peers.PACS] secure", "unknown setting"),
    ('[peers.PACS]\nhost = "h"\nport = 104\ntls = "yes"\n', "[peers.PACS] tls", "expected a valid boolean"),
    ('[peers.PACS]\nhost = "h"\nport = 104\nallow = ["delete"]\n', "[peers.PACS] allow", "'store'"),
    ('[access]\nunknown = ["everything"]\n', "[access] unknown", "'store'"),
    ('[[pipeline.rules]]\nprotocol = "*"\n', "[[pipeline.rules]] #1 technique", "missing"),
    ('[pipeline]\ndestinations = ["NOWHERE"]\n', "[pipeline] destination 'NOWHERE'", "not in the AE table"),
    ('[pipeline]\nworkers = 0\n', "[pipeline] workers", "greater than or equal to 1"),
    ('[pipeline]\non_quality_failure = "send"\n', "[pipeline] on_quality_failure", "'send_flagged'"),
])
def test_bad_settings_are_refused_naming_file_table_and_key(tmp_path, text, where, why):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg and where in msg and why in msg, msg


def test_a_bad_file_stops_serve_in_one_line(tmp_path):
    path = write(tmp_path, '[pipeline]\nworkers = "two"\n')
    cmd = perfnode("serve", "--config", str(path), "--data", str(tmp_path / "d"), "--port", "0")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"perfnode serve: config file {path}: [pipeline] workers: expected a valid integer, got 'two'"]
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_every_table_is_typed(tmp_path):
    path = write(tmp_path, PEER + '[pipeline]\nworkers = 2\nstable_s = 5\ndestinations = ["PACS"]\n'
                 'enabled = false\n[pipeline.destinations_by_ae]\nMR3T = ["PACS"]\n'
                 '[[pipeline.rules]]\nprotocol = "*perf*"\ntechnique = "dsc"\n'
                 '[commitment]\nsame_association = true\nretry_base_s = 1\n[qc]\nprotocols = "site"\n')
    s = load_settings(path)
    assert s.pipeline == PipelineSettings(workers=2, stable_s=5.0, destinations=("PACS",), enabled=False,
                                          destinations_by_ae={"MR3T": ("PACS",)},
                                          rules=({"protocol": "*perf*", "technique": "dsc"},))
    assert s.pipeline.enabled is False and s.pipeline.rules[0].calling_ae == "*"
    assert s.commitment.same_association is True and s.commitment.retry_base_s == 1.0
    assert s.qc.protocols == Path("site")
    assert s.peer("PACS").port == 104


def test_environment_is_read_leniently_and_named_when_wrong(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFNODE_PIPELINE__WORKERS", "3")
    monkeypatch.setenv("PERFNODE_PIPELINE__ENABLED", "false")
    monkeypatch.setenv("PERFNODE_PIPELINE__DESTINATIONS", "PACS")
    monkeypatch.setenv("PERFNODE_REQUIRE_KNOWN_PEERS", "yes")
    s = load_settings(write(tmp_path, PEER))
    assert (s.pipeline.workers, s.pipeline.enabled, s.pipeline.destinations) == (3, False, ("PACS",))
    assert s.require_known_peers is True
    monkeypatch.setenv("PERFNODE_MAX_ASSOCIATIONS", "many")
    with pytest.raises(ConfigError, match=r"PERFNODE_MAX_ASSOCIATIONS='many': expected a valid integer"):
        load_settings()


def test_precedence_and_sources(tmp_path, monkeypatch):
    path = write(tmp_path, PEER + '[node]\nport = 11113\nae_title = "FILE"\nmax_associations = 4\n'
                 '[pipeline]\nworkers = 2\n')
    monkeypatch.setenv("PERFNODE_MAX_ASSOCIATIONS", "8")
    monkeypatch.setenv("PERFNODE_PIPELINE__STABLE_S", "3")
    s = load_settings(path, port=104, peers=["CT1=10.0.0.5:104"])
    assert (s.port, s.ae_title, s.max_associations, s.pipeline.workers, s.pipeline.stable_s) == (
        104, "FILE", 8, 2, 3.0)
    src = s.sources()
    assert src["node.port"] == "command line"
    assert src["node.ae_title"] == f"file {path}"
    assert src["node.max_associations"] == "env PERFNODE_MAX_ASSOCIATIONS"
    assert src["pipeline.stable_s"] == "env PERFNODE_PIPELINE__STABLE_S"
    assert src["pipeline.workers"] == f"file {path}"
    assert src["pipeline.colour"] == src["node.host"] == "default"
    assert src["peers.PACS"] == f"file {path}" and src["peers.CT1"] == "command line"


def test_config_show_prints_effective_settings_with_sources(tmp_path):
    path = write(tmp_path, PEER + '[pipeline]\nworkers = 2\ndestinations = ["PACS"]\n')
    res = subprocess.run(perfnode("config", "--show", "--config", str(path), "--port", "104"),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "[node]" in lines and "[peers.PACS]" in lines and "[pipeline]" in lines and "[qc]" in lines
    assert any(ln.startswith("port = 104 ") and ln.endswith("# command line") for ln in lines)
    assert any(ln.startswith("workers = 2 ") and ln.endswith(f"# file {path}") for ln in lines)
    assert any(ln.startswith("colour = false ") and ln.endswith("# default") for ln in lines)
    js = json.loads(subprocess.run(perfnode("config", "--json", "--config", str(path)), capture_output=True,
                                   text=True, timeout=120, check=True).stdout)
    assert js["pipeline"]["destinations"] == {"value": ["PACS"], "source": f"file {path}"}
    assert js["node"]["port"] == {"value": 11112, "source": "default"}


def test_every_key_has_a_type_and_a_default():
    """Adding a key is one line on a section model: each has an annotation; only peers' need values."""
    for model in (Settings, PipelineSettings):
        for name, field in model.model_fields.items():
            assert field.annotation is not None, name
            assert not field.is_required(), name


def test_container_environment(tmp_path, monkeypatch):
    """What compose passes: the file by PERFNODE_CONFIG, peers by PERFNODE_PEERS, ${X:-} as unset."""
    monkeypatch.setenv("PERFNODE_CONFIG", str(write(tmp_path, '[node]\nae_title = "BOXED"\n')))
    monkeypatch.setenv("PERFNODE_PEERS", "PACS=pacs.example.org:104  VIEWER@10.0.0.7:11112")
    monkeypatch.setenv("PERFNODE_PORT", "")
    monkeypatch.setenv("PERFNODE_PIPELINE__WORKERS", "")
    s = load_settings()
    assert s.ae_title == "BOXED" and s.port == 11112 and s.pipeline.workers == 1
    assert s.peer("VIEWER").host == "10.0.0.7" and s.peer("PACS").port == 104
    assert s.sources()["peers.PACS"] == "env PERFNODE_PEERS"
    monkeypatch.setenv("PERFNODE_PEERS", "PACS:104")
    with pytest.raises(ConfigError, match="PERFNODE_PEERS: peer 'PACS:104'"):
        load_settings()
