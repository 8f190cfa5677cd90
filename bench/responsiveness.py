"""Does the portal stay answered while background work runs? `lightbox serve --workers 2` with a big project.

    nice .venv/bin/python bench/responsiveness.py                  # 2,000 series × 50 instances, 2 GB upload
    nice .venv/bin/python bench/responsiveness.py --series 500 --upload-gb 0.5
    nice .venv/bin/python bench/responsiveness.py --postgres postgres://postgres@127.0.0.1:5432/postgres

The project's rows are bulk-loaded (instances hard-linked to one real file, so an export names real files
and a re-import finds them all stored). Then, while a prober sends GET /healthz and a portal page
(GET /projects, signed in) one after another, the server: receives one multipart upload of --upload-gb
(its peak RSS printed: target < 300 MB with the embedded worker on), scores the uploaded series with the
built-in model (in the worker's child process), exports the big project, and re-imports that export.
Prints p50/p99/max per phase (target p99 < 100 ms); tests never assert timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ADMIN_PASSWORD = "bench-admin-password"
ADMIN = {"X-USERNAME": "admin", "X-PASSWORD": ADMIN_PASSWORD}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int, field: str = "VmRSS:") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def bulk_load(env: dict, n_series: int, per_series: int) -> None:
    """Rows of a big project 'big', in a child process with the server's environment."""
    code = f"""
import asyncio, os, shutil
from pathlib import Path
from portal import cli, clock, db, projects
from portal.archive import ingest
from portal.dicom import samples
from portal.tables import Decision, Instance, Patient, Series, Study

async def go():
    p = await projects.create("big")
    archive = await projects.archive(p, None)
    src = samples.make_series(samples.sample_path("CT_small.dcm"), Path(os.environ["LIGHTBOX_DATA_DIR"]) / "seed", 1)[0]
    first = await ingest.ingest_file(src, p, archive)
    real = await Instance.select().first()
    store = ingest.storage()
    now = clock.now()
    links = [0, None]
    for s0 in range(0, {n_series}, 100):
        count = min(100, {n_series} - s0)
        pats = await Patient.insert(*[Patient(key=f"{{archive.id}}:BIG{{i}}", project=p.id, archive=archive.id,
                                             patient_id=f"BIG{{i}}", created_at=now) for i in range(s0, s0 + count)]
                                    ).returning(Patient.id)
        studies = await Study.insert(*[Study(key=f"{{p.id}}:2.25.{{i}}", project=p.id, patient=r["id"],
                                             study_instance_uid=f"2.25.{{i}}", study_date="20240101", created_at=now,
                                             updated_at=now) for i, r in zip(range(s0, s0 + count), pats)]
                                     ).returning(Study.id)
        series = await Series.insert(*[Series(key=f"{{p.id}}:2.25.{{i}}.1", project=p.id, study=r["id"],
                                              series_instance_uid=f"2.25.{{i}}.1", modality="CT", last_instance_at=now,
                                              created_at=now) for i, r in zip(range(s0, s0 + count), studies)]
                                     ).returning(Series.id)
        rows = []
        for i, r in zip(range(s0, s0 + count), series):
            for k in range({per_series}):
                key = store.key_for(f"bulk/{{i}}/{{k}}")
                path = store.path(key)
                path.parent.mkdir(parents=True, exist_ok=True)
                if not path.exists():
                    if links[0] % 20000 == 0:  # a file takes at most 65,000 links (ext4): a fresh copy now and then
                        links[1] = Path(str(store.path(real["file_key"])) + f".src{{links[0]}}")
                        shutil.copyfile(store.path(real["file_key"]), links[1])
                    os.link(links[1], path)
                    links[0] += 1
                rows.append(Instance(key=f"{{p.id}}:2.25.{{i}}.1.{{k}}", project=p.id, series=r["id"],
                                     sop_instance_uid=f"2.25.{{i}}.1.{{k}}", instance_number=k + 1, file_key=key,
                                     size=real["size"], md5=real["md5"], created_at=now))
        for k in range(0, len(rows), 1000):
            await Instance.insert(*rows[k:k + 1000])
        await Decision.insert(*[Decision(project=p.id, series=r["id"], username="admin", role="admin", code="U",
                                         created_at=now) for r in series])
    if Series._meta.db.engine_type == "postgres":
        await Series.raw("ANALYZE")

cli._setup()
cli._run(go())
"""
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT)


class Prober:
    """GET /healthz and GET /projects (signed in), one after the other, recording each latency."""

    def __init__(self, base: str):
        self.base = base
        self.client = httpx.Client(base_url=base, timeout=60)
        r = self.client.get("/login")
        token = self.client.cookies.get("lightbox_csrf")
        r = self.client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "_csrf_token": token})
        assert r.status_code in (200, 303), r.text[:200]
        self.samples: dict[str, list[float]] = {"healthz": [], "page": []}
        self._stop = threading.Event()
        self._thread = None

    def _loop(self):
        while not self._stop.is_set():
            for name, path in (("healthz", "/healthz"), ("page", "/projects")):
                t0 = time.perf_counter()
                r = self.client.get(path)
                self.samples[name].append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    print(f"  {path}: HTTP {r.status_code}")
            time.sleep(0.02)

    def __enter__(self):
        self.samples = {"healthz": [], "page": []}
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def report(phase: str, prober: Prober, seconds: float, extra: str = "") -> None:
    parts = []
    for name, values in prober.samples.items():
        if len(values) < 2:
            parts.append(f"{name}: {len(values)} sample(s)")
            continue
        ordered = sorted(values)

        def pct(p: float) -> float:  # nearest rank
            return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

        parts.append(f"{name} p50 {pct(50):.0f} ms, p99 {pct(99):.0f} ms, max {ordered[-1]:.0f} ms (n={len(values)})")
    print(f"{phase:<10} {seconds:6.1f} s  " + "; ".join(parts) + (f"  {extra}" if extra else ""), flush=True)


def wait_run(base: str, status_url: str) -> dict:
    while True:
        run = httpx.get(base + status_url, headers=ADMIN, timeout=60).json()
        if not run.get("active", False):
            return run
        time.sleep(0.5)


def big_upload(base: str, gb: float, tmp: Path, pid: int) -> str:
    """One multipart/related upload of `gb` of re-stamped CT instances, streamed; the server's RSS sampled."""
    from portal.dicom import samples

    try:
        src = samples.sample_path("693_UNCR.dcm")  # CT 512×512, pydicom-data
    except FileNotFoundError:
        src = samples.sample_path("CT_small.dcm")
    first = samples.make_series(src, tmp / "up0", 1)[0]
    count = int(gb * 1024**3 // first.stat().st_size) + 1
    files = []
    for start in range(0, count, 100):  # series of 100
        files += samples.make_series(src, tmp / f"up{start}", min(100, count - start))
    boundary = uuid.uuid4().hex

    def body():
        for p in files:
            yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            yield p.read_bytes()
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    peak, done = [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    total = sum(f.stat().st_size for f in files)
    t0 = time.perf_counter()
    r = httpx.post(base + "/api/v1/studies?Project=bench", content=body(), timeout=3600,
                   headers={**ADMIN, "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    return (f"{total / 1e9:.2f} GB, {len(files)} instances, HTTP {r.status_code}, {total / 1e6 / seconds:.0f} MB/s; "
            f"server RSS peak {peak[0]:.0f} MB (VmHWM {_rss_mb(pid, 'VmHWM:'):.0f} MB)")


def active_jobs(env: dict) -> int:
    if env.get("LIGHTBOX_DATABASE_URL"):
        code = ("from portal import cli; from portal.tables import InferenceJob; cli._setup(); "
                "print(cli._run(InferenceJob.count().where(InferenceJob.state.is_in(['queued','running','retrying']))))")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
        return int(out.stdout.strip().splitlines()[-1])
    with sqlite3.connect(Path(env["LIGHTBOX_DATA_DIR"]) / "lightbox.sqlite3", timeout=30) as con:
        return con.execute("SELECT count(*) FROM lb_inference_job WHERE state IN "
                           "('queued','running','retrying')").fetchone()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=2000, help="series in the big project")
    ap.add_argument("--per-series", type=int, default=50, help="instances per series")
    ap.add_argument("--upload-gb", type=float, default=2.0, help="size of the one big upload (0: none)")
    ap.add_argument("--postgres", default="", help="a PostgreSQL server URL (a fresh database is made on it)")
    ap.add_argument("--idle", type=float, default=5, help="seconds of idle baseline")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="lightbox-resp-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "LIGHTBOX_DATA_DIR": str(tmp / "data"), "LIGHTBOX_ADMIN_PASSWORD": ADMIN_PASSWORD}
        env.pop("LIGHTBOX_QUEUE_URL", None)
        dbname = ""
        if args.postgres:
            import asyncpg

            dbname = f"lightbox_resp_{uuid.uuid4().hex[:8]}"

            async def create():
                con = await asyncpg.connect(args.postgres)
                await con.execute(f'CREATE DATABASE "{dbname}"')
                await con.close()

            asyncio.run(create())
            env["LIGHTBOX_DATABASE_URL"] = args.postgres.rsplit("/", 1)[0] + "/" + dbname
        lb = [sys.executable, "-m", "portal.cli"]
        subprocess.run([*lb, "migrate"], env=env, check=True, capture_output=True, cwd=ROOT)
        subprocess.run([*lb, "project", "create", "bench"], env=env, check=True, capture_output=True, cwd=ROOT)
        t0 = time.perf_counter()
        bulk_load(env, args.series, args.per_series)
        print(f"loaded project 'big': {args.series} series, {args.series * args.per_series} instances, "
              f"{args.series} decisions in {time.perf_counter() - t0:.0f} s "
              f"({'PostgreSQL' if args.postgres else 'SQLite'})", flush=True)
        port = _free_port()
        proc = subprocess.Popen([*lb, "serve", "--port", str(port), "--workers", "2"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "w"))
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            prober = Prober(base)
            with prober:
                time.sleep(args.idle)
            report("idle", prober, args.idle, f"server RSS {_rss_mb(proc.pid):.0f} MB")

            if args.upload_gb:
                t = time.perf_counter()
                with prober:
                    extra = big_upload(base, args.upload_gb, tmp, proc.pid)
                report("upload", prober, time.perf_counter() - t, extra)
                t = time.perf_counter()
                with prober:  # the uploaded series are scored once quiet (5 s), in the worker's child process
                    time.sleep(6)
                    while active_jobs(env):
                        time.sleep(1)
                torch_here = "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text()
                report("inference", prober, time.perf_counter() - t,
                       f"server RSS {_rss_mb(proc.pid):.0f} MB (VmHWM {_rss_mb(proc.pid, 'VmHWM:'):.0f} MB); torch "
                       f"{'LOADED' if torch_here else 'not loaded'} in the server process")

            t = time.perf_counter()
            with prober:
                r = httpx.post(base + "/api/v1/projects/big/export", json={"format": "json"}, headers=ADMIN,
                               timeout=60)
                run = wait_run(base, r.json()["status_url"])
            report("export", prober, time.perf_counter() - t, f"{run['state']}: {run['message'][:80]}")

            t = time.perf_counter()
            with prober:  # the project's import path is its export file: every frame already stored
                r = httpx.post(base + "/api/v1/projects/big/import", headers=ADMIN, timeout=60)
                run = wait_run(base, r.json()["status_url"])
            report("import", prober, time.perf_counter() - t, f"{run['state']}: {run['message'][:80]}")
            print(f"server RSS now {_rss_mb(proc.pid):.0f} MB, peak (VmHWM) {_rss_mb(proc.pid, 'VmHWM:'):.0f} MB")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            if dbname:
                async def drop():
                    con = await asyncpg.connect(args.postgres)
                    await con.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
                    await con.close()

                asyncio.run(drop())


if __name__ == "__main__":
    main()
