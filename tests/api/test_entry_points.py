"""Every HTTP entry point and the CLI store the same file the same way, through the one ingest path."""

import io
import subprocess
import sys
import uuid

import pytest

from portal.archive import storage
from portal.dicom import samples
from portal.tables import Instance, Patient, Series, Study
from tests.helpers import creds, form_post, login, make_project


def related(data: bytes) -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    body = f"--{b}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={b}'


@pytest.fixture
async def projects_ready(app):
    names = ["cad4tb", "qure", "stow", "browser", "cli"]
    for n in names:
        await make_project(n, {"rev": "reviewer"})
    return names


async def test_same_file_every_way_is_stored_identically(client, projects_ready, tmp_path, lb_env):
    f = samples.restamp(samples.sample_path("MR_small.dcm"), tmp_path / "one.dcm", patient_id="SAME-1")
    data = f.read_bytes()
    h = creds("rev")
    r = await client.post("/api/v1/instance/upload/", headers=h, data={"Project": "cad4tb"},
                          files={"file": ("one.dcm", data)})
    assert r.status_code == 200
    body, ctype = related(data)
    assert (await client.post("/api/v1/studies?Project=qure", content=body,
                              headers={**h, "Content-Type": ctype})).status_code == 200
    assert (await client.post("/dicomweb/stow/studies", content=body,
                              headers={**h, "Content-Type": ctype})).status_code == 200
    await login(client, "rev")
    r = await client.post("/projects/browser/upload", files={"file": ("one.dcm", data)}, data={"archive": "default"},
                          headers={"x-csrftoken": client.cookies.get("lightbox_csrf")})
    assert r.status_code == 200 and 'data-status="stored"' in r.text
    out = subprocess.run([sys.executable, "-m", "portal.cli", "ingest", str(f), "--project", "cli"],
                         env={**__import__("os").environ, **lb_env}, capture_output=True, text=True)
    assert out.returncode == 0 and "1 stored" in out.stdout, out.stderr

    rows = await Instance.select(Instance.project.name, Instance.sop_instance_uid, Instance.md5, Instance.file_key,
                                 Instance.series.series_instance_uid, Instance.series.study.patient.patient_id)
    assert sorted(r["project.name"] for r in rows) == sorted(projects_ready)
    assert len({(r["sop_instance_uid"], r["md5"], r["series.series_instance_uid"],
                 r["series.study.patient.patient_id"]) for r in rows}) == 1
    for r in rows:
        assert storage().read_bytes(r["file_key"]) == data  # byte-identical everywhere
    assert await Patient.count() == 5 and await Study.count() == 5 and await Series.count() == 5


async def test_oversized_body_is_413_and_leaves_nothing(client, projects_ready, tmp_path, monkeypatch, settings):
    from portal.routes import _uploads

    monkeypatch.setattr(_uploads, "MAX_UPLOAD_BYTES", 50_000)
    data = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "a.dcm").read_bytes()
    body, ctype = related(data * 2)
    r = await client.post("/api/v1/studies?Project=qure", content=body,
                          headers={**creds("rev"), "Content-Type": ctype})
    assert r.status_code == 413 and r.json()["error"] == "request_too_large"
    assert await Instance.count() == 0
    assert [p for p in (settings.data_dir / "tmp").rglob("*") if p.is_file()] == []


async def test_bad_usernames_and_duplicates_change_nothing(client, app):
    from portal.tables import User
    from tests.helpers import make_user

    await make_user("admin", admin=True)
    await login(client, "admin")
    before = await User.count()
    for data in ({"username": "admin", "password": "long-enough-1"},
                 {"username": "bad name", "password": "long-enough-1"},
                 {"username": "x" * 151, "password": "long-enough-1"},
                 {"username": "ok-name", "password": "short"},
                 {"username": "", "password": "long-enough-1"},
                 {"username": "ok-name", "password": "long-enough-1", "email": "not-an-email"}):
        r = await form_post(client, "/admin/users", data)
        assert r.status_code in (400, 409), data
        assert 'class="flash flash-error"' in r.text
    assert await User.count() == before
