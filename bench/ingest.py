"""Ingest throughput and memory: N re-stamped CT instances (512×512) sent by K parallel HTTP clients.

    .venv/bin/python bench/ingest.py                     # starts its own Lightbox (SQLite) and measures it
    .venv/bin/python bench/ingest.py -n 1000 -k 4
    .venv/bin/python bench/ingest.py --big-gb 2          # one 2 GB multipart upload; server peak RSS
    .venv/bin/python bench/ingest.py --url http://127.0.0.1:8042/instances --raw   # e.g. Orthanc, same files

Prints instances/s, MB/s and the server's peak RSS (VmHWM) when the server is local. Targets to
measure (not asserted): ≥ 1.2× Orthanc's instances/s for 1,000 CT instances with 4 clients on
SQLite; a 2 GB upload with server peak RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from portal.dicom import samples  # noqa: E402

ADMIN_PASSWORD = "bench-admin-password"


def make_files(n: int, dest: Path) -> list[Path]:
    try:
        src = samples.sample_path("693_UNCR.dcm")  # CT 512×512, pydicom-data
    except FileNotFoundError:
        src = samples.sample_path("CT_small.dcm")
    files, per_series = [], 100
    for start in range(0, n, per_series):
        files += samples.make_series(src, dest / f"s{start}", min(per_series, n - start))
    return files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lightbox(data_dir: Path, workers: int = 0, settings: dict | None = None) -> tuple[subprocess.Popen, str]:
    """A Lightbox on a free port with project 'bench' (its `settings` changed as given)."""
    env = {**os.environ, "LIGHTBOX_DATA_DIR": str(data_dir), "LIGHTBOX_ADMIN_PASSWORD": ADMIN_PASSWORD}
    port = free_port()
    lb = [sys.executable, "-m", "portal.cli"]
    subprocess.run([*lb, "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([*lb, "project", "create", "bench"], env=env, check=True, capture_output=True)
    if settings:
        code = ("import json, sys; from portal import cli, projects; from portal.tables import Project; cli._setup()\n"
                "async def go():\n    p = await Project.objects().get(Project.name == 'bench')\n"
                "    await projects.update_settings(p, json.loads(sys.argv[1]))\ncli._run(go())")
        subprocess.run([sys.executable, "-c", code, json.dumps(settings)], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([*lb, "serve", "--port", str(port), "--workers", str(workers)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("Lightbox did not start")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def related(paths: list[Path]):
    """A streamed multipart/related body (files are read in chunks, never all in memory)."""
    boundary = uuid.uuid4().hex

    def body():
        for p in paths:
            yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    yield chunk
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return body(), f'multipart/related; type="application/dicom"; boundary={boundary}'


def send_all(files: list[Path], url: str, k: int, raw: bool, headers: dict) -> float:
    local = threading.local()

    def one(path: Path) -> None:
        client = getattr(local, "client", None) or httpx.Client(timeout=120)
        local.client = client
        if raw:
            r = client.post(url, content=path.read_bytes(), headers={**headers, "Content-Type": "application/dicom"})
        else:
            body, ctype = related([path])
            r = client.post(url, content=body, headers={**headers, "Content-Type": ctype})
        if r.status_code >= 300:
            raise RuntimeError(f"{r.status_code}: {r.text[:200]}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(k) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1000, help="instances")
    ap.add_argument("-k", type=int, default=4, help="parallel clients")
    ap.add_argument("--url", help="upload URL of another server (default: start a local Lightbox)")
    ap.add_argument("--raw", action="store_true", help="POST each file as application/dicom (Orthanc /instances)")
    ap.add_argument("--big-gb", type=float, default=0, help="instead: one multipart upload of this many GB")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="lightbox-bench-") as tmp:
        tmp = Path(tmp)
        proc = None
        headers = {}
        url = args.url
        if not url:
            proc, base = start_lightbox(tmp / "data")
            url = base + "/api/v1/studies?Project=bench"
            headers = {"X-USERNAME": "admin", "X-PASSWORD": ADMIN_PASSWORD}
        try:
            if args.big_gb:
                one = make_files(1, tmp / "one")[0]
                count = int(args.big_gb * 1024**3 // one.stat().st_size) + 1
                files = [samples.restamp(one, tmp / "big" / f"{i}.dcm") for i in range(count)]
                total = sum(f.stat().st_size for f in files)
                body, ctype = related(files)
                t0 = time.perf_counter()
                r = httpx.post(url, content=body, headers={**headers, "Content-Type": ctype}, timeout=3600)
                dt = time.perf_counter() - t0
                print(f"big upload: {total / 1e9:.2f} GB, {count} instances in {dt:.1f} s "
                      f"({total / 1e6 / dt:.1f} MB/s), HTTP {r.status_code}")
            else:
                files = make_files(args.n, tmp / "files")
                total = sum(f.stat().st_size for f in files)
                dt = send_all(files, url, args.k, args.raw, headers)
                print(f"{len(files)} instances ({total / 1e6:.0f} MB) with {args.k} clients in {dt:.1f} s: "
                      f"{len(files) / dt:.1f} instances/s, {total / 1e6 / dt:.1f} MB/s")
            if proc:
                print(f"server peak RSS: {peak_rss_mb(proc.pid):.0f} MB")
        finally:
            if proc:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
