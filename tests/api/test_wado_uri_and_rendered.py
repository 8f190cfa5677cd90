"""WADO-URI, thumbnails at every level, and study/series /rendered."""

import io

import pydicom
import pytest
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian

from portal.archive import ingest
from portal.dicom import samples
from tests.helpers import creds, make_project


@pytest.fixture
async def series(app, tmp_path):
    chest = await make_project("chest", {"view": "viewer"})
    await make_project("other")
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "ct", 3)
    for f in files:
        assert (await ingest.ingest_file(f, chest)).status == "stored"
    j2k = samples.restamp(samples.sample_path("MR_small_jp2klossless.dcm"), tmp_path / "mr.dcm")
    assert (await ingest.ingest_file(j2k, chest)).status == "stored"
    return [pydicom.dcmread(f) for f in files], pydicom.dcmread(j2k)


def parts_of(response) -> list[bytes]:
    boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"')
    return [c.split(b"\r\n\r\n", 1)[1][:-2] for c in response.content.split(b"--" + boundary.encode())[1:-1]]


async def test_wado_uri(client, series):
    ct, mr = series
    one = ct[0]
    q = {"requestType": "WADO", "studyUID": one.StudyInstanceUID, "seriesUID": one.SeriesInstanceUID,
         "objectUID": one.SOPInstanceUID}
    r = await client.get("/wado", params=q, headers=creds("view"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content.startswith(b"\xff\xd8")
    r = await client.get("/wado", params={**q, "contentType": "image/png", "rows": "64"}, headers=creds("view"))
    assert r.content.startswith(b"\x89PNG") and Image.open(io.BytesIO(r.content)).size == (64, 64)
    r = await client.get("/wado", params={**q, "contentType": "application/dicom"}, headers=creds("view"))
    assert r.status_code == 200 and pydicom.dcmread(io.BytesIO(r.content)).SOPInstanceUID == one.SOPInstanceUID

    mq = {"requestType": "WADO", "studyUID": mr.StudyInstanceUID, "seriesUID": mr.SeriesInstanceUID,
          "objectUID": mr.SOPInstanceUID, "contentType": "application/dicom"}
    r = await client.get("/wado", params={**mq, "transferSyntax": ExplicitVRLittleEndian}, headers=creds("view"))
    got = pydicom.dcmread(io.BytesIO(r.content))
    assert got.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian and (got.pixel_array == mr.pixel_array).all()
    r = await client.get("/wado", params={**mq, "transferSyntax": "1.2.840.10008.1.2.4.50"}, headers=creds("view"))
    assert r.status_code == 406

    assert (await client.get("/wado", params=q)).status_code == 401
    bad = await client.get("/wado", params={**q, "requestType": "X"}, headers=creds("view"))
    assert bad.status_code == 400 and bad.json()["suberror"] == "invalid_request_type"
    r = await client.get("/wado", params={**q, "objectUID": "1.2.3"}, headers=creds("view"))
    assert r.status_code == 404
    r = await client.get("/wado", params={**q, "project": "other"}, headers=creds("view"))
    assert r.status_code == 404  # not a member of that project


async def test_thumbnails_and_rendered_study_and_series(client, series):
    ct, mr = series
    study, ser = ct[0].StudyInstanceUID, ct[0].SeriesInstanceUID
    base = f"/dicomweb/chest/studies/{study}"
    for path in ("/thumbnail", f"/series/{ser}/thumbnail", f"/series/{ser}/instances/{ct[1].SOPInstanceUID}/thumbnail",
                 f"/series/{ser}/instances/{ct[1].SOPInstanceUID}/frames/1/thumbnail"):
        r = await client.get(base + path, headers=creds("view"))
        assert r.status_code == 200 and r.content.startswith(b"\x89PNG"), path
        assert max(Image.open(io.BytesIO(r.content)).size) == 128
    r = await client.get(base + f"/series/{ser}/thumbnail", headers={**creds("view"), "Accept": "image/jpeg"})
    assert r.content.startswith(b"\xff\xd8")

    r = await client.get(base + f"/series/{ser}/rendered", headers=creds("view"))
    parts = parts_of(r)
    assert r.status_code == 200 and 'type="image/png"' in r.headers["content-type"]
    assert len(parts) == 3 and all(p.startswith(b"\x89PNG") for p in parts)
    r = await client.get(base + "/rendered", headers={**creds("view"), "Accept": 'multipart/related; type="image/jpeg"'},
                         params={"viewport": "32,32"})
    parts = parts_of(r)
    assert len(parts) == 3 and all(Image.open(io.BytesIO(p)).size == (32, 32) for p in parts)
    r = await client.get(base + "/rendered", headers={**creds("view"), "Accept": "image/gif"})
    assert r.status_code == 406
