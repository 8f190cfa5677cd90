"""Background work beside the portal: a slow task never holds up requests, a long job is not taken for a stuck
one, a restart queues again what a crash interrupted and clears what it left on disk, and queries whose `IN`
list grows with a project stay within the drivers' argument limits."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from portal import clock
from portal.archive import ingest
from portal.dicom import samples
from portal.inference import jobs
from portal.tables import InferenceJob, Instance, Series, SyncRun
from portal.tasks import runner
from portal.tasks.queue import huey
from tests.helpers import make_project

_STARTED, _FINISHED = threading.Event(), threading.Event()


@huey.task()
def hold_the_loop(seconds: float) -> None:
    """A task whose coroutine blocks its loop, as a CPU-heavy step (an export's serialisation) does."""

    async def busy():
        from portal.tables import User

        await User.count()
        _STARTED.set()
        time.sleep(seconds)
        await User.count()

    runner.run(busy())
    _FINISHED.set()


async def test_a_slow_task_does_not_hold_up_requests(app, client, consumer):
    """Inside the served app (its lifespan entered, pool open), with the embedded consumer running a task
    that blocks its own loop for seconds: /healthz and a page answer while the task is still busy."""
    _STARTED.clear()
    _FINISHED.clear()
    async with app.lifespan():
        hold_the_loop(6)
        assert await asyncio.to_thread(_STARTED.wait, 60)
        health = await client.get("/healthz")
        login = await client.get("/login")
        busy = not _FINISHED.is_set()
        assert health.status_code == 200 and health.json()["status"] == "ok" and login.status_code == 200
        assert busy, "the requests were answered only after the task had finished"
        assert await asyncio.to_thread(_FINISHED.wait, 60)


async def _series(tmp_path):
    p = await make_project("bg")
    path = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path, 1)[0]
    r = await ingest.ingest_file(path, p)
    assert r.ok, r.reason
    return p, await Series.objects().get(Series.series_instance_uid == r.series_instance_uid)


async def _job(p, series, **changes) -> int:
    job = InferenceJob(**{"project": p.id, "series": series.id, "model_name": "fake", "model_version": "1",
                          "state": "queued", "queued_at": clock.now(), **changes})
    await job.save()
    return job.id


def _dead_worker() -> str:
    """The name a process of this machine that has since exited would have written."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{socket.gethostname()[:60]}:{proc.pid}:{int(time.time() * 1000) - 5000:x}"


async def test_a_long_job_sends_heartbeats_and_runs_once(app, tmp_path, monkeypatch):
    """A job running well past the stuck-job timeout is never taken for stuck: its heartbeat is sent while the
    model runs, so the periodic recovery finds nothing and the job runs once."""
    from portal.tasks import inference
    from portal.tasks.inference import run_job

    p, series = await _series(tmp_path)
    job_id = await _job(p, series)
    monkeypatch.setattr(jobs, "HEARTBEAT_S", 0.2)
    monkeypatch.setattr(jobs.models, "model_dir", lambda name, version: str(tmp_path))
    runs = []

    def slow_model(paths, model_dir):
        runs.append(paths)
        time.sleep(4)
        return {"scores": {"quality": 0.9}, "report": "fine", "heatmap_png": b""}

    monkeypatch.setattr(inference, "score", slow_model)
    worker = asyncio.ensure_future(asyncio.to_thread(run_job.call_local, job_id))
    recovered = []
    while not worker.done():
        await asyncio.sleep(0.3)
        job = await InferenceJob.objects().get(InferenceJob.id == job_id)
        if job.state == "running":
            recovered += await jobs.stuck(dt.timedelta(seconds=1.5))
    await worker
    job = await InferenceJob.objects().get(InferenceJob.id == job_id)
    assert recovered == [] and len(runs) == 1
    assert job.state == "done" and job.attempts == 1 and job.worker == runner.worker_id()
    assert await jobs.start(job_id) is None  # a second message for a finished job does nothing


async def test_a_job_is_claimed_once(app, tmp_path):
    p, series = await _series(tmp_path)
    job_id = await _job(p, series)
    first, second = await jobs.start(job_id, "a"), await jobs.start(job_id, "b")
    assert first is not None and second is None
    assert (await InferenceJob.objects().get(InferenceJob.id == job_id)).worker == "a"


async def test_work_a_crash_interrupted_is_queued_again_at_start(app, tmp_path):
    from portal.tasks import maintenance

    p, series = await _series(tmp_path)
    dead, now = _dead_worker(), clock.now()  # heartbeats just now: the stuck-job timeout would wait minutes
    crashed = await _job(p, series, state="running", attempts=1, started_at=now, heartbeat_at=now, worker=dead)
    elsewhere = await _job(p, series, state="running", attempts=1, started_at=now, heartbeat_at=now,
                           worker="another-machine:123:abc")
    alive = await _job(p, series, state="running", attempts=1, started_at=now, heartbeat_at=now,
                       worker=runner.worker_id())
    export = SyncRun(project=p.id, kind="export", trigger="portal", state="running", queued_at=now, started_at=now,
                     worker=dead)
    cli = SyncRun(project=p.id, kind="import", trigger="cli", state="running", queued_at=now, started_at=now,
                  worker=dead)
    await export.save()
    await cli.save()
    huey.flush()

    summary = await asyncio.to_thread(maintenance.recover_at_start)

    assert summary["jobs"] == 1 and summary["runs"] == 1
    states = {j["id"]: j["state"] for j in await InferenceJob.select(InferenceJob.id, InferenceJob.state)}
    assert states == {crashed: "retrying", elsewhere: "running", alive: "running"}
    assert (await SyncRun.objects().get(SyncRun.id == export.id)).state == "queued"
    assert (await SyncRun.objects().get(SyncRun.id == cli.id)).state == "failed"
    queued = sorted((t.name.rsplit(".", 1)[-1], t.args) for t in huey.pending())
    assert queued == [("run_exchange", (export.id,)), ("run_job", (crashed,))]
    huey.flush()


async def test_a_restart_removes_what_a_crash_left_on_disk(app, settings, tmp_path):
    from portal.tasks import maintenance

    from portal import storage

    if storage.current().kind != "local":
        pytest.skip("back-dates files on local disk; test_storage.py sweeps the S3 store")
    p, series = await _series(tmp_path)
    store, data = storage.current().root, settings.data_dir
    kept_instance = store / (await Instance.select(Instance.file_key).first())["file_key"]
    old = time.time() - 3600

    def make(path, when=old):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
        os.utime(path, (when, when))
        return path

    orphan = make(store / storage.current().key_for("1.2.3.4.1"))  # the names instance files are stored under
    fresh_orphan = make(store / storage.current().key_for("1.2.3.4.2"), when=time.time())
    partial = make(orphan.parent / ".tmp-abc123.part")
    mail = make(store / "mail" / "0123456789abcdef")  # not an instance file: never taken for an orphan
    spooled = make(data / "tmp" / "upload-old" / "body-1.dcm")
    os.utime(spooled.parent, (old, old))
    arriving = make(data / "tmp" / "upload-new" / "body-2.dcm", when=time.time())
    zip_scratch = make(data / "lightbox-zip-x1" / "a.dcm")
    os.utime(zip_scratch.parent, (old, old))
    export_part = make(data / "exports" / "bg" / ".bg.json.abcd1234.part")
    os.utime(kept_instance, (old, old))

    importing = SyncRun(project=p.id, kind="import", trigger="portal", state="running", queued_at=clock.now(),
                        worker=runner.worker_id())
    await importing.save()
    first = await asyncio.to_thread(maintenance.recover_at_start)
    assert first["orphans"] == 0 and orphan.exists()  # an import is placing files: the store waits
    await SyncRun.update({SyncRun.state: "done"}).where(SyncRun.id == importing.id)

    await asyncio.to_thread(maintenance.recover_at_start)
    gone = [orphan, partial, spooled.parent, zip_scratch.parent, export_part]
    kept = [kept_instance, fresh_orphan, mail, arriving]
    assert [p for p in gone if p.exists()] == [] and [p for p in kept if not p.exists()] == []
    assert {p.name for p in (data / "tmp").iterdir()} == {"upload-new"}


async def test_an_export_of_more_ai_jobs_than_a_query_takes_arguments(app, tmp_path):
    """33,000 finished jobs: the export's `IN` list of job ids goes in chunks (asyncpg takes 32,767 arguments,
    SQLite 32,766 variables)."""
    from portal.exchange.exporter import snapshot

    p, series = await _series(tmp_path)
    now = clock.now()
    n = 33_000
    for start in range(0, n, 1000):
        await InferenceJob.insert(*[InferenceJob(project=p.id, series=series.id, model_name="fake", model_version="1",
                                                 state="done", attempts=1, queued_at=now, finished_at=now)
                                    for _ in range(start, min(start + 1000, n))])
    document = await snapshot(p)
    scans = [s for e in document["projects"]["bg"]["experiments"].values() for s in e["scans"].values()]
    assert len(scans) == 1 and len(scans[0]["ai_results"]) == n


async def test_embedded_exports_and_imports_run_in_a_child_process(client, consumer, tmp_path):
    """Under `lightbox serve` (offloaded work isolated), an export's CPU work runs in a child process, not on the
    web process's threads (they share its GIL); the run ends done all the same, and progress the child keeps
    in memory (an SQLite import's) comes back to the portal's process. Model work has a process of its own."""
    from pathlib import Path

    from portal import projects
    from portal.exchange import runs
    from portal.tasks import offload
    from tests.helpers import creds

    p = await make_project("off", {"mgr": "manager"})
    for f in samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "s", 2):
        await ingest.ingest_file(f, p)
    await projects.update_settings(p, {"export_path": str(tmp_path / "out" / "off.json")})
    offload.isolate()
    try:
        worker_pid = await asyncio.to_thread(offload.call, "os:getpid")
        model_pid = await offload.run("os:getpid", lane="model")
        assert len({os.getpid(), worker_pid, model_pid}) == 3
        assert await offload.run("os:getpid", lane="model") == model_pid  # kept: the model stays loaded
        r = await client.post("/api/v1/projects/off/export", headers=creds("mgr"), json={"format": "json"})
        assert r.status_code == 202, r.text
        url = r.json()["status_url"]
        for _ in range(600):
            run = (await client.get(url, headers=creds("mgr"))).json()
            if not run["active"]:
                break
            await asyncio.sleep(0.1)
        assert run["state"] == "done" and Path(run["path"]).is_file() and run["summary"]["frames"] == 2, run
        assert run["summary"] and (await SyncRun.objects().get(SyncRun.id == run["id"])).worker == runner.worker_id()

        await asyncio.to_thread(offload.call, "portal.exchange.runs:LIVE.__setitem__", 987654, ("importing", 3, 9))
        for _ in range(100):
            if runs.LIVE.get(987654):
                break
            await asyncio.sleep(0.05)
        assert runs.LIVE.get(987654) == ("importing", 3, 9)
        await asyncio.to_thread(offload.call, "portal.exchange.runs:LIVE.pop", 987654)
        for _ in range(100):
            if 987654 not in runs.LIVE:
                break
            await asyncio.sleep(0.05)
        assert 987654 not in runs.LIVE

        # What the child raised comes back with its type and message.
        try:
            await asyncio.to_thread(offload.call, "json:loads", "{")
        except offload.OffloadFailed as exc:
            assert exc.kind == "JSONDecodeError"
        else:
            raise AssertionError("a failure in the child was not reported")
    finally:
        offload.isolate(False)
