"""A many-process deployment (README, "Scaling out"): two `lightbox serve --workers 0` web processes and two
`lightbox worker` processes (periodic tasks on one), on PostgreSQL + Redis + S3, each with a data dir of its
own (no shared disk). Ingest goes through both web processes; every instance is stored once, every series
scored once, and everything is visible from both. Runs in the PostgreSQL + Redis + S3 combination (make test-s3).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread

from portal import storage
from portal.dicom import samples
from tests.conftest import ADMIN_PASSWORD, PG_SERVER, REDIS_URL, S3, fresh_env

pytestmark = pytest.mark.skipif(not (S3 and PG_SERVER and REDIS_URL),
                                reason="the deployment runs on PostgreSQL + Redis + S3 (make test-s3)")

ADMIN = {"X-USERNAME": "admin", "X-PASSWORD": ADMIN_PASSWORD}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Site:
    """The processes of one install, each with its own data dir; the database, queue and store are shared."""

    def __init__(self, env: dict, root: Path):
        self.env, self.root, self.procs, self.urls = env, root, [], []

    def start(self, name: str, *args: str) -> None:
        data = self.root / name
        data.mkdir(parents=True)
        log = open(self.root / f"{name}.log", "w")
        env = {**os.environ, **self.env, "LIGHTBOX_DATA_DIR": str(data)}
        self.procs.append((name, subprocess.Popen([sys.executable, "-m", "portal.cli", *args], env=env,
                                                  stdout=log, stderr=subprocess.STDOUT), log))

    def web(self, name: str) -> str:
        port = _free_port()
        self.start(name, "serve", "--port", str(port), "--workers", "0")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.procs[-1][1].poll() is not None:
                raise RuntimeError(f"{name} did not start:\n" + (self.root / f"{name}.log").read_text())
            time.sleep(0.2)

    def cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "portal.cli", *args], capture_output=True, text=True,
                             env={**os.environ, **self.env, "LIGHTBOX_DATA_DIR": str(self.root / "cli")},
                             timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    def stop(self) -> None:
        for _, proc, _ in self.procs:
            proc.terminate()
        for _, proc, log in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


@pytest.fixture
def site(template, tmp_path):
    env = fresh_env(template, tmp_path / "cli")
    s = Site(env, tmp_path)
    yield s
    s.stop()


async def _rows(env: dict, sql: str) -> list:
    import asyncpg

    con = await asyncpg.connect(env["LIGHTBOX_DATABASE_URL"])
    try:
        return await con.fetch(sql)
    finally:
        await con.close()


async def test_two_web_processes_and_two_workers_share_one_install(site, tmp_path):
    first = site.web("web1")  # the first start creates the administrator; the second finds it
    second = site.web("web2")
    site.start("worker1", "worker", "--threads", "2")
    site.start("worker2", "worker", "--threads", "2", "--no-periodic")
    site.cli("project", "create", "scale")

    series_files = [samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / f"in{n}", 2,
                                        patient_id=f"SCALE-{n}") for n in range(3)]
    async with httpx.AsyncClient(timeout=60) as http:
        async def upload(url: str, f: Path) -> dict:
            r = await http.post(url + "/api/v1/instance/upload/", headers=ADMIN, data={"Project": "scale"},
                                files={"file": (f.name, f.read_bytes(), "application/dicom")})
            assert r.status_code == 200, r.text
            assert r.json()["status"] in ("stored", "already_stored")
            return r.json()

        # Each series arrives half through one web process and half through the other, at the same time;
        # one instance is sent to both.
        files = [f for fs in series_files for f in fs]
        await asyncio.gather(*(upload((first, second)[i % 2], f) for i, f in enumerate(files)))
        again = await asyncio.gather(upload(second, files[0]), upload(first, files[0]))
        assert [a["status"] for a in again] == ["already_stored", "already_stored"]

        series_uids = [dcmread(fs[0], stop_before_pixels=True).SeriesInstanceUID for fs in series_files]
        deadline = time.monotonic() + 240
        pending = set(series_uids)
        while pending and time.monotonic() < deadline:
            for uid in list(pending):
                r = await http.get(f"{second}/api/v1/results/{uid}", headers=ADMIN, params={"Project": "scale"})
                if r.status_code == 200 and r.json().get("result", {}).get("scores"):
                    pending.discard(uid)
            await asyncio.sleep(1)
        assert not pending, "not scored in time:\n" + "\n".join(
            (tmp_path / f"{n}.log").read_text()[-2000:] for n in ("worker1", "worker2"))

        # Visible alike from both web processes: the results and the stored bytes.
        for uid, fs in zip(series_uids, series_files):
            a = (await http.get(f"{first}/api/v1/results/{uid}", headers=ADMIN, params={"Project": "scale"})).json()
            b = (await http.get(f"{second}/api/v1/results/{uid}", headers=ADMIN, params={"Project": "scale"})).json()
            assert a["result"]["scores"] == b["result"]["scores"]
            ds = dcmread(fs[1], stop_before_pixels=True)
            path = f"/dicomweb/scale/studies/{ds.StudyInstanceUID}/series/{uid}/instances/{ds.SOPInstanceUID}"
            got = [await http.get(url + path, headers={**ADMIN, "Accept": 'multipart/related; type="application/dicom"'})
                   for url in (first, second)]
            assert [g.status_code for g in got] == [200, 200]
            assert all(fs[1].read_bytes() in g.content for g in got)  # the stored bytes, from either process

    env = site.env
    # Stored once: one row per instance, and the store holds exactly the files the rows name.
    rows = await _rows(env, "SELECT sop_instance_uid, file_key FROM lb_instance")
    sent = {dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert sent <= {r["sop_instance_uid"] for r in rows} and len(rows) == len({r["sop_instance_uid"] for r in rows})
    store = storage.open_store(env["LIGHTBOX_STORAGE_URL"])
    assert sorted(k for k, _ in store.keys() if k.endswith(".dcm")) == sorted(r["file_key"] for r in rows)
    # Scored once: one inference job per uploaded series, done.
    jobs = await _rows(env, "SELECT s.series_instance_uid AS uid, j.state FROM lb_inference_job j "
                            "JOIN lb_series s ON s.id = j.series")
    for uid in series_uids:
        assert [j["state"] for j in jobs if j["uid"] == uid] == ["done"]
    assert len(jobs) == len({j["uid"] for j in jobs})
    # The processes kept nothing on their own disks: no image file in any data dir.
    assert not [p for n in ("web1", "web2", "worker1", "worker2") for p in (tmp_path / n).rglob("*.dcm")]
