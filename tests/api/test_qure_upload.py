"""Qure-style upload, hostile zips, and concurrent senders of one series."""

import asyncio
import io
import uuid
import zipfile

import pytest

from portal.dicom import samples
from portal.tables import Instance, Patient, Series, Study
from tests.helpers import creds, make_project


def related_body(files: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for data in files:
        out.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f'multipart/related; type="application/dicom"; boundary={boundary}'


@pytest.fixture
async def project(app):
    return await make_project("p", {"rev": "reviewer", "view": "viewer"})


async def test_multipart_related_upload(client, project, tmp_path):
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 4)
    body, ctype = related_body([f.read_bytes() for f in files])
    r = await client.post("/api/v1/studies", params={"Project": "p"}, content=body,
                          headers={**creds("rev"), "Content-Type": ctype})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["message"] == "Success" and len(out["series_instance_uids"]) == 1
    assert out["detailed_info"][0]["NumberOfSeriesRelatedInstances"] == 4
    assert await Instance.count() == 4


async def test_form_data_upload_at_alias_with_default_project(client, project, tmp_path):
    a = samples.restamp(samples.sample_path("MR_small.dcm"), tmp_path / "a.dcm")
    b = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "b.dcm")
    r = await client.post("/api/v1/upload", headers=creds("rev"),
                          files=[("files", ("a.dcm", a.read_bytes())), ("files", ("b.dcm", b.read_bytes()))])
    assert r.status_code == 200, r.text
    assert len(r.json()["series_instance_uids"]) == 2


async def test_no_dicom_is_400_and_wrong_type_415(client, project):
    body, ctype = related_body([b"just some text, not an image"])
    r = await client.post("/api/v1/studies", content=body, headers={**creds("rev"), "Content-Type": ctype})
    assert r.status_code == 400 and r.json()["message"] == "No DICOM files were uploaded!"
    r = await client.post("/api/v1/studies", content=b"{}", headers={**creds("rev"), "Content-Type": "application/json"})
    assert r.status_code == 415
    r = await client.post("/api/v1/studies", content=b"", headers={**creds("rev"), "Content-Type": ctype})
    assert r.status_code == 400
    assert await Instance.count() == 0


async def test_viewer_may_not_upload(client, project, tmp_path):
    body, ctype = related_body([samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "a.dcm").read_bytes()])
    r = await client.post("/api/v1/studies", content=body, headers={**creds("view"), "Content-Type": ctype})
    assert r.status_code == 403 and await Instance.count() == 0


async def test_zip_upload_and_hostile_zips(client, project, settings, tmp_path):
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 3)
    good = io.BytesIO()
    with zipfile.ZipFile(good, "w") as z:
        for f in files:
            z.write(f, f"folder/{f.name}")
    r = await client.post("/api/v1/upload", headers=creds("rev"), files={"file": ("series.zip", good.getvalue())})
    assert r.status_code == 200 and r.json()["detailed_info"][0]["NumberOfSeriesRelatedInstances"] == 3

    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../escape.dcm", files[0].read_bytes())
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("zeros.dcm", "w", force_zip64=True) as m:
            chunk = b"\0" * (1 << 20)
            for _ in range(300):
                m.write(chunk)
    from portal.archive import ingest

    old = ingest.MAX_ZIP_BYTES
    ingest.MAX_ZIP_BYTES = 100 * 1024 * 1024
    try:
        for name, data in (("evil.zip", evil.getvalue()), ("bomb.zip", bomb.getvalue())):
            r = await client.post("/api/v1/upload", headers=creds("rev"), files={"file": (name, data)})
            assert r.status_code == 400, r.text
            assert r.json()["failed"][0]["reason"]
    finally:
        ingest.MAX_ZIP_BYTES = old
    assert await Instance.count() == 3
    assert not (tmp_path.parent / "escape.dcm").exists()
    leftovers = [p for p in (settings.data_dir / "tmp").rglob("*") if p.is_file()]
    assert leftovers == []


async def test_four_clients_sending_one_series_leave_no_duplicates(client, project, tmp_path):
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 8, patient_id="SAME")

    async def sender(order):
        for f in order:
            body, ctype = related_body([f.read_bytes()])
            r = await client.post("/api/v1/studies", content=body, headers={**creds("rev"), "Content-Type": ctype})
            assert r.status_code == 200, r.text

    await asyncio.gather(*(sender(files[i:] + files[:i]) for i in range(4)))
    assert await Instance.count() == 8
    assert await Series.count() == 1 and await Study.count() == 1 and await Patient.count() == 1
