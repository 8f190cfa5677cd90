"""DICOM nodes (API, CLI, C-ECHO) and sending series to them: C-STORE to dcmtk's storescp, STOW-RS to Orthanc."""

import asyncio
import json
import os
import subprocess
import sys

import httpx
import pydicom
import pytest

from portal import dimse
from portal.archive import ingest
from portal.dicom import samples
from portal.network import send
from portal.tables import AuditEvent, SendJob
from tests.helpers import creds, make_project, make_user
from tests.network import free_port, orthanc, storescp  # noqa: F401 (fixtures)


async def wait_job(client, url, headers, states=("done", "failed"), timeout=60):
    for _ in range(int(timeout * 10)):
        job = (await client.get(url, headers=headers)).json()
        if job["state"] in states:
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"send job still {job['state']}: {job}")


@pytest.fixture
async def people(app):
    await make_user("root", admin=True)
    chest = await make_project("chest", {"boss": "manager", "rev": "reviewer"})
    return chest


@pytest.fixture
async def two_series(people, tmp_path):
    study = pydicom.uid.generate_uid()
    made = []
    for n, src in ((3, "CT_small.dcm"), (2, "MR_small.dcm")):
        files = samples.make_series(samples.sample_path(src), tmp_path / src, n, study_uid=study, patient_id="P-9")
        for f in files:
            assert (await ingest.ingest_file(f, people)).status == "stored"
        made.append([pydicom.dcmread(f, stop_before_pixels=True) for f in files])
    return made


async def test_nodes_api_is_for_administrators(client, people):
    body = {"name": "pacs", "ae_title": "pacs1", "host": "127.0.0.1", "port": 11112}
    assert (await client.get("/api/v1/nodes", headers=creds("boss"))).status_code == 403
    assert (await client.post("/api/v1/nodes", json=body, headers=creds("boss"))).status_code == 403
    r = await client.post("/api/v1/nodes", json=body, headers=creds("root"))
    assert r.status_code == 201, r.text
    assert r.json()["ae_title"] == "PACS1" and r.json()["dicomweb_url"] is None
    assert (await client.post("/api/v1/nodes", json=body, headers=creds("root"))).status_code == 409
    bad = await client.post("/api/v1/nodes", json={**body, "name": "x", "ae_title": "X", "port": 70000},
                            headers=creds("root"))
    assert bad.status_code == 400 and bad.json()["suberror"] == "invalid_port"
    listed = (await client.get("/api/v1/nodes", headers=creds("root"))).json()
    assert [n["name"] for n in listed] == ["pacs"]
    assert await AuditEvent.exists().where(AuditEvent.action == "node_created")


async def test_echo_answers_for_a_live_node_and_says_why_for_a_dead_one(client, people):
    receiver = dimse.Receiver("127.0.0.1", 0, default_project="chest")
    receiver.start()
    try:
        for name, port in (("live", receiver.port), ("dead", free_port())):
            await client.post("/api/v1/nodes", json={"name": name, "ae_title": name, "host": "127.0.0.1",
                                                     "port": port}, headers=creds("root"))
        live = (await client.post("/api/v1/nodes/live/echo", headers=creds("root"))).json()
        dead = (await client.post("/api/v1/nodes/dead/echo", headers=creds("root"))).json()
    finally:
        await receiver.stop()
    assert live["ok"] is True and "succeeded" in live["detail"]
    assert dead["ok"] is False and "127.0.0.1" in dead["detail"]


def cli(lb_env, *args):
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], env={**os.environ, **lb_env},
                          capture_output=True, text=True, timeout=60)


async def test_cli_node_add_list_echo(app, lb_env, storescp):
    port, _ = storescp
    out = cli(lb_env, "node", "add", "dest", "--aet", "DEST", "--host", "127.0.0.1", "--port", str(port))
    assert out.returncode == 0, out.stderr
    assert "dest" in cli(lb_env, "node", "list").stdout
    echo = cli(lb_env, "node", "echo", "dest")
    assert echo.returncode == 0 and "succeeded" in echo.stdout, echo.stdout + echo.stderr
    again = cli(lb_env, "node", "add", "dest", "--aet", "OTHER", "--host", "h", "--port", "1")
    assert again.returncode == 1 and "exists already" in again.stderr
    missing = cli(lb_env, "node", "echo", "nobody")
    assert missing.returncode == 1 and "No DICOM node" in missing.stderr


async def test_send_a_series_and_a_study_over_c_store(client, two_series, storescp, consumer):
    port, out = storescp
    await client.post("/api/v1/nodes", json={"name": "dest", "ae_title": "DEST", "host": "127.0.0.1", "port": port},
                      headers=creds("root"))
    ct, mr = two_series
    r = await client.post("/api/v1/projects/chest/send", json={"node": "dest", "series": [ct[0].SeriesInstanceUID]},
                          headers=creds("boss"))
    assert r.status_code == 202, r.text
    assert r.json()["status_url"] == f"/api/v1/projects/chest/send/{r.json()['id']}"
    job = await wait_job(client, r.json()["status_url"], creds("boss"))
    assert (job["state"], job["sent"], job["total"], job["failed"], job["attempts"]) == ("done", 3, 3, 0, 1)
    received = {pydicom.dcmread(p).SOPInstanceUID for p in out.iterdir()}
    assert received == {d.SOPInstanceUID for d in ct}

    r = await client.post("/api/v1/projects/chest/send", json={"node": "dest", "study": ct[0].StudyInstanceUID},
                          headers=creds("boss"))
    job = await wait_job(client, r.json()["status_url"], creds("boss"))
    assert job["state"] == "done" and job["sent"] == 5
    assert {pydicom.dcmread(p).SOPInstanceUID for p in out.iterdir()} == {d.SOPInstanceUID for d in ct + mr}
    # The received files are the stored ones, pixel for pixel.
    stored = pydicom.dcmread(next(p for p in out.iterdir() if pydicom.dcmread(p).SOPInstanceUID == mr[0].SOPInstanceUID))
    assert stored.PatientID == "P-9" and stored.Modality == "MR"

    history = (await client.get("/api/v1/projects/chest/send", headers=creds("boss"))).json()
    assert [j["state"] for j in history] == ["done", "done"]
    actions = [r["action"] for r in await AuditEvent.select(AuditEvent.action).order_by(AuditEvent.id)]
    assert actions.count("send_queued") == 2 and actions.count("send_done") == 2


async def test_send_refusals(client, two_series):
    await client.post("/api/v1/nodes", json={"name": "dest", "ae_title": "DEST", "host": "127.0.0.1", "port": 104},
                      headers=creds("root"))
    uid = two_series[0][0].SeriesInstanceUID
    assert (await client.post("/api/v1/projects/chest/send", json={"node": "dest", "series": [uid]},
                              headers=creds("rev"))).status_code == 403
    r = await client.post("/api/v1/projects/chest/send", json={"node": "nowhere", "series": [uid]}, headers=creds("boss"))
    assert r.status_code == 404 and r.json()["suberror"] == "node_not_found"
    r = await client.post("/api/v1/projects/chest/send", json={"node": "dest", "series": ["1.2.3"]}, headers=creds("boss"))
    assert r.status_code == 404
    r = await client.post("/api/v1/projects/chest/send", json={"node": "dest"}, headers=creds("boss"))
    assert r.status_code == 400 and r.json()["suberror"] == "no_data_submitted"
    assert await SendJob.count() == 0


async def test_an_unreachable_node_is_retried_then_failed(client, two_series, consumer, monkeypatch):
    monkeypatch.setattr(send, "RETRY_DELAYS_S", (0, 0))
    await client.post("/api/v1/nodes", json={"name": "gone", "ae_title": "GONE", "host": "127.0.0.1",
                                             "port": free_port()}, headers=creds("root"))
    r = await client.post("/api/v1/projects/chest/send", json={"node": "gone", "series": [
        two_series[1][0].SeriesInstanceUID]}, headers=creds("boss"))
    job = await wait_job(client, r.json()["status_url"], creds("boss"), states=("failed",))
    assert job["attempts"] == send.MAX_ATTEMPTS and job["sent"] == 0 and job["failed"] == 2
    assert "could not be reached" in job["error"]
    row = await AuditEvent.select().where(AuditEvent.action == "send_failed").first()
    detail = json.loads(row["detail"]) if isinstance(row["detail"], str) else row["detail"]
    assert detail["attempts"] == 3 and detail["node"] == "gone"


async def test_send_over_dicomweb_stow_to_orthanc(client, two_series, orthanc, consumer):
    await client.post("/api/v1/nodes", json={"name": "orthanc", "ae_title": "ORTHANC", "host": "127.0.0.1",
                                             "port": 4442, "dicomweb_url": f"{orthanc}/dicom-web"},
                      headers=creds("root"))
    ct, mr = two_series
    r = await client.post("/api/v1/projects/chest/send", json={"node": "orthanc", "study": ct[0].StudyInstanceUID},
                          headers=creds("boss"))
    assert r.json()["via"] == "dicomweb"
    job = await wait_job(client, r.json()["status_url"], creds("boss"))
    assert (job["state"], job["sent"]) == ("done", 5), job
    async with httpx.AsyncClient() as http:
        found = (await http.get(f"{orthanc}/dicom-web/studies/{ct[0].StudyInstanceUID}/instances")).json()
    assert {i["00080018"]["Value"][0] for i in found} == {d.SOPInstanceUID for d in ct + mr}
