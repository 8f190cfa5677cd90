"""DICOM networking figures: C-FIND, C-MOVE, C-GET (dcmtk as the client, storescp as the destination) and a
send job (C-STORE SCU) against a local Lightbox on SQLite.

    nice .venv/bin/python bench/network.py            # 200 CT instances in 2 series
    nice .venv/bin/python bench/network.py -n 1000

Prints seconds and instances/s for each; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.ingest import ADMIN_PASSWORD, free_port, make_files  # noqa: E402


def run(*args) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(a) for a in args], check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lightbox-bench-net-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "LIGHTBOX_DATA_DIR": str(tmp / "data"), "LIGHTBOX_ADMIN_PASSWORD": ADMIN_PASSWORD}
        lb = [sys.executable, "-m", "portal.cli"]
        files = make_files(args.n, tmp / "in")
        for cmd in (["migrate"], ["project", "create", "bench"], ["ingest", str(tmp / "in"), "--project", "bench"]):
            subprocess.run([*lb, *cmd], env=env, check=True, capture_output=True)
        dest_port, dicom_port, http_port = free_port(), free_port(), free_port()
        out = tmp / "received"
        out.mkdir()
        scp = subprocess.Popen(["storescp", "-aet", "DEST", "-od", str(out), str(dest_port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([*lb, "node", "add", "dest", "--aet", "DEST", "--host", "127.0.0.1", "--port", str(dest_port)],
                       env=env, check=True, capture_output=True)
        server = subprocess.Popen([*lb, "serve", "--port", str(http_port), "--workers", "1", "--dicom-port",
                                   str(dicom_port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{http_port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            first = pydicom.dcmread(files[0], stop_before_pixels=True)
            series_n = sum(1 for f in files if pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID
                           == first.SeriesInstanceUID)
            q = ["-aec", "BENCH", "127.0.0.1", dicom_port]
            t = run("findscu", "-S", *q, "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID")
            print(f"C-FIND STUDY level, every study:        {t:6.2f} s")
            t = run("findscu", "-S", *q, "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={first.StudyInstanceUID}",
                    "-k", f"SeriesInstanceUID={first.SeriesInstanceUID}", "-k", "SOPInstanceUID")
            print(f"C-FIND IMAGE level, {series_n} matches:        {t:6.2f} s")
            series_keys = ["-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={first.StudyInstanceUID}",
                           "-k", f"SeriesInstanceUID={first.SeriesInstanceUID}"]
            t = run("movescu", "-S", "-aem", "DEST", *q, *series_keys)
            print(f"C-MOVE {series_n} instances to storescp:     {t:6.2f} s  {series_n / t:7.1f} instances/s")
            got = tmp / "got"
            got.mkdir()
            t = run("getscu", "-S", "-od", got, *q, *series_keys)
            print(f"C-GET {series_n} instances:                  {t:6.2f} s  {series_n / t:7.1f} instances/s")
            auth = {"X-USERNAME": "admin", "X-PASSWORD": ADMIN_PASSWORD}
            t0 = time.perf_counter()
            job = httpx.post(base + "/api/v1/projects/bench/send", headers=auth, timeout=60,
                             json={"node": "dest", "series": [first.SeriesInstanceUID]}).json()
            while job["state"] not in ("done", "failed"):
                time.sleep(0.1)
                job = httpx.get(base + job["status_url"], headers=auth, timeout=60).json()
            t = time.perf_counter() - t0
            print(f"send job (C-STORE SCU) {job['sent']} instances: {t:6.2f} s  {job['sent'] / t:7.1f} instances/s "
                  f"({job['state']})")
        finally:
            server.terminate()
            server.wait(30)
            scp.terminate()


if __name__ == "__main__":
    main()
