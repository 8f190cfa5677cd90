"""Study and series pages: download as zip (de-identified when the project says so), delete (managers, audited)."""

import io
import zipfile

import pydicom
import pytest

from portal import projects
from portal.dicom import samples
from portal.tables import AuditEvent, Instance, Project, Series, Study
from tests.helpers import creds, form_post, login, make_project


@pytest.fixture
async def study(app, client, tmp_path):
    """One study of two series (3 + 1 instances) in project p."""
    await make_project("p", {"rev": "reviewer", "boss": "manager"})
    study_uid = pydicom.uid.generate_uid()
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "a", 3, study_uid=study_uid,
                                patient_id="HK-1")
    files += [samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "b.dcm", study_uid=study_uid,
                              patient_id="HK-1")]
    for f in files:
        with open(f, "rb") as fh:
            r = await client.post("/api/v1/instance/upload/", headers=creds("boss"), data={"Project": "p"},
                                  files={"file": ("x.dcm", fh)})
            assert r.status_code == 200, r.text
    uids = sorted({pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in files},
                  key=lambda u: -sum(pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID == u for f in files))
    return {"study": study_uid, "series": uids}


def members(response) -> dict[str, pydicom.Dataset]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(response.content))
    return {n: pydicom.dcmread(io.BytesIO(zf.read(n))) for n in zf.namelist()}


async def test_download_a_series_and_a_study(client, study):
    await login(client, "rev")
    page = await client.get(f"/projects/p/series/{study['series'][0]}")
    assert 'id="download"' in page.text and 'id="copy-link"' in page.text and 'id="delete"' not in page.text
    r = await client.get(f"/projects/p/series/{study['series'][0]}/download")
    files = members(r)
    assert len(files) == 3 and all(n.startswith("HK-1/CT-") for n in files)
    assert {ds.PatientID for ds in files.values()} == {"HK-1"}
    assert 'filename="HK-1-' in r.headers["content-disposition"]
    r = await client.get(f"/projects/p/studies/{study['study']}/download")
    assert len(members(r)) == 4
    assert await AuditEvent.count().where(AuditEvent.action == "downloaded") == 2


async def test_download_is_deidentified_when_the_project_says_so(client, study):
    await login(client, "boss")
    assert 'name="download_deidentified"' in (await client.get("/projects/p/settings")).text
    r = await form_post(client, "/projects/p/settings/downloads", {"download_deidentified": "on"})
    assert r.status_code == 303
    assert projects.settings_of(await Project.objects().get(Project.name == "p"))["download_deidentified"] is True
    client.cookies.clear()
    await login(client, "rev")
    assert (await form_post(client, "/projects/p/settings/downloads", {})).status_code == 403
    page = await client.get(f"/projects/p/studies/{study['study']}")
    assert "Download zip (de-identified)" in page.text
    r = await client.get(f"/projects/p/studies/{study['study']}/download")
    files = members(r)
    assert len(files) == 4 and "deidentified" in r.headers["content-disposition"]
    for name, ds in files.items():
        assert ds.PatientID != "HK-1" and "HK-1" not in name and ds.PatientIdentityRemoved == "YES"
    assert (await client.get("/projects/p/studies/1.2.3/download")).status_code == 404


async def test_only_managers_delete_and_it_is_audited(client, study):
    series_uid = study["series"][1]
    await login(client, "rev")
    assert (await form_post(client, f"/projects/p/series/{series_uid}/delete", {})).status_code == 403
    client.cookies.clear()
    await login(client, "boss")
    page = await client.get(f"/projects/p/series/{series_uid}")
    assert 'id="delete"' in page.text and "data-confirm=" in page.text
    r = await form_post(client, f"/projects/p/series/{series_uid}/delete", {})
    assert r.status_code == 303 and r.headers["location"] == f"/projects/p/studies/{study['study']}"
    assert not await Series.exists().where(Series.series_instance_uid == series_uid)
    assert await Instance.count() == 3
    event = await AuditEvent.objects().get(AuditEvent.action == "series_deleted")
    assert event.username == "boss" and series_uid in event.object
    r = await form_post(client, f"/projects/p/studies/{study['study']}/delete", {})
    assert r.status_code == 303 and r.headers["location"] == "/projects/p"
    assert await Study.count() == 0 and await Instance.count() == 0
    assert await AuditEvent.count().where(AuditEvent.action == "study_deleted") == 1


async def test_the_series_page_has_the_studys_strip_and_a_tag_browser(client, study):
    await login(client, "rev")
    page = await client.get(f"/projects/p/series/{study['series'][0]}")
    strip = page.text.split('id="series-strip"')[1].split("</nav>")[0]
    assert all(f"/series/{uid}" in strip for uid in study["series"]) and strip.count('aria-current="true"') == 1
    assert 'id="tag-browser"' in page.text
    sop = (await Instance.objects().first()).sop_instance_uid
    r = await client.get(f"/projects/p/instances/{sop}/tags", headers={"HX-Request": "true"})
    assert r.status_code == 200 and "Patient ID" in r.text and "HK-1" in r.text and "(0010,0020)" in r.text
    assert "Pixel Data" not in r.text
    assert (await client.get("/projects/p/instances/1.2.3/tags")).status_code == 404
