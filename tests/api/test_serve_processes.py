"""`lightbox serve --processes 2`: two web processes on one port, one install. The first deals its connections
to both in turn (portal/web_processes.py): four keep-alive clients are served two by each, every upload through
either is stored once, a second process that dies is skipped, and the processes end together: on SIGTERM, and
when the first is killed outright (no orphan keeps the port)."""

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
    (child,) = [c for c in _children(proc.pid) if "--handoff-fd" in Path(f"/proc/{c}/cmdline").read_text()]
    # The second process is up when a connection dealt to it is answered (every other one is).
    deadline = time.monotonic() + 90
    while True:
        with httpx.Client(timeout=5) as a, httpx.Client(timeout=5) as b:
            try:
                if a.get(url + "/healthz").status_code == b.get(url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
        assert time.monotonic() < deadline, "the second web process never answered"
        time.sleep(0.2)
    return proc, url, child


def _holders(port: int, pids: list[int]) -> dict[int, int]:
    """How many established connections to `port` each of `pids` holds (from /proc: no ss needed)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
                    inodes.add(fields[9])
    out = {}
    for pid in pids:
        held = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            held += target.startswith("socket:[") and target[8:-1] in inodes
        out[pid] = held
    return out


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


def test_connections_are_dealt_to_the_processes_in_turn(lb_env, tmp_path):
    proc, url, child = _start(lb_env, tmp_path)
    port = int(url.rsplit(":", 1)[1])
    try:
        clients = [httpx.Client(timeout=30) for _ in range(4)]  # keep-alive: each stays on its process
        try:
            for client in clients:
                assert client.get(url + "/healthz").status_code == 200
            assert _holders(port, [proc.pid, child]) == {proc.pid: 2, child: 2}
        finally:
            for client in clients:
                client.close()
        # The second process dies: its turns go to the first, and every new connection is still answered.
        os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(child):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # A killed process's files are closed a little after it is a zombie (the kernel defers the last close of
        # an exiting task's file to a work queue): a connection dealt to it in between is lost with it, as the
        # module says. Once its end of the hand-off channel is closed, it is skipped.
        time.sleep(1)
        for _ in range(6):
            assert httpx.get(url + "/healthz", timeout=10).status_code == 200
    finally:
        proc.kill()
        proc.wait(timeout=30)
