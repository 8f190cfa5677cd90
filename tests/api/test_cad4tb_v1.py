"""The CAD4TB-style API v1, command for command, with its errors."""

import io
import zipfile

import pytest

from portal.dicom import samples
from portal.tables import Instance, Patient, Series, Study
from tests.helpers import creds, make_project, make_user, stored_keys

Q = {"Project": "p", "Archive": "default"}


async def upload(client, path, user="rev", **params):
    with open(path, "rb") as f:
        return await client.post("/api/v1/instance/upload/", headers=creds(user),
                                 data={**Q, **params}, files={"file": (path.name, f, "application/dicom")})


@pytest.fixture
async def project(app):
    return await make_project("p", {"rev": "reviewer", "view": "viewer", "boss": "manager"})


async def test_upload_then_get_every_level(client, project, tmp_path):
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 3, patient_id="PAT-1")
    for f in files:
        r = await upload(client, f)
        assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"}
    assert body["PatientID"] == "PAT-1"
    study, series = body["StudyInstanceUID"], body["SeriesInstanceUID"]

    r = await client.get("/api/v1/patient/get/", params={**Q, "PatientID": "PAT-1"}, headers=creds("view"))
    assert r.status_code == 200 and r.json()["PatientID"] == "PAT-1"
    assert set(r.json()) == {"PatientBirthDate", "PatientID", "PatientName", "PatientSex"}
    r = await client.get("/api/v1/patient/studies/list/", params={**Q, "PatientID": "PAT-1"}, headers=creds("view"))
    assert [s["StudyInstanceUID"] for s in r.json()] == [study]
    r = await client.get("/api/v1/study/get/", params={**Q, "PatientID": "PAT-1", "StudyInstanceUID": study},
                         headers=creds("view"))
    assert r.status_code == 200 and r.json()["StudyInstanceUID"] == study
    r = await client.get("/api/v1/patient/study/series/list/",
                         params={**Q, "PatientID": "PAT-1", "StudyInstanceUID": study}, headers=creds("view"))
    assert [s["SeriesInstanceUID"] for s in r.json()] == [series]
    params = {**Q, "PatientID": "PAT-1", "StudyInstanceUID": study, "SeriesInstanceUID": series}
    r = await client.get("/api/v1/series/get/", params=params, headers=creds("view"))
    assert r.json()["status"] == "stored" and "3 instance" in r.json()["status_message"]

    r = await client.get("/api/v1/dicom/get/", params=params, headers=creds("view"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        contents = sorted(z.read(n) for n in z.namelist())
    assert contents == sorted(f.read_bytes() for f in files)  # byte-identical


async def test_resend_is_idempotent_and_conflict_is_409(client, project, tmp_path):
    (f,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 1)
    assert (await upload(client, f)).json()["status"] == "stored"
    assert (await upload(client, f)).json()["status"] == "already_stored"
    assert await Instance.count() == 1
    changed = tmp_path / "changed.dcm"
    import pydicom

    ds = pydicom.dcmread(f)
    ds.PatientName = "Someone^Else"
    ds.save_as(changed)
    r = await upload(client, changed)
    assert r.status_code == 409 and r.json()["suberror"] == "conflict"
    assert await Instance.count() == 1


@pytest.mark.parametrize("name,content,suberror", [
    ("notes.dcm", b"hello, this is text not DICOM\n" * 20, "not_dicom"),
    ("empty.dcm", b"", "no_data_submitted"),
    ("image.dcm", b"\x89PNG\r\n\x1a\n" + b"\0" * 200, "not_dicom"),
])
async def test_bad_files_are_rejected_and_leave_nothing(client, project, settings, name, content, suberror):
    r = await client.post("/api/v1/instance/upload/", headers=creds("rev"), data=Q,
                          files={"file": (name, content, "application/dicom")})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_post_value" and r.json()["suberror"] == suberror
    assert await Instance.count() == 0 and await Patient.count() == 0
    assert stored_keys() == []


async def test_truncated_and_missing_uid_are_rejected(client, project, tmp_path):
    (f,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 1)
    data = f.read_bytes()
    r = await client.post("/api/v1/instance/upload/", headers=creds("rev"), data=Q,
                          files={"file": ("cut.dcm", data[: len(data) // 2], "application/dicom")})
    assert r.status_code == 400 and r.json()["suberror"] == "truncated"
    import pydicom

    ds = pydicom.dcmread(f)
    del ds.SOPInstanceUID
    ds.save_as(tmp_path / "nouid.dcm")
    r = await upload(client, tmp_path / "nouid.dcm")
    assert r.status_code == 400 and r.json()["suberror"] == "missing_uid"
    assert await Instance.count() == 0


async def test_errors_follow_the_reference(client, project, tmp_path):
    r = await client.get("/api/v1/patient/get/", params={**Q, "PatientID": "nobody"}, headers=creds("view"))
    assert r.status_code == 404 and r.json() == {**r.json(), "error": "object_not_found", "suberror": "patient_not_found"}
    r = await client.post("/api/v1/patient/get/", params={**Q, "PatientID": "x"}, headers=creds("view"))
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    r = await client.post("/api/v1/instance/upload/", headers=creds("rev"), data=Q)
    assert r.status_code in (400, 415)
    r = await client.post("/api/v1/instance/upload/", headers=creds("rev"), data=Q,
                          files={"other": ("x.txt", b"", "text/plain")})
    assert r.status_code == 400 and r.json()["suberror"] == "no_data_submitted"
    # A viewer may not upload; an outsider cannot see the project at all.
    (f,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 1)
    assert (await upload(client, f, user="view")).status_code == 403
    await make_user("outsider")
    r = await upload(client, f, user="outsider")
    assert r.status_code == 404 and r.json()["suberror"] == "project_not_found"
    assert await Instance.count() == 0


async def test_deletes_cascade_and_remove_files(client, project, settings, tmp_path):
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 2, patient_id="P9")
    for f in files:
        body = (await upload(client, f)).json()
    params = {**Q, "PatientID": "P9", "StudyInstanceUID": body["StudyInstanceUID"],
              "SeriesInstanceUID": body["SeriesInstanceUID"]}
    assert (await client.get("/api/v1/series/delete/", params=params, headers=creds("rev"))).status_code == 403
    r = await client.get("/api/v1/series/delete/", params=params, headers=creds("boss"))
    assert r.json() == {"status": "Ok"}
    assert await Instance.count() == 0 and await Series.count() == 0 and await Study.count() == 0
    assert stored_keys() == []
    r = await client.get("/api/v1/series/get/", params=params, headers=creds("boss"))
    assert r.status_code == 404

    for f in files:
        await upload(client, f)
    r = await client.get("/api/v1/patient/delete/", params={**Q, "PatientID": "P9"}, headers=creds("boss"))
    assert r.json() == {"status": "Ok"} and await Patient.count() == 0 and await Instance.count() == 0
    assert stored_keys() == []
