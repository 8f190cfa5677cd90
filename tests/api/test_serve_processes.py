"""`lightbox serve --processes 2`: two web processes on one port, one install. The second really serves (it
answers while the first is stopped), every upload through either is stored once, and the processes end
together: on SIGTERM, and when the first is killed outright (no orphan keeps the port)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from portal.dicom import samples
from tests.conftest import ADMIN_PASSWORD

ADMIN = {"X-USERNAME": "admin", "X-PASSWORD": ADMIN_PASSWORD}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"PPid:\t{pid}\n" in status.read_text():
                out.append(int(status.parent.name))
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _start(lb_env: dict, tmp_path: Path) -> tuple[subprocess.Popen, str, int]:
    env = {**os.environ, **lb_env}
    subprocess.run([sys.executable, "-m", "portal.cli", "project", "create", "multi"], env=env, check=True,
                   capture_output=True, timeout=120)
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "portal.cli", "serve", "--port", str(port), "--workers", "0",
                             "--processes", "2"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200 and _children(proc.pid):
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "serve.log").read_text()
        time.sleep(0.2)
    (child,) = [c for c in _children(proc.pid) if "--socket-fd" in Path(f"/proc/{c}/cmdline").read_text()]
    # The second process is up when it answers on its own: the first, stopped, answers nothing (a connection
    # the kernel gives to its socket waits; each try is a new connection, so one reaches the second).
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the second web process never answered"
                time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    return proc, url, child


def _upload(url: str, path: Path) -> dict:
    with httpx.Client(timeout=60) as client, open(path, "rb") as fh:  # a connection each: either process takes it
        r = client.post(url + "/api/v1/instance/upload/?Project=multi", headers=ADMIN,
                        files={"file": (path.name, fh)})
    assert r.status_code == 200, r.text
    return r.json()


def test_two_web_processes_share_the_port_and_the_install(lb_env, tmp_path):
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "series", 24)
    proc, url, child = _start(lb_env, tmp_path)
    try:
        # Both processes take uploads (a connection each: the kernel spreads them over the two sockets), and a
        # second copy of each: stored once, answered as already stored.
        with ThreadPoolExecutor(6) as pool:
            first = list(pool.map(lambda f: _upload(url, f), files))
            again = list(pool.map(lambda f: _upload(url, f), files))
        assert [r["status"] for r in first] == ["stored"] * 24
        assert [r["status"] for r in again] == ["already_stored"] * 24
        where = {k: first[0][k] for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")}
        series = httpx.get(url + "/api/v1/series/get/", params={"Project": "multi", **where}, headers=ADMIN,
                           timeout=30)
        assert series.status_code == 200, series.text
        assert series.json()["NumberOfSeriesRelatedInstances"] == 24

        proc.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM is a clean stop.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in (tmp_path / "serve.log").read_text()
        deadline = time.monotonic() + 30
        while _alive(child):
            assert time.monotonic() < deadline, "the second web process outlived SIGTERM"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_second_process_ends_when_the_first_is_killed(lb_env, tmp_path):
    proc, url, child = _start(lb_env, tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _alive(child):
        assert time.monotonic() < deadline, "an orphaned web process kept serving"
        time.sleep(0.2)
