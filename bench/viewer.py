"""Viewer speed: navigation → first painted image, and → all slices loaded, for a 300-slice 512×512 CT series.

    .venv/bin/python bench/viewer.py [-n 300]

Starts its own Lightbox on a scratch data dir, ingests the series, and drives Debian's chromium
(Playwright) to the series page on loopback. Target to measure (not asserted): first image < 1 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import ADMIN_PASSWORD, make_files, start_lightbox  # noqa: E402

import pydicom  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=300, help="slices")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lightbox-bench-") as tmp:
        tmp = Path(tmp)
        files = make_files(args.n, tmp / "files")  # one series per 100 files: keep them in one
        series_uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
        for i, f in enumerate(files):
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID, ds.InstanceNumber = series_uid, i + 1
            ds.ImagePositionPatient = [0.0, 0.0, float(i)]
            ds.save_as(f)
        proc, base = start_lightbox(tmp / "data")
        try:
            import subprocess, os  # noqa: E401
            env = {**os.environ, "LIGHTBOX_DATA_DIR": str(tmp / "data")}
            subprocess.run([sys.executable, "-m", "portal.cli", "ingest", str(tmp / "files"), "--project", "bench"],
                           env=env, check=True, capture_output=True)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(base + "/login")
                page.fill("input[name=username]", "admin")
                page.fill("input[name=password]", ADMIN_PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url("**/projects")
                # The page records when the viewer first painted, relative to navigation start.
                page.add_init_script("""document.addEventListener('lightbox:rendered',
                    () => { window.firstPaint = window.firstPaint || performance.now(); }, true);""")
                t0 = time.perf_counter()
                page.goto(f"{base}/projects/bench/series/{series_uid}")
                page.wait_for_function("window.firstPaint !== undefined", timeout=60000, polling=20)
                first = page.evaluate("window.firstPaint") / 1000
                page.wait_for_function(f"window.LightboxViewer.cacheInfo().dataSets >= {args.n}", timeout=300000,
                                       polling=50)
                all_loaded = time.perf_counter() - t0
                print(f"{args.n} slices 512x512: first image painted {first:.2f} s after navigation start, "
                      f"all slices loaded {all_loaded:.2f} s")
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
