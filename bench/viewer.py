"""Viewer speed on loopback: first pixels of a 300-slice 512×512 CT and of a 2k×2k CR (1955×1841, 7 MB).

    .venv/bin/python bench/viewer.py [-n 300] [--runs 3]

Starts its own Lightbox on a scratch data dir, ingests both series, and drives Debian's chromium (Playwright) to
each series page, on a first visit (empty browser cache) and then again with the viewer's code cached. It prints,
in seconds after navigation start:

- preview: the small server rendition (progressive loading's first step) has painted: the first pixels;
- viewer: Cornerstone has painted the full-fidelity image (the slice the preview showed);
- all slices (CT): every slice's file is in the viewer's cache.

Target to measure (not asserted): first pixels < 1 s for both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import ADMIN_PASSWORD, make_files, start_lightbox  # noqa: E402

import pydicom  # noqa: E402

from portal.dicom import samples  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]

# Times relative to navigation start, recorded by the page itself.
PROBE = """
document.addEventListener('load', (e) => {
  if (e.target && e.target.id === 'still') window.previewAt = window.previewAt || performance.now();
}, true);
document.addEventListener('lightbox:rendered', () => { window.viewerAt = window.viewerAt || performance.now(); }, true);
"""


def make_ct(n: int, dest: Path) -> str:
    files = make_files(n, dest)  # one series per 100 files: put them in one
    series_uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.InstanceNumber = series_uid, i + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(i)]
        ds.save_as(f)
    return series_uid


def make_cr(dest: Path) -> str:
    dest.mkdir(parents=True, exist_ok=True)
    f = samples.restamp(samples.sample_path(samples.CHEST_CR), dest / "cr.dcm")
    return pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID


# Where the time went (--detail): when the page, the viewer's code and the first image file arrived.
DETAIL = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  const first = (pred) => res.filter(pred).sort((a, b) => a.startTime - b.startTime)[0];
  const code = first((r) => r.name.includes('/static/viewer/dist/viewer.js'));
  const file = first((r) => r.name.includes('/file'));
  const still = first((r) => r.name.includes('/rendered'));
  const ms = (v) => (v === undefined ? null : Math.round(v));
  return {html: ms(nav.responseEnd), code: ms(code && code.responseEnd), still: ms(still && still.responseEnd),
          file_start: ms(file && file.startTime), file_end: ms(file && file.responseEnd),
          files_by_paint: res.filter((r) => r.name.includes('/file') && r.responseEnd <= window.viewerAt).length};
}"""


def visit(browser, base: str, url: str, state, *, wait_all: int = 0, detail: bool = False) -> dict:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, storage_state=state)
    page = context.new_page()
    page.add_init_script(PROBE)
    out = {}
    for label in ("first visit", "code cached"):
        page.goto(url)
        page.wait_for_function("() => window.viewerAt !== undefined", timeout=120000, polling=20)
        times = page.evaluate("() => [window.previewAt, window.viewerAt]")
        # A preview the viewer beat to it never painted: the viewer's pixels were the first.
        first = min(t for t in times if t is not None)
        row = {"preview": first / 1000, "viewer": times[1] / 1000}
        if detail:
            print(f"  {label}: {page.evaluate(DETAIL)} viewer painted {round(times[1])} ms", flush=True)
        if wait_all:
            page.wait_for_function(f"() => window.LightboxViewer.cacheInfo().dataSets >= {wait_all}", timeout=300000,
                                   polling=50)
            row["all slices"] = page.evaluate("() => performance.now()") / 1000
        out[label] = row
    context.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=300, help="CT slices")
    ap.add_argument("--runs", type=int, default=3, help="visits of each series (medians are printed)")
    ap.add_argument("--detail", action="store_true", help="print when the page, code and first file arrived (ms)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lightbox-bench-") as tmp:
        tmp = Path(tmp)
        ct_uid = make_ct(args.n, tmp / "files" / "ct")
        cr_uid = make_cr(tmp / "files" / "cr")
        proc, base = start_lightbox(tmp / "data")
        try:
            env = {**os.environ, "LIGHTBOX_DATA_DIR": str(tmp / "data")}
            subprocess.run([sys.executable, "-m", "portal.cli", "ingest", str(tmp / "files"), "--project", "bench"],
                           env=env, check=True, capture_output=True)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                login = browser.new_context()
                page = login.new_page()
                page.goto(base + "/login")
                page.fill("input[name=username]", "admin")
                page.fill("input[name=password]", ADMIN_PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url("**/projects")
                state = login.storage_state()
                login.close()
                cases = [(f"CT {args.n} slices 512x512", ct_uid, args.n), ("CR 1955x1841", cr_uid, 0)]
                for name, uid, n in cases:
                    runs = [visit(browser, base, f"{base}/projects/bench/series/{uid}", state, wait_all=n, detail=args.detail)
                            for _ in range(args.runs)]
                    for label in ("first visit", "code cached"):
                        keys = runs[0][label].keys()
                        med = {k: statistics.median(r[label][k] for r in runs) for k in keys}
                        figures = ", ".join(f"{k} {v:.2f} s" for k, v in med.items())
                        print(f"{name:24} {label:12} first pixels (preview) {med['preview']:.2f} s | {figures}")
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"(medians of {args.runs} runs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
