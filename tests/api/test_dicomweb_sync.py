"""A project kept in sync with Orthanc over DICOMweb: QIDO finds the studies of the project's query, WADO-RS
brings the new ones through ingest; a second pull brings nothing twice."""

import datetime as dt

import httpx
import pydicom

from portal import projects
from portal.dicom import samples
from portal.network import dicomweb_pull, nodes
from portal.tables import Instance, Study, SyncRun
from tests.helpers import creds, make_project
from tests.network import orthanc  # noqa: F401 (fixture)


def put_in_orthanc(url: str, files) -> None:
    for f in files:
        r = httpx.post(f"{url}/instances", content=f.read_bytes(), timeout=30)
        assert r.status_code == 200, r.text


async def test_pull_new_studies_of_the_query(client, app, orthanc, tmp_path):
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    mr = samples.make_series(samples.sample_path("MR_small.dcm"), tmp_path / "mr", 3, patient_id="SYNC-1")
    ct = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "ct", 2, patient_id="SYNC-2")
    old = samples.make_series(samples.sample_path("MR_small.dcm"), tmp_path / "old", 1, patient_id="SYNC-3")
    for files, date in ((mr, today), (ct, today), (old, "20000101")):
        for f in files:
            ds = pydicom.dcmread(f)
            ds.StudyDate = date
            ds.save_as(f, enforce_file_format=True)
    put_in_orthanc(orthanc, mr + ct + old)

    p = await make_project("mirror", {"boss": "manager"})
    await nodes.create("orthanc", ae_title="ORTHANC", host="127.0.0.1", port=4442, dicomweb_url=f"{orthanc}/dicom-web")
    await projects.update_settings(p, {"dicomweb_sync": {"node": "orthanc", "query": {"ModalitiesInStudy": "MR"},
                                                         "days": 30}})
    run = await dicomweb_pull.create_run(p, trigger="cli")
    outcome = await dicomweb_pull.execute(run["id"])
    assert outcome["state"] == "done", outcome
    assert (outcome["studies_found"], outcome["studies_new"], outcome["stored"]) == (1, 1, 3)
    uid = pydicom.dcmread(mr[0]).StudyInstanceUID
    assert [s["study_instance_uid"] for s in await Study.select()] == [uid]
    assert await Instance.count() == 3

    again = await dicomweb_pull.execute((await dicomweb_pull.create_run(p, trigger="cli"))["id"])
    assert again["studies_new"] == 0 and await Instance.count() == 3
    rows = await SyncRun.select().where(SyncRun.kind == "dicomweb")
    assert [r["state"] for r in rows] == ["done", "done"]

    r = await client.get("/api/v1/projects/mirror/runs", headers=creds("boss"))
    assert [x["kind"] for x in r.json()][:2] == ["dicomweb", "dicomweb"]


async def test_schedule_and_refusals(client, app):
    p = await make_project("mirror", {"boss": "manager"})
    r = await client.post("/api/v1/projects/mirror/dicomweb-sync", headers=creds("boss"))
    assert r.status_code == 400 and r.json()["suberror"] == "no_sync_node"
    await nodes.create("plain", ae_title="PLAIN", host="127.0.0.1", port=104)
    await projects.update_settings(p, {"dicomweb_sync": {"node": "plain", "every_minutes": 60}})
    r = await client.post("/api/v1/projects/mirror/dicomweb-sync", headers=creds("boss"))
    assert r.status_code == 400 and r.json()["suberror"] == "node_without_dicomweb"
    assert [x.name for x in await dicomweb_pull.due()] == ["mirror"]


async def test_decisions_go_back_as_sr(client, app, orthanc, tmp_path):
    from portal.auth import accounts
    from portal.review import decisions
    from portal.tables import Series

    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "ct", 1, patient_id="SYNC-4")
    put_in_orthanc(orthanc, files)
    p = await make_project("mirror", {"rev": "reviewer"})
    await nodes.create("orthanc", ae_title="ORTHANC", host="127.0.0.1", port=4442, dicomweb_url=f"{orthanc}/dicom-web")
    await projects.update_settings(p, {"dicomweb_sync": {"node": "orthanc", "push_decisions": True}})
    first = await dicomweb_pull.execute((await dicomweb_pull.create_run(p, trigger="cli"))["id"])
    assert first["stored"] == 1 and first["decisions_pushed"] == 0
    series = await Series.objects().first()
    await decisions.record(p, series, await accounts.get("rev"), "U", note="motion")
    second = await dicomweb_pull.execute((await dicomweb_pull.create_run(p, trigger="cli"))["id"])
    assert second["decisions_pushed"] == 1, second
    study = pydicom.dcmread(files[0]).StudyInstanceUID
    found = httpx.get(f"{orthanc}/dicom-web/studies/{study}/series", params={"Modality": "SR"}).json()
    assert len(found) == 1
    sr_series = found[0]["0020000E"]["Value"][0]
    meta = httpx.get(f"{orthanc}/dicom-web/studies/{study}/series/{sr_series}/metadata").json()[0]
    texts = [i.get("0040A160", {}).get("Value", [""])[0] for i in meta["0040A730"]["Value"]]
    assert "quality decision: U" in texts and "motion" in texts and "rev" in texts
    third = await dicomweb_pull.execute((await dicomweb_pull.create_run(p, trigger="cli"))["id"])
    assert third["decisions_pushed"] == 0  # each decision once
