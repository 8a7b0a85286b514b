"""The technique registry: every registered technique is wired all through; a new one needs one module and
one registry line (here: one ``register`` call in the test) and flows through detection, the pipeline's
analysis, ``perfnode maps`` and the report without any other file knowing it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from perfnode import techniques
from perfnode.cli import main
from perfnode.dicom.codes import find as find_quantity
from perfnode.dicom.parametric_map import map_values
from perfnode.perfusion.base import FitResult
from perfnode.phantoms import TECHNIQUES as PHANTOMS
from perfnode.phantoms import make
from perfnode.pipeline.analysis import AnalysisRequest, analyse, run_analysis
from perfnode.pipeline.technique import choose
from perfnode.qc.rules import load_protocols
from perfnode.qc.series import read_headers
from perfnode.techniques import Detection, RegistryError, Technique, TechniqueModel, detect_series


def _study(technique: str, folder: Path, **kw) -> tuple[list[str], list[str]]:
    """A phantom study: the files of its analysed series (series01) and of the whole study."""
    make(technique, "single", folder, **kw)
    analysed = sorted(str(p) for p in (folder / "series01").iterdir())
    return analysed, sorted(str(p) for p in folder.rglob("*.dcm"))


@pytest.mark.parametrize("name", techniques.names())
def test_every_registered_technique_is_wired_through(tmp_path, name):
    """Detection, analysis, codes, QC protocol, report and phantom, for each registry entry."""
    t = techniques.get(name)
    # phantom: `perfnode phantom NAME` makes its reference object
    assert t.phantom in PHANTOMS
    files, study = _study(t.phantom, tmp_path / "phantom", seed=3)
    # detection: the one detector recognises it from the series' headers
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    decision = detect_series(headers)
    assert decision.technique == name, decision
    assert decision.stated and not decision.ambiguous
    # QC: its protocol is shipped
    assert t.qc_protocol in load_protocols()
    # analysis, codes, report: the pipeline's analysis writes its maps, each with its code
    result = run_analysis(AnalysisRequest(files=files, out_dir=str(tmp_path / "out"), uid_seed="wiring",
                                          companions=study))
    assert result.technique == name
    sent = {map_values(pydicom.dcmread(p))[0].key for p in result.files}
    assert sent and sent <= set(t.maps)
    page = Path(result.report).read_text()
    assert f"{name.upper()} series" in page
    qc = json.loads((tmp_path / "out" / "report" / "qc.json").read_text())
    assert qc["technique"] == name


def test_a_map_without_a_code_is_refused_at_registration():
    with pytest.raises(RegistryError, match=r"map 'wobble' has no quantity code in perfnode/dicom/codes.py"):
        Technique("wobbly", "wobble mapping", lambda s: None, TechniqueModel, maps=("cbf", "wobble"))
    with pytest.raises(RegistryError, match="already registered"):
        techniques.register(Technique("dsc", "again", lambda s: None, TechniqueModel, maps=("cbf",)))


# -- a toy technique, defined and registered here only ------------------------------------------------

def _toy_detect(s: techniques.SeriesHeaders) -> Detection | None:
    if s.says(r"\bTOY\b"):
        return Detection("toy", True, "series description says TOY", rank=9)
    return None


class _TimeToPeak(TechniqueModel):
    """Time of the signal's largest departure from its first time point: TTP, in seconds."""

    def fit(self, volume):
        data = volume.data.reshape(-1, *volume.data.shape[-4:])[0]  # (t, z, y, x)
        change = np.abs(data - data[:1])
        ttp = volume.times_s[np.argmax(change, axis=0)] - volume.times_s[0]
        self.curves = data
        self.notes.append("toy: time to peak of |S(t) − S(0)|")
        return FitResult(maps={"ttp_s": ttp.astype(np.float32)}, units={"ttp_s": "s"},
                         provenance={"method": "toy time to peak"})


TOY = Technique("toy", "toy time-to-peak", _toy_detect, _TimeToPeak, maps=("ttp",))


@pytest.fixture
def toy():
    techniques.register(TOY)
    yield TOY
    techniques.unregister("toy")


def test_a_technique_registered_in_a_test_flows_through_everything(tmp_path, toy, capsys):
    folder = tmp_path / "phantom"
    make("dsc", "single", folder, seed=5)
    files = sorted(str(p) for p in (folder / "series01").iterdir())
    for f in files:  # the toy's detector looks for its name; the DSC detector still sees a DSC series
        ds = pydicom.dcmread(f)
        ds.SeriesDescription = "TOY dynamic"
        ds.save_as(f)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    # detection (stated, ranked above the DSC detector) and the pipeline's choice
    assert detect_series(headers).technique == "toy"
    assert choose(headers, "MR3T", []).technique == "toy"
    by_rule = choose(headers, "MR3T", [{"protocol": "*toy*", "technique": "toy"}])
    assert by_rule.technique == "toy" and by_rule.reason.startswith("TOY: set by [[pipeline.rules]]")
    # the pipeline's analysis
    outcome = analyse(AnalysisRequest(files=files, out_dir=str(tmp_path / "job"), uid_seed="toy"))
    assert outcome.status == "written", outcome.reason
    (ttp_file,) = outcome.result.files
    q, values = map_values(pydicom.dcmread(ttp_file))
    assert q.key == "ttp"
    truth = np.load(folder / "truth.npz")
    grey = truth["labels"] == 1
    assert np.nanmedian(values[grey]) > 0  # the bolus passes after the first time point
    # the report names it and carries its note
    page = Path(outcome.result.report).read_text()
    assert "TOY series" in page and "toy: time to peak" in page
    # perfnode maps, the command, with --technique accepting it
    assert main(["maps", str(folder / "series01"), "--out", str(tmp_path / "cli"), "--json",
                 "--technique", "toy", "--no-report"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["status"] == "written" and entry["technique"] == "toy"
    assert [Path(p).stem for p in entry["maps"]] == ["ttp_s"]


def test_a_series_that_breaks_its_model_fails_alone(tmp_path, capsys):
    """One series whose analysis raises an unexpected error is 'failed' (exit 1); the others are analysed."""

    class Broken(TechniqueModel):
        def fit(self, volume):
            raise RuntimeError("the toy model tripped")

    techniques.register(Technique("broken", "a broken model", _toy_detect, Broken, maps=("ttp",)))
    try:
        make("dsc", "single", tmp_path / "study" / "dsc", seed=1)
        make("dsc", "single", tmp_path / "study" / "toy", seed=2)
        for f in (tmp_path / "study" / "toy").rglob("*.dcm"):
            ds = pydicom.dcmread(f)
            ds.SeriesDescription = "TOY"
            ds.save_as(f)
        (tmp_path / "study" / "notes.txt").write_text("not DICOM")
        rc = main(["maps", str(tmp_path / "study"), "--out", str(tmp_path / "out"), "--json", "--no-report"])
    finally:
        techniques.unregister("broken")
    out = capsys.readouterr()
    assert rc == 1
    by_status = {e["status"]: e for e in json.loads(out.out)}
    assert set(by_status) == {"written", "failed"}
    assert by_status["written"]["technique"] == "dsc"
    assert by_status["failed"]["reason"] == "RuntimeError: the toy model tripped"
    assert "notes.txt: not DICOM: no 'DICM' prefix" in out.err
    assert "Traceback" not in out.err
    assert json.loads((tmp_path / "out" / "outcomes.json").read_text()) == json.loads(out.out)


def test_every_quantity_a_technique_declares_is_in_the_code_table():
    for t in techniques.techniques():
        for key in t.maps:
            assert find_quantity(key) is not None and find_quantity(key).key == key


def test_companion_series_are_recognised_as_such(tmp_path):
    """The M0 series of an ASL study and the VFA series of a DCE study are companions, not analyses."""
    assert [c.name for c in techniques.get("asl").companions] == ["M0"]
    assert [c.name for c in techniques.get("dce").companions] == ["variable-flip-angle T1"]
    for technique, companion in (("asl", "asl"), ("dce", "dce")):
        make(technique, "single", tmp_path / technique)
        (headers,) = [h for h in read_headers([tmp_path / technique / "series02"]).values()]
        d = detect_series(headers)
        assert d.technique is None and d.companion_of == companion, d
