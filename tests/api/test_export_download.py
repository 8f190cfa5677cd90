"""A finished export's file (issue 17): `download_url` on the run, streamed to the person who started it (API
and the project page's run display), exactly the file that run wrote even after a newer export replaced it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx

from portal import projects, storage
from portal.archive import ingest_file
from portal.auth import accounts
from portal.dicom import open_dataset, samples
from portal.review import decisions
from portal.tables import Series
from tests.helpers import creds, login, make_project, make_user


async def _project(tmp_path):
    p = await make_project("chest", {"mgr": "manager", "mgr2": "manager", "view": "viewer"})
    await make_user("stranger")
    await projects.update_settings(p, {"ai_routing": []})
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "src", 2)
    for f in files:
        assert (await ingest_file(f, p)).ok
    uid = open_dataset(files[0], stop_before_pixels=True).SeriesInstanceUID
    return await projects.get("chest"), await Series.objects().get(Series.key == f"{p.id}:{uid}")


async def _export(client, user: str, fmt: str = "json") -> dict:
    r = await client.post("/api/v1/projects/chest/export", headers=creds(user), json={"format": fmt})
    assert r.status_code == 202, r.text
    assert r.json()["run"]["download_url"] is None  # queued: nothing to download yet
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = (await client.get(r.json()["status_url"], headers=creds(user))).json()
        if run["state"] in ("done", "failed"):
            assert run["state"] == "done", run
            return run
        await asyncio.sleep(0.2)
    raise AssertionError("export did not finish")


async def test_the_starter_downloads_the_file_others_do_not(client, consumer, tmp_path):
    p, series = await _project(tmp_path)
    run = await _export(client, "mgr")
    assert run["download_url"] == f"/api/v1/projects/chest/runs/{run['id']}/file"
    r = await client.get(run["download_url"], headers=creds("mgr"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert 'filename="chest.json"' in r.headers["content-disposition"]
    first = r.content
    assert first == Path(run["path"]).read_bytes()
    # The copy in the store is what is served; from S3 a client may also fetch it directly (presigned).
    assert storage.current().read_bytes(run["summary"]["stored_key"]) == first
    if storage.current().kind == "s3":
        assert httpx.get(run["direct_url"]).content == first
    else:
        assert "direct_url" not in run
    part = await client.get(run["download_url"], headers={**creds("mgr"), "Range": "bytes=2-9"})
    assert part.status_code == 206 and part.content == first[2:10]
    assert part.headers["content-range"] == f"bytes 2-9/{len(first)}"
    assert len(json.loads(first)["projects"]["chest"]["experiments"]) == 1

    for user, status, suberror in (("mgr2", 403, "not_your_export"), ("view", 403, None), ("stranger", 404, None)):
        r = await client.get(run["download_url"], headers=creds(user))
        assert r.status_code == status, (user, r.text)
        assert set(r.json()) >= {"error", "suberror", "detail"}
        if suberror:
            assert r.json()["suberror"] == suberror
    assert (await client.get(run["download_url"])).status_code == 401
    # Nor does another manager get the presigned URL, which is the file to whoever holds it.
    status_url = f"/api/v1/projects/chest/runs/{run['id']}"
    assert "direct_url" not in (await client.get(status_url, headers=creds("mgr2"))).json()
    listed = {r["id"]: r for r in (await client.get("/api/v1/projects/chest/runs", headers=creds("mgr2"))).json()}
    assert "direct_url" not in listed[run["id"]]
    if storage.current().kind == "s3":
        mine = {r["id"]: r for r in (await client.get("/api/v1/projects/chest/runs", headers=creds("mgr"))).json()}
        assert httpx.get(mine[run["id"]]["direct_url"]).content == first

    # A newer export replaces the export file; the first run still hands out what it wrote (its backup).
    await decisions.record(p, series, await accounts.get("mgr"), "U", note="after the first export")
    second = await _export(client, "mgr2")
    assert second["path"] == run["path"] and Path(run["path"]).read_bytes() != first
    r = await client.get(run["download_url"], headers=creds("mgr"))
    assert r.status_code == 200 and r.content == first
    assert b"after the first export" in (await client.get(second["download_url"], headers=creds("mgr2"))).content

    # Once its copies are pruned and the file has changed, the first run's file is gone: said so, never 5xx.
    Path(run["summary"]["backup"]).unlink()
    storage.current().delete(run["summary"]["stored_key"])
    r = await client.get(run["download_url"], headers=creds("mgr"))
    assert r.status_code == 404 and r.json()["suberror"] == "file_not_found"

    # Import runs and unknown runs have no file.
    assert (await client.get("/api/v1/projects/chest/runs/999/file", headers=creds("mgr"))).status_code == 404


async def test_the_project_pages_run_display_links_the_file_for_its_starter(client, consumer, tmp_path):
    await _project(tmp_path)
    run = await _export(client, "mgr", "csv")
    portal_url = f"/projects/chest/sync/runs/{run['id']}/file"
    await login(client, "mgr")
    html = (await client.get(f"/projects/chest/sync/runs/{run['id']}")).text
    assert f'href="{portal_url}"' in html and "Download CSV" in html
    r = await client.get(portal_url)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content == Path(run["path"]).read_bytes() and r.content.startswith(b"project_name")

    client.cookies.clear()
    await login(client, "mgr2")
    html = (await client.get(f"/projects/chest/sync/runs/{run['id']}")).text
    assert portal_url not in html and 'data-state="done"' in html
    assert (await client.get(portal_url)).status_code == 403
