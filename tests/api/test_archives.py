"""Archives over the API and the CLI; an instance already stored in another archive says where; the CAD4TB
upload without a file answers as the reference does."""

import os
import subprocess
import sys

from portal.dicom import samples
from tests.helpers import creds, make_project

Q = {"Project": "chest"}


async def test_archives_api(client, app):
    await make_project("chest", {"boss": "manager", "rev": "reviewer"})
    r = await client.post("/api/v1/projects/chest/archives", json={"name": "site-b"}, headers=creds("boss"))
    assert r.status_code == 201 and r.json()["name"] == "site-b"
    assert (await client.post("/api/v1/projects/chest/archives", json={"name": "site-b"},
                              headers=creds("boss"))).status_code == 409
    assert (await client.post("/api/v1/projects/chest/archives", json={"name": "x"},
                              headers=creds("rev"))).status_code == 403
    r = await client.get("/api/v1/projects/chest/archives", headers=creds("rev"))
    assert [a["name"] for a in r.json()] == ["default", "site-b"]


async def test_archives_cli(app, lb_env):
    await make_project("chest")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "portal.cli", *args], env={**os.environ, **lb_env},
                              capture_output=True, text=True, timeout=60)

    assert cli("archive", "create", "chest", "site-b").returncode == 0
    assert cli("archive", "list", "chest").stdout.split() == ["default", "site-b"]
    again = cli("archive", "create", "chest", "site-b")
    assert again.returncode == 1 and "already has an archive" in again.stderr


async def test_an_instance_in_another_archive_says_where_it_is(client, app, tmp_path):
    await make_project("chest", {"rev": "reviewer", "boss": "manager"})
    await client.post("/api/v1/projects/chest/archives", json={"name": "b"}, headers=creds("boss"))
    (f,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 1, patient_id="TWO-1")

    async def upload(archive):
        with open(f, "rb") as fh:
            return await client.post("/api/v1/instance/upload/", headers=creds("rev"),
                                     data={**Q, "Archive": archive}, files={"file": ("a.dcm", fh.read())})

    assert (await upload("default")).json()["status"] == "stored"
    again = (await upload("b")).json()
    assert again["status"] == "already_stored" and again["Archive"] == "default"
    assert "archive 'default'" in again["detail"]
    r = await client.get("/api/v1/patient/get/", params={**Q, "Archive": "default", "PatientID": "TWO-1"},
                         headers=creds("rev"))
    assert r.status_code == 200
    assert "Archive" not in (await upload("default")).json()  # same archive: nothing to explain


async def test_upload_without_a_file_is_invalid_post_value(client, app):
    await make_project("chest", {"rev": "reviewer"})
    for kw in ({"data": Q}, {}, {"json": Q}):
        r = await client.post("/api/v1/instance/upload/", headers=creds("rev"), **kw)
        assert r.status_code == 400, kw
        assert (r.json()["error"], r.json()["suberror"]) == ("invalid_post_value", "no_data_submitted")
