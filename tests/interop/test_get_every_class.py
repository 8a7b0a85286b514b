"""C-GET of a whole study — source images, Parametric Maps and colour captures — against perfnode.

``perfnode get`` asks the peer first (C-FIND) which SOP classes the matches hold and proposes exactly
those with SCP/SCU Role Selection; it used to offer pynetdicom's first 127 storage classes, without
Parametric Map Storage, so the maps of a study failed. DCMTK getscu (3.6.7) has a fixed list without
Parametric Map Storage either: it gets the images and captures, and perfnode names why the maps fail.
``perfnode phantom`` UIDs are new on every run unless ``--seed`` is given; a refused duplicate (0x0111)
shows its reason at the client.
"""

from __future__ import annotations

import json
from collections import Counter

from pydicom import dcmread
from pydicom.uid import EnhancedMRImageStorage, MultiFrameTrueColorSecondaryCaptureImageStorage

from tests.nodes import need, perfnode, run

PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"


def _study_uid(folder) -> str:
    return str(dcmread(next(folder.rglob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)


def test_get_brings_images_maps_and_colour_captures(node, tmp_path):
    src, maps = tmp_path / "src", tmp_path / "maps"
    small = ["--size", "8", "8", "--slices", "2"]
    run(perfnode("phantom", "dsc", *small, "--out", str(src)), check=True)
    run(perfnode("maps", str(src), "--out", str(maps), "--colour", "--no-report"), timeout=300, check=True)
    target = f"{node.ae_title}@127.0.0.1:{node.port}"
    res = run(perfnode("send", str(src), str(maps), "--to", target, "--no-progress"), check=True)
    assert "sent 15, failed 0" in res.stdout
    study = _study_uid(src)

    out = tmp_path / "got"
    res = run(perfnode("get", target, "-k", f"StudyInstanceUID={study}", "--out", str(out), "--json"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["completed"] == 15
    got = Counter(str(dcmread(p, stop_before_pixels=True).SOPClassUID) for p in out.iterdir())
    colour = MultiFrameTrueColorSecondaryCaptureImageStorage
    assert got == {EnhancedMRImageStorage: 1, PARAMETRIC_MAP: 7, colour: 7}

    # DCMTK getscu proposes its own fixed storage classes (no Parametric Map Storage in 3.6.7)
    dcmtk = tmp_path / "getscu"
    dcmtk.mkdir()
    res = run([need("getscu"), "-v", "-S", "-aec", node.ae_title, "-od", str(dcmtk), "-k",
               "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}", "127.0.0.1", str(node.port)])
    out_text = res.stdout + res.stderr
    assert len(list(dcmtk.iterdir())) == 8
    assert "Number of Completed Suboperations : 8" in out_text
    assert "Number of Failed Suboperations    : 7" in out_text
    assert node.logged("the peer accepted nothing for Parametric Map Storage")


def test_phantom_uids_new_per_run_unless_seeded_and_0111_reason_at_the_client(node, tmp_path):
    def phantom(name: str, *extra: str):
        run(perfnode("phantom", "ivim", "--size", "4", "4", "--slices", "1", "--out", str(tmp_path / name),
                     *extra), check=True)
        return tmp_path / name

    assert _study_uid(phantom("a")) != _study_uid(phantom("b"))  # no --seed: new UIDs every run
    first, other_size = phantom("s1", "--seed", "5"), tmp_path / "s2"
    run(perfnode("phantom", "ivim", "--size", "6", "6", "--slices", "1", "--seed", "5", "--out",
                 str(other_size)), check=True)
    assert _study_uid(first) == _study_uid(other_size)  # --seed: the same UIDs
    target = f"{node.ae_title}@127.0.0.1:{node.port}"
    run(perfnode("send", str(first), "--to", target, "--no-progress"), check=True)
    res = run(perfnode("send", str(other_size), "--to", target, "--no-progress"))
    assert res.returncode == 1
    assert "0x0111 (0008,0018) SOPInstanceUID already stored with different content" in res.stderr
