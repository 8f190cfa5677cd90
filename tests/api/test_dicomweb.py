"""DICOMweb at /dicomweb/{project}/, with dicomweb-client as the real client: STOW-RS, QIDO-RS, WADO-RS."""

import io
import socket
import threading
import time

import pydicom
import pytest
import requests
import uvicorn
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from portal.dicom import frame_bytes, samples
from portal.dicom.render import frame_array
from portal.tables import Instance
from tests.helpers import creds, make_project, make_user

DICOM_JSON = "application/dicom+json"


@pytest.fixture
def server(app):
    """The same app on a real port: dicomweb-client speaks HTTP through `requests`, not ASGI."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(autouse=True)
def urls_from_host(app, settings):
    """The suite sets LIGHTBOX_BASE_URL (for mail links); these tests want URLs from the Host header."""
    import dataclasses

    from portal import settings as settings_mod

    settings_mod.use(dataclasses.replace(settings, base_url_set=False))


@pytest.fixture
async def project(app):
    project = await make_project("p", {"rev": "reviewer", "view": "viewer"})
    await make_user("out")
    return project


def dicomweb(server: str, user: str = "rev", project: str = "p") -> DICOMwebClient:
    return DICOMwebClient(url=f"{server}/dicomweb/{project}", headers=creds(user))


def encoded(ds: pydicom.Dataset) -> bytes:
    """The bytes dicomweb-client sends for `ds`."""
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds)
    return out.getvalue()


def related(files: list[bytes], boundary: str = "lightbox-test") -> tuple[bytes, dict]:
    body = b"".join(b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n" % (boundary.encode(), f)
                    for f in files) + b"--%s--\r\n" % boundary.encode()
    return body, {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}


def parts_of(response) -> list[bytes]:
    """The bodies of a multipart/related answer."""
    boundary = response.headers["content-type"].split("boundary=")[1].strip('"')
    chunks = response.content.split(b"--" + boundary.encode())[1:-1]
    return [c.split(b"\r\n\r\n", 1)[1][:-2] for c in chunks]


def series_of(tmp_path, sample: str, n: int, **attrs) -> list[pydicom.Dataset]:
    files = samples.make_series(samples.sample_path(sample), tmp_path / sample, n)
    datasets = [pydicom.dcmread(f) for f in files]
    for ds in datasets:
        for k, v in attrs.items():
            setattr(ds, k, v)
    return datasets


async def test_store_search_retrieve_with_dicomweb_client(server, project, tmp_path):
    c = dicomweb(server)
    ct = series_of(tmp_path, "CT_small.dcm", 3, PatientID="PAT-1", PatientName="Doe^Jane", StudyDate="20190101",
                   StudyDescription="Chest CT")
    mr = series_of(tmp_path, "MR_small.dcm", 2, PatientID="PAT-2", PatientName="Roe^Richard", StudyDate="20210601")
    ct_study, ct_series = ct[0].StudyInstanceUID, ct[0].SeriesInstanceUID
    mr_study = mr[0].StudyInstanceUID

    # STOW-RS: every instance referenced with its RetrieveURL; a re-send is a success too.
    result = c.store_instances(ct)
    assert [i.ReferencedSOPInstanceUID for i in result.ReferencedSOPSequence] == [d.SOPInstanceUID for d in ct]
    assert result.ReferencedSOPSequence[0].RetrieveURL.endswith(
        f"/dicomweb/p/studies/{ct_study}/series/{ct_series}/instances/{ct[0].SOPInstanceUID}")
    assert result.RetrieveURL.endswith(f"/dicomweb/p/studies/{ct_study}") and "FailedSOPSequence" not in result
    assert len(c.store_instances(ct).ReferencedSOPSequence) == 3
    c.store_instances(mr, study_instance_uid=mr_study)
    assert await Instance.count() == 5

    # QIDO-RS: the standard return attributes, and each kind of matching.
    (study,) = c.search_for_studies(search_filters={"PatientID": "PAT-1"})
    assert study["0020000D"]["Value"] == [ct_study] and study["00100010"]["Value"] == [{"Alphabetic": "Doe^Jane"}]
    assert study["00201206"]["Value"] == [1] and study["00201208"]["Value"] == [3]  # series, instances
    assert study["00080061"]["Value"] == ["CT"] and study["00081190"]["Value"][0].endswith(ct_study)

    def studies(**filters) -> list[str]:
        return [s["0020000D"]["Value"][0] for s in c.search_for_studies(search_filters=filters)]

    assert studies(PatientName="doe*") == [ct_study]  # case-insensitive wildcard
    assert studies(PatientName="?oe^*") == [ct_study, mr_study]
    assert studies(StudyDate="20200101-20211231") == [mr_study]
    assert studies(StudyDate="-20191231") == [ct_study] and studies(StudyDate="20200101-") == [mr_study]
    assert studies(StudyDate="20190101") == [ct_study]
    assert studies(ModalitiesInStudy="MR") == [mr_study] and studies(ModalitiesInStudy="CT,MR") == [ct_study, mr_study]
    assert studies(StudyInstanceUID=f"{ct_study},{mr_study}") == [ct_study, mr_study]
    assert studies(PatientID="nobody") == []
    page = [s["0020000D"]["Value"][0] for s in c.search_for_studies(limit=1, offset=1)]
    assert page == [mr_study]
    assert c.search_for_studies(fields=["StudyDescription"], search_filters={"PatientID": "PAT-1"})[0][
        "00081030"]["Value"] == ["Chest CT"]

    (series,) = c.search_for_series(ct_study)
    assert series["0020000E"]["Value"] == [ct_series] and series["00080060"]["Value"] == ["CT"]
    assert series["00201209"]["Value"] == [3] and series["00081190"]["Value"][0].endswith(ct_series)
    (mr_series,) = c.search_for_series(search_filters={"Modality": "MR"})
    assert mr_series["00100020"]["Value"] == ["PAT-2"]  # all-series search carries the study's attributes
    instances = c.search_for_instances(ct_study, ct_series)
    assert sorted(i["00080018"]["Value"][0] for i in instances) == sorted(d.SOPInstanceUID for d in ct)
    assert instances[0]["00280010"]["Value"] == [128] and instances[0]["00080016"]["Value"] == [ct[0].SOPClassUID]
    assert len(c.search_for_instances(search_filters={"PatientName": "roe*"})) == 2  # joined up to the patient
    wanted = f"{ct[0].SOPInstanceUID},{mr[1].SOPInstanceUID}"
    assert len(c.search_for_instances(search_filters={"SOPInstanceUID": wanted})) == 2

    # WADO-RS: instances come back as sent, byte for byte.
    assert c.retrieve_instance(ct_study, ct_series, ct[1].SOPInstanceUID).SOPInstanceUID == ct[1].SOPInstanceUID
    got = c.retrieve_series(ct_study, ct_series)
    assert sorted(d.SOPInstanceUID for d in got) == sorted(d.SOPInstanceUID for d in ct)
    r = requests.get(f"{server}/dicomweb/p/studies/{ct_study}", headers=creds("view"))
    assert r.headers["content-type"].startswith('multipart/related; type="application/dicom"')
    assert sorted(parts_of(r)) == sorted(encoded(d) for d in ct)

    metadata = c.retrieve_study_metadata(ct_study)
    assert len(metadata) == 3 and {m["00080018"]["Value"][0] for m in metadata} == {d.SOPInstanceUID for d in ct}
    first = next(m for m in metadata if m["00080018"]["Value"] == [ct[0].SOPInstanceUID])
    assert first["00100020"]["Value"] == ["PAT-1"]
    # URIs are built from the Host header, and dicomweb-client sends its Host without the port.
    uri = first["7FE00010"]["BulkDataURI"].replace("http://127.0.0.1/", server + "/")
    assert uri.endswith(f"/instances/{ct[0].SOPInstanceUID}/bulkdata/7FE00010")
    assert c.retrieve_bulkdata(uri) == [ct[0].PixelData]

    png = c.retrieve_instance_rendered(ct_study, ct_series, ct[0].SOPInstanceUID)
    assert png.startswith(b"\x89PNG")
    jpeg = c.retrieve_instance_rendered(ct_study, ct_series, ct[0].SOPInstanceUID, media_types=("image/jpeg",),
                                        params={"window": "40,400,linear", "viewport": "64,32"})
    assert jpeg.startswith(b"\xff\xd8") and Image.open(io.BytesIO(jpeg)).size == (32, 32)


async def test_frames_native_and_compressed(server, project, tmp_path):
    paths = {name: samples.restamp(samples.sample_path(name), tmp_path / name)
             for name in ("CT_small.dcm", "MR_small_jp2klossless.dcm", "emri_small_RLE.dcm")}
    body, headers = related([p.read_bytes() for p in paths.values()])
    r = requests.post(f"{server}/dicomweb/p/studies", data=body, headers={**headers, **creds("rev")})
    assert r.status_code == 200, r.text
    c = dicomweb(server, "view")

    def uids(name):
        ds = pydicom.dcmread(paths[name], stop_before_pixels=True)
        return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID

    (native,) = c.retrieve_instance_frames(*uids("CT_small.dcm"), [1])
    assert native == frame_bytes(paths["CT_small.dcm"], [1])[0]
    # Compressed frames come as stored when the client takes any type (dicomweb-client's default)...
    (jp2,) = c.retrieve_instance_frames(*uids("MR_small_jp2klossless.dcm"), [1])
    assert jp2 == frame_bytes(paths["MR_small_jp2klossless.dcm"], [1])[0] and jp2.startswith(b"\xff\x4f\xff\x51")
    # ... and decoded when it takes only native bytes.
    (decoded,) = c.retrieve_instance_frames(*uids("MR_small_jp2klossless.dcm"), [1],
                                            media_types=("application/octet-stream",))
    assert decoded == frame_array(paths["MR_small_jp2klossless.dcm"], 0).astype("<u2").tobytes()
    rle = c.retrieve_instance_frames(*uids("emri_small_RLE.dcm"), [2, 4], media_types=("image/dicom-rle",))
    assert rle == frame_bytes(paths["emri_small_RLE.dcm"], [2, 4])
    assert c.retrieve_instance_frames_rendered(*uids("emri_small_RLE.dcm"), [3]).startswith(b"\x89PNG")

    url = f"{server}/dicomweb/p/studies/%s/series/%s/instances/%s" % uids("CT_small.dcm")
    r = requests.get(url + "/frames/1", headers={**creds("view"), "Accept": 'multipart/related; type="image/jp2"'})
    assert r.status_code == 406 and "application/octet-stream" in r.json()["detail"]
    assert requests.get(url + "/frames/2", headers=creds("view")).status_code == 404
    assert requests.get(url + "/frames/x", headers=creds("view")).status_code == 400


async def test_stow_answers_and_refusals(client, project, tmp_path):
    good = [samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / f"{i}.dcm").read_bytes() for i in (1, 2)]
    ds = pydicom.dcmread(io.BytesIO(good[0]), stop_before_pixels=True)
    study, url = ds.StudyInstanceUID, "/dicomweb/p/studies"

    # An instance of another study sent to /studies/{study}: refused, nothing stored.
    body, headers = related([good[0]])
    r = await client.post(f"{url}/1.2.3.4", content=body, headers={**headers, **creds("rev")})
    assert r.status_code == 409 and r.headers["content-type"] == DICOM_JSON
    (failed,) = r.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC409] and failed["00081155"]["Value"] == [ds.SOPInstanceUID]
    assert "00081199" not in r.json() and await Instance.count() == 0

    # Some stored, some not: 202 with both sequences.
    body, headers = related([good[0], b"not dicom at all"])
    r = await client.post(f"{url}/{study}", content=body, headers={**headers, **creds("rev")})
    assert r.status_code == 202, r.text
    assert [i["00081155"]["Value"] for i in r.json()["00081199"]["Value"]] == [[ds.SOPInstanceUID]]
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    assert r.json()["00081190"]["Value"] == [f"http://testserver/dicomweb/p/studies/{study}"]

    # Same UID, other bytes: a conflict, the stored file kept.
    other = pydicom.dcmread(io.BytesIO(good[0]))
    other.PatientName = "Someone^Else"
    body, headers = related([encoded(other)])
    r = await client.post(url, content=body, headers={**headers, **creds("rev")})
    assert r.status_code == 409 and r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0x0111]

    # Wrong media types, no parts, no rights.
    for content_type in ("application/dicom", "multipart/form-data; boundary=x",
                         'multipart/related; type="application/dicom+json"; boundary=x'):
        r = await client.post(url, content=good[1], headers={"Content-Type": content_type, **creds("rev")})
        assert r.status_code == 415, (content_type, r.text)
    r = await client.post(url, content=b"--b--\r\n", headers={
        "Content-Type": 'multipart/related; type="application/dicom"; boundary=b', **creds("rev")})
    assert r.status_code == 400
    body, headers = related([good[1]])
    assert (await client.post(url, content=body, headers={**headers, **creds("view")})).status_code == 403
    assert (await client.post(url, content=body, headers={**headers, **creds("out")})).status_code == 404
    assert (await client.post(url, content=body, headers=headers)).status_code == 401
    assert await Instance.count() == 1


async def test_reads_need_access_and_known_uids(client, project, tmp_path):
    path = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "a.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    body, headers = related([path.read_bytes()])
    r = await client.post("/dicomweb/p/studies", content=body, headers={**headers, **creds("rev")})
    assert r.status_code == 200
    instance = f"/dicomweb/p/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"

    for path_ in ("/dicomweb/p/studies", instance, instance + "/metadata", instance + "/rendered"):
        assert (await client.get(path_, headers=creds("view"))).status_code == 200, path_
        r = await client.get(path_, headers=creds("out"))
        assert r.status_code == 404 and r.json()["suberror"] == "project_not_found"
    r = await client.get("/dicomweb/p/studies", params={"StudyDate": "last week"}, headers=creds("view"))
    assert r.status_code == 400
    r = await client.get("/dicomweb/p/studies", params={"PatientID": "x", "Foo": "1"}, headers=creds("view"))
    assert r.status_code == 200 and r.json() == [] and r.headers["content-type"] == DICOM_JSON
    assert "Foo" in r.headers["warning"]
    assert (await client.get("/dicomweb/p/studies/1.2.3", headers=creds("view"))).status_code == 404
    assert (await client.get(instance.replace(ds.SOPInstanceUID, "1.2.3"), headers=creds("view"))).status_code == 404
    assert (await client.get(instance + "/rendered", params={"window": "1"}, headers=creds("view"))).status_code == 400
    r = await client.get(instance + "/rendered", headers={**creds("view"), "Accept": "image/gif"})
    assert r.status_code == 406


async def test_a_configured_base_url_makes_the_absolute_urls(client, project, tmp_path, settings):
    import dataclasses

    from portal import settings as settings_mod

    settings_mod.use(dataclasses.replace(settings, base_url="https://pacs.example.org/lightbox", base_url_set=True))
    f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "one.dcm")
    body, headers = related([f.read_bytes()])
    r = await client.post("/dicomweb/p/studies", content=body, headers={**headers, **creds("rev")})
    assert r.status_code == 200, r.text
    study = pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID
    (ref,) = r.json()["00081199"]["Value"]
    assert ref["00081190"]["Value"][0].startswith(f"https://pacs.example.org/lightbox/dicomweb/p/studies/{study}/")
