"""DICOMweb against a running ``perfnode serve``, with a real client (``dicomweb-client``) and raw HTTP
checks of what PS3.18 requires of each response (media types, multipart boundaries, status codes).

Data goes in by C-STORE (DCMTK ``storescu``) and by STOW-RS; what comes out is compared with the
files sent and with what C-FIND answers for the same keys.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom import dcmread
from pydicom.pixels import pixel_array
from pydicom.uid import JPEGLSLossless, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from perfnode.phantoms import make
from tests.nodes import need, run
from tests.serve_helpers import Scu, dataset_bytes, fresh_copy
from tests.web.conftest import get, wait_for
from tests.web.multipart import read_multipart

DICOM = "application/dicom"
JSON = "application/dicom+json"


@pytest.fixture(scope="module")
def data(web_node, tmp_path_factory):
    """A DSC concatenation (3 Enhanced MR instances) and three pydicom samples, sent with storescu."""
    tmp = tmp_path_factory.mktemp("sent")
    _, dsc = make("dsc", "concat", tmp / "dsc", snr=50)
    study = generate_uid()
    mr = fresh_copy(
        "MR_small.dcm",
        tmp / "mr",
        StudyInstanceUID=study,
        PatientName="Smith^Anna",
        PatientID="P-WEB-1",
        StudyDate="20240310",
    )
    ct = fresh_copy(
        "CT_small.dcm", tmp / "ct", PatientName="Jones^Bob", PatientID="P-WEB-2", StudyDate="20231101"
    )
    jls = fresh_copy(
        "MR_small_jpeg_ls_lossless.dcm",
        tmp / "jls",
        StudyInstanceUID=study,
        PatientName="Smith^Anna",
        PatientID="P-WEB-1",
        SeriesInstanceUID=generate_uid(),
    )
    res = run(
        [
            need("storescu"),
            "-aec",
            "PERFNODE",
            "127.0.0.1",
            str(web_node.node.port),
            *map(str, [*dsc, mr, ct]),
        ],
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    with Scu(web_node.node.port, [jls]) as scu:  # sent as stored, JPEG-LS (pynetdicom SCU)
        assert scu.store(jls)[0] == 0
    return {"dsc": [Path(p) for p in dsc], "mr": mr, "ct": ct, "jls": jls, "study": study}


@pytest.fixture(scope="module")
def client(web_node) -> DICOMwebClient:
    return DICOMwebClient(web_node.dicomweb)


def uids(matches: list[dict], tag: str) -> set[str]:
    return {m[tag]["Value"][0] for m in matches}


def c_find(port: int, level: str, **keys) -> list:
    """The same query by C-FIND (pynetdicom SCU, Study Root)."""
    from pydicom.dataset import Dataset

    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="PERFNODE")
    assert assoc.is_established
    ident = Dataset()
    ident.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ident, k, v)
    out = [
        ds
        for status, ds in assoc.send_c_find(ident, StudyRootQueryRetrieveInformationModelFind)
        if status and status.Status in (0xFF00, 0xFF01)
    ]
    assoc.release()
    return out


# -- QIDO-RS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"PatientName": "smith*"}, "PatientName"),  # PN, wildcard, case-insensitive
        ({"PatientID": "P-WEB-2"}, "PatientID"),  # LO, single value
        ({"StudyDate": "20240101-20241231"}, "StudyDate"),  # DA range
        ({"StudyDate": "-20231231"}, "StudyDate"),  # open range
        ({"ModalitiesInStudy": "CT"}, "ModalitiesInStudy"),  # derived key
        ({"00100020": "P-WEB-?"}, "PatientID"),  # tag instead of keyword, ? wildcard
    ],
)
def test_qido_studies_match_as_c_find(web_node, data, client, params, key):
    matches = client.search_for_studies(search_filters=params)
    kw_params = {("PatientID" if k == "00100020" else k): v for k, v in params.items()}
    expected = {
        str(ds.StudyInstanceUID)
        for ds in c_find(web_node.node.port, "STUDY", StudyInstanceUID="", **kw_params)
    }
    assert expected, "the query should match something"
    assert uids(matches, "0020000D") == expected


def test_qido_study_uid_list_and_defaults(web_node, data, client):
    every = get(f"{web_node.dicomweb}/studies").json()
    assert len(every) == 3  # the DSC phantom's study, the MR/JPEG-LS study, the CT study
    two = [m["0020000D"]["Value"][0] for m in every][:2]
    r = get(
        f"{web_node.dicomweb}/studies", params={"StudyInstanceUID": ",".join(two)}, headers={"Accept": JSON}
    )
    assert r.status_code == 200 and r.headers["content-type"] == JSON
    assert uids(r.json(), "0020000D") == set(two)
    mine = next(m for m in every if m["0020000D"]["Value"][0] == data["study"])
    # default study attributes (PS3.18 Table 10.6.3-3) with the index's derived counts
    assert mine["00201206"]["Value"] == [2] and mine["00201208"]["Value"] == [2]  # series, instances
    assert sorted(mine["00080061"]["Value"]) == ["MR"]
    assert mine["00080056"]["Value"] == ["ONLINE"]
    assert mine["00081190"]["Value"][0] == f"{web_node.dicomweb}/studies/{data['study']}"


def test_qido_series_and_instances_every_form(web_node, data, client):
    dsc_study = str(dcmread(data["dsc"][0], stop_before_pixels=True).StudyInstanceUID)
    dsc_series = str(dcmread(data["dsc"][0], stop_before_pixels=True).SeriesInstanceUID)
    # /studies/{study}/series, with a CS key and an IS key
    assert uids(client.search_for_series(dsc_study, search_filters={"Modality": "MR"}), "0020000E") == {
        dsc_series
    }
    assert client.search_for_series(dsc_study, search_filters={"Modality": "CT"}) == []
    sn = dcmread(data["dsc"][0], stop_before_pixels=True).SeriesNumber
    assert len(client.search_for_series(dsc_study, search_filters={"SeriesNumber": str(sn)})) == 1
    # /series across studies (relational), as C-FIND would find them level by level
    all_mr = client.search_for_series(search_filters={"Modality": "MR"})
    assert len(all_mr) == 3
    assert all("0020000D" in m for m in all_mr)  # the study of each series is returned
    # /studies/{study}/series/{series}/instances, /studies/{study}/instances, /instances
    inst = client.search_for_instances(dsc_study, dsc_series)
    assert len(inst) == 3 and all(m["00280008"]["Value"][0] > 1 for m in inst)  # multi-frame parts
    assert len(client.search_for_instances(dsc_study)) == 3
    ct_sop = str(dcmread(data["ct"], stop_before_pixels=True).SOPInstanceUID)
    found = client.search_for_instances(search_filters={"SOPInstanceUID": ct_sop})
    assert uids(found, "00080018") == {ct_sop}
    assert found[0]["00081190"]["Value"][0].endswith(f"/instances/{ct_sop}")
    by_class = client.search_for_instances(search_filters={"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"})
    assert uids(by_class, "00080018") == {ct_sop}


def test_qido_includefield_limit_offset(web_node, data):
    url = f"{web_node.dicomweb}/studies/{data['study']}/series"
    plain = get(url).json()
    assert "0008103E" in plain[0] and "00180050" not in plain[0]
    r = get(url, params={"includefield": "ProtocolName,00080021"}).json()
    assert "00181030" in r[0] and "00080021" in r[0]
    r = get(url, params={"includefield": "all"}).json()
    assert "00180015" in r[0]  # BodyPartExamined, a supported key, returned
    everything = get(f"{web_node.dicomweb}/instances").json()
    assert len(everything) == 6
    page1 = get(f"{web_node.dicomweb}/instances", params={"limit": 4}).json()
    page2 = get(f"{web_node.dicomweb}/instances", params={"limit": 4, "offset": 4}).json()
    assert len(page1) == 4 and len(page2) == 2
    r = get(f"{web_node.dicomweb}/instances", params={"limit": 4})
    assert "There are additional results that can be requested" in r.headers["Warning"]  # PS3.18 10.6.3.3.1
    assert "Warning" not in get(f"{web_node.dicomweb}/instances", params={"limit": 4, "offset": 4}).headers
    assert uids(page1, "00080018") | uids(page2, "00080018") == uids(everything, "00080018")


def test_qido_warnings_and_errors(web_node, data):
    r = get(f"{web_node.dicomweb}/studies", params={"PatientName": "smith*", "fuzzymatching": "true"})
    assert r.status_code == 200 and "fuzzymatching" in r.headers["Warning"]
    r = get(f"{web_node.dicomweb}/studies", params={"NotAnAttribute": "x"})
    assert r.status_code == 400 and "NotAnAttribute" in r.text
    r = get(f"{web_node.dicomweb}/studies", params={"limit": "-1"})
    assert r.status_code == 400 and "limit" in r.text
    r = get(f"{web_node.dicomweb}/studies", params={"SeriesNumber": "abc"})
    assert r.status_code == 400 and "integer" in r.text
    r = get(
        f"{web_node.dicomweb}/studies", headers={"Accept": "multipart/related; type=application/dicom+xml"}
    )
    assert r.status_code == 406
    r = get(f"{web_node.dicomweb}/studies/1.2.3.x/series")
    assert r.status_code == 400 and "(0020,000D) StudyInstanceUID" in r.text
    r = get(f"{web_node.dicomweb}/studies", params={"PatientName": "nobody"})
    assert r.status_code == 200 and r.json() == []


def test_qido_gzip_for_json_only(web_node, data):
    r = get(f"{web_node.dicomweb}/instances", headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip" and len(r.json()) == 6
    meta_sop = str(dcmread(data["mr"], stop_before_pixels=True).SOPInstanceUID)
    series = str(dcmread(data["mr"], stop_before_pixels=True).SeriesInstanceUID)
    r = get(
        f"{web_node.dicomweb}/studies/{data['study']}/series/{series}/instances/{meta_sop}",
        headers={"Accept-Encoding": "gzip"},
    )
    assert r.status_code == 200 and "content-encoding" not in r.headers  # pixel data: not worth it


# -- WADO-RS ---------------------------------------------------------------------------------------


def _uids(path: Path) -> tuple[str, str, str]:
    ds = dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def test_c_store_then_wado_is_byte_identical(web_node, data):
    """storescu sends the phantom's data sets unchanged; WADO-RS gives back the same bytes. (For the
    pydicom sample, storescu drops its Data Set Trailing Padding: WADO-RS gives what arrived.)"""
    for sent in (data["dsc"][0], data["mr"]):
        st, se, sop = _uids(sent)
        r = get(
            f"{web_node.dicomweb}/studies/{st}/series/{se}/instances/{sop}",
            headers={"Accept": f'multipart/related; type="{DICOM}"; transfer-syntax=*'},
        )
        assert r.status_code == 200
        parts = read_multipart(r.headers["content-type"], r.content, DICOM)
        assert len(parts) == 1 and int(r.headers["content-length"]) == len(r.content)
        assert parts[0].params["transfer-syntax"] == "1.2.840.10008.1.2.1"
        got = Path(sent).with_suffix(".wado")
        got.write_bytes(parts[0].body)
        stored = next((web_node.node.data / "objects").rglob(f"{sop}.dcm"))
        assert dataset_bytes(got) == dataset_bytes(stored)
        if sent is data["dsc"][0]:
            assert dataset_bytes(got) == dataset_bytes(Path(sent))


def test_wado_transfer_syntax_negotiation(web_node, data):
    st, se, sop = _uids(data["jls"])
    url = f"{web_node.dicomweb}/studies/{st}/series/{se}/instances/{sop}"
    original = dcmread(data["jls"])
    # no transfer-syntax parameter: Explicit VR Little Endian (PS3.18 8.7.3.5.2), decoded
    r = get(url, headers={"Accept": f'multipart/related; type="{DICOM}"'})
    part = read_multipart(r.headers["content-type"], r.content, DICOM)[0]
    assert part.params["transfer-syntax"] == "1.2.840.10008.1.2.1"
    ds = dcmread(io.BytesIO(part.body))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert np.array_equal(ds.pixel_array, original.pixel_array)  # lossless: same pixels
    # as stored
    r = get(url, headers={"Accept": f'multipart/related; type="{DICOM}"; transfer-syntax={JPEGLSLossless}'})
    part = read_multipart(r.headers["content-type"], r.content, DICOM)[0]
    assert part.params["transfer-syntax"] == JPEGLSLossless
    # a syntax that cannot be produced
    r = get(
        url, headers={"Accept": f'multipart/related; type="{DICOM}"; transfer-syntax=1.2.840.10008.1.2.4.50'}
    )
    assert r.status_code == 406 and "1.2.840.10008.1.2.4.50" in r.text
    # not DICOM at all
    assert get(url, headers={"Accept": "image/png"}).status_code == 406


def test_wado_series_and_study_with_client(web_node, data, client):
    st, se, _ = _uids(data["dsc"][0])
    sent = {dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in data["dsc"]}
    got = client.retrieve_series(st, se)
    assert {str(ds.SOPInstanceUID) for ds in got} == sent
    study = client.retrieve_study(data["study"])
    assert len(study) == 2
    r = get(f"{web_node.dicomweb}/studies/{st}", headers={"Accept": f'multipart/related; type="{DICOM}"'})
    assert len(read_multipart(r.headers["content-type"], r.content, DICOM)) == 3


def test_wado_not_found(web_node, data):
    st, se, sop = _uids(data["mr"])
    r = get(f"{web_node.dicomweb}/studies/{st}/series/{se}/instances/1.2.3.4")
    assert r.status_code == 404 and "1.2.3.4" in r.text
    assert get(f"{web_node.dicomweb}/studies/1.2.3.4").status_code == 404


def test_metadata_and_bulk_data(web_node, data, client):
    st, se, sop = _uids(data["dsc"][0])
    meta = client.retrieve_series_metadata(st, se)
    assert len(meta) == 3
    r = get(f"{web_node.dicomweb}/studies/{st}/series/{se}/instances/{sop}/metadata")
    assert r.status_code == 200 and r.headers["content-type"] == JSON
    (m,) = r.json()
    assert m["00080018"]["Value"] == [sop]
    assert "52009230" in m  # per-frame functional groups, in full
    uri = m["7FE00010"]["BulkDataURI"]
    assert uri == f"{web_node.dicomweb}/studies/{st}/series/{se}/instances/{sop}/bulkdata/7FE00010"
    r = get(uri, headers={"Accept": 'multipart/related; type="application/octet-stream"'})
    part = read_multipart(r.headers["content-type"], r.content, "application/octet-stream")[0]
    sent = next(p for p in data["dsc"] if _uids(p)[2] == sop)
    assert part.body == dcmread(sent).PixelData


def test_frames_of_an_enhanced_object(web_node, data, client):
    st, se, sop = _uids(data["dsc"][1])
    sent = dcmread(data["dsc"][1])
    frames = client.retrieve_instance_frames(st, se, sop, [1, 3])
    expected = pixel_array(data["dsc"][1])
    for got, index in zip(frames, [0, 2], strict=True):
        assert np.array_equal(
            np.frombuffer(got, dtype=expected.dtype).reshape(expected.shape[1:]), expected[index]
        )
    r = get(
        f"{web_node.dicomweb}/studies/{st}/series/{se}/instances/{sop}/frames/2",
        headers={"Accept": 'multipart/related; type="application/octet-stream"'},
    )
    part = read_multipart(r.headers["content-type"], r.content, "application/octet-stream")[0]
    assert part.params["transfer-syntax"] == "1.2.840.10008.1.2.1"
    n = int(sent.NumberOfFrames)
    r = get(f"{web_node.dicomweb}/studies/{st}/series/{se}/instances/{sop}/frames/{n + 1}")
    assert r.status_code == 404 and "NumberOfFrames" in r.text


def test_rendered_with_window(web_node, data, client):
    st, se, sop = _uids(data["dsc"][0])
    base = f"{web_node.dicomweb}/studies/{st}/series/{se}/instances/{sop}"
    r = get(base + "/frames/1/rendered", headers={"Accept": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = np.asarray(Image.open(io.BytesIO(r.content)))
    assert img.shape == (16, 16) and img.std() > 0
    narrow = np.asarray(
        Image.open(
            io.BytesIO(
                get(
                    base + "/frames/1/rendered", params={"window": "0,1"}, headers={"Accept": "image/png"}
                ).content
            )
        )
    )
    assert not np.array_equal(img, narrow)
    r = get(base + "/rendered", params={"viewport": "64,64"}, headers={"Accept": "image/jpeg"})
    assert r.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(r.content)).size == (64, 64)
    jpeg = client.retrieve_instance_rendered(st, se, sop, media_types=("image/jpeg",))
    assert jpeg[:2] == b"\xff\xd8"
    assert get(base + "/rendered", params={"window": "1"}).status_code == 400
    thumb = get(f"{web_node.dicomweb}/studies/{st}/series/{se}/thumbnail", headers={"Accept": "image/png"})
    assert thumb.status_code == 200 and max(Image.open(io.BytesIO(thumb.content)).size) == 128


# -- STOW-RS ---------------------------------------------------------------------------------------


def _multipart(files: list[bytes], boundary: str = "perfnodetestboundary") -> tuple[bytes, str]:
    body = (
        b"".join(
            b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + f + b"\r\n"
            for f in files
        )
        + b"--"
        + boundary.encode()
        + b"--\r\n"
    )
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_stow_stores_durably_and_answers_ps318(web_node, data, client, tmp_path):
    new = fresh_copy("CT_small.dcm", tmp_path, PatientID="P-STOW-1")
    ds = dcmread(new)
    response = client.store_instances([ds])
    assert response.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert "FailedSOPSequence" not in response
    found = client.search_for_instances(search_filters={"SOPInstanceUID": ds.SOPInstanceUID})
    assert len(found) == 1
    # what was acknowledged is on disk, byte for byte the dataset sent
    stored = next((web_node.node.data / "objects").rglob(f"{ds.SOPInstanceUID}.dcm"))
    assert dataset_bytes(stored) == dataset_bytes(new)
    # the same object again: identical bytes, a no-op that succeeds (as C-STORE)
    body, ctype = _multipart([new.read_bytes()])
    r = requests.post(
        f"{web_node.dicomweb}/studies", data=body, headers={"Content-Type": ctype, "Accept": JSON}, timeout=60
    )
    assert r.status_code == 200 and r.headers["content-type"] == JSON


def test_stow_failures_carry_the_c_store_reasons(web_node, data, tmp_path):
    good = fresh_copy("CT_small.dcm", tmp_path / "good")
    mismatch = fresh_copy("CT_small.dcm", tmp_path / "bad")
    ds = dcmread(mismatch)
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # meta says MR, data set says CT
    ds.save_as(mismatch)
    body, ctype = _multipart([good.read_bytes(), mismatch.read_bytes(), b"not dicom at all"])
    r = requests.post(f"{web_node.dicomweb}/studies", data=body, headers={"Content-Type": ctype}, timeout=60)
    assert r.status_code == 202  # some stored, some not (PS3.18 10.5.3)
    out = r.json()
    assert len(out["00081199"]["Value"]) == 1
    reasons = {
        (item.get("00081155", {}).get("Value") or [""])[0]: item["00081197"]["Value"][0]
        for item in out["00081198"]["Value"]
    }
    assert reasons[str(ds.SOPInstanceUID)] == 0xA900  # as C-STORE: data set does not match SOP class
    assert reasons[""] == 0xC000  # cannot understand
    assert "(0008,0016) SOPClassUID" in r.headers["Warning"]
    assert not list((web_node.node.data / "objects").rglob(f"{ds.SOPInstanceUID}.dcm"))
    # all refused: 409; into the wrong study: refused
    other = fresh_copy("CT_small.dcm", tmp_path / "other")
    body, ctype = _multipart([other.read_bytes()])
    r = requests.post(
        f"{web_node.dicomweb}/studies/{data['study']}", data=body, headers={"Content-Type": ctype}, timeout=60
    )
    assert r.status_code == 409 and r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
    assert "is not the study of the request URL" in r.headers["Warning"]
    # not multipart: 415
    r = requests.post(
        f"{web_node.dicomweb}/studies",
        data=other.read_bytes(),
        headers={"Content-Type": "application/dicom"},
        timeout=60,
    )
    assert r.status_code == 415 and "multipart/related" in r.text
    # nothing partial left behind
    assert not list((web_node.node.data / "tmp").glob("rx-*"))


def test_stow_triggers_the_pipeline(web_node, tmp_path):
    _, files = make("dsc", "concat", tmp_path / "dsc", snr=50, seed=3)
    series = str(dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    body, ctype = _multipart([Path(f).read_bytes() for f in files])
    r = requests.post(f"{web_node.dicomweb}/studies", data=body, headers={"Content-Type": ctype}, timeout=120)
    assert r.status_code == 200, r.text

    def job():
        jobs = requests.get(f"{web_node.url}/viewer/api/jobs", params={"series": series}, timeout=30).json()
        return jobs if jobs and jobs[0]["state"] in ("done", "failed", "held") else None

    jobs = wait_for(job, 240, "the pipeline job of the STOW-RS series")
    assert jobs[0]["state"] in ("done", "held"), jobs  # held by the quality gate: archived all the same
    assert jobs[0]["analysis"] == "dsc"
    maps = requests.get(
        f"{web_node.dicomweb}/instances",
        timeout=30,
        params={"SOPClassUID": "1.2.840.10008.5.1.4.1.1.30", "limit": 50},
    ).json()
    assert maps  # the Parametric Maps were archived and are searchable
    report = requests.get(web_node.url + jobs[0]["report"], timeout=30)
    assert report.status_code == 200 and "<html" in report.text.lower()
    assert json.loads(requests.get(web_node.url + jobs[0]["qc"], timeout=30).text)["technique"] == "dsc"


def test_parametric_map_frames_metadata_and_rendered(web_node, client):
    """The maps the pipeline made (previous test): float frames by number, RWVM in the metadata, and a
    rendered frame through a colour LUT."""
    maps = get(f"{web_node.dicomweb}/instances", params={"SOPClassUID": "1.2.840.10008.5.1.4.1.1.30"}).json()
    assert maps, "run with test_stow_triggers_the_pipeline (it makes the maps)"
    st, se, sop = (maps[0][t]["Value"][0] for t in ("0020000D", "0020000E", "00080018"))
    stored = dcmread(next((web_node.node.data / "objects").rglob(f"{sop}.dcm")))
    values = np.frombuffer(stored.FloatPixelData, dtype="<f4").reshape(int(stored.NumberOfFrames), -1)
    frames = client.retrieve_instance_frames(st, se, sop, [2, 4])
    for got, index in zip(frames, (1, 3), strict=True):
        assert np.array_equal(np.frombuffer(got, dtype="<f4"), values[index], equal_nan=True)
    assert client.retrieve_instance_metadata(st, se, sop)["00080018"]["Value"] == [sop]
    (meta,) = get(f"{web_node.dicomweb}/studies/{st}/series/{se}/instances/{sop}/metadata").json()
    assert meta["7FE00008"]["BulkDataURI"].endswith("/bulkdata/7FE00008")  # Float Pixel Data
    rwvm = meta["52009229"]["Value"][0]["00409096"]["Value"][0]
    assert rwvm["004008EA"]["Value"][0]["00080102"]["Value"] == ["UCUM"]
    png = get(
        f"{web_node.dicomweb}/studies/{st}/series/{se}/instances/{sop}/frames/2/rendered",
        headers={"Accept": "image/png"},
    )
    rgb = np.asarray(Image.open(io.BytesIO(png.content)))
    assert rgb.ndim == 3 and rgb.shape[2] == 3  # coloured by the LUT
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 10
    grey = np.asarray(
        Image.open(
            io.BytesIO(get(png.url, params={"colormap": "gray"}, headers={"Accept": "image/png"}).content)
        )
    )
    assert grey.ndim == 2
