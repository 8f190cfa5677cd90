"""OHIF v2 (the `@ohif/viewer` package from npm) on the portal's origin, configured by its config file alone:
after one portal sign-in it lists the project's studies over QIDO and paints pixels over WADO-RS.

The viewer is served at /ohif/ of the live server's origin by Playwright's request routing (the front door's
`location /ohif/` of the README recipe); everything else goes to Lightbox itself.
"""

import mimetypes
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from portal.dicom import samples
from tests.e2e.conftest import sign_in

OHIF = "@ohif/viewer@4.12.51"
CACHE = Path.home() / ".cache" / "lightbox-tests" / "ohif-viewer-4.12.51"


def ohif_dist() -> Path:
    """The package's dist/ folder, fetched once with `npm pack` into a cache; skip when npm cannot get it."""
    dist = CACHE / "package" / "dist"
    if (dist / "index.umd.js").exists():
        return dist
    if not shutil.which("npm"):
        pytest.skip("npm is not installed: cannot fetch @ohif/viewer")
    CACHE.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["npm", "pack", OHIF], cwd=CACHE, capture_output=True, text=True, timeout=300)
    tgz = next(CACHE.glob("ohif-viewer-*.tgz"), None)
    if out.returncode != 0 or tgz is None:
        pytest.skip(f"could not fetch {OHIF} from npm: {out.stderr[-300:]}")
    with tarfile.open(tgz) as t:
        t.extractall(CACHE, filter="data")
    return dist


CONFIG = """window.config = {
  routerBasename: '/ohif/', extensions: [], showStudyList: true, filterQueryParam: false,
  servers: { dicomWeb: [{ name: 'Lightbox', qidoRoot: '%(root)s', wadoRoot: '%(root)s', wadoUriRoot: '/wado',
    qidoSupportsIncludeField: true, imageRendering: 'wadors', thumbnailRendering: 'wadors',
    enableStudyLazyLoad: true, supportsFuzzyMatching: false }] },
};"""

INDEX = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>OHIF</title></head><body>
<div id="root"></div>
<script src="/ohif/app-config.js"></script><script src="/ohif/index.umd.js"></script>
<script>window.OHIFViewer.installViewer(window.config, 'root', function () {});</script></body></html>"""


def test_ohif_lists_studies_and_paints_pixels_after_one_sign_in(page, live_server, tmp_path):
    dist = ohif_dist()
    assert live_server.api("POST", "/api/v1/projects", json={"name": "ohif"}).status_code == 201
    samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "in", 3, patient_id="OHIF-1")
    live_server.cli("ingest", str(tmp_path / "in"), "--project", "ohif")

    def front_door(route):
        name = route.request.url.split("/ohif/", 1)[1].split("?")[0]
        if name == "app-config.js":
            return route.fulfill(body=CONFIG % {"root": "/dicomweb/ohif"}, content_type="application/javascript")
        file = dist / name
        if name and file.is_file():
            return route.fulfill(path=str(file), content_type=mimetypes.guess_type(name)[0] or "application/octet-stream")
        return route.fulfill(body=INDEX, content_type="text/html")  # the viewer's own routes

    page.route(live_server.url + "/ohif/**", front_door)
    sign_in(page, live_server)  # the portal's session cookie is all the viewer needs
    page.goto(live_server.url + "/ohif/", timeout=120000)
    row = page.get_by_text("OHIF-1").first
    expect(row).to_be_visible(timeout=90000)
    page.screenshot(path=str(tmp_path / "ohif-study-list.png"))
    row.click()
    canvas = page.locator("canvas.cornerstone-canvas").first
    expect(canvas).to_be_visible(timeout=90000)
    painted = False
    for _ in range(120):
        painted = page.evaluate("""() => {
            const c = document.querySelector('canvas.cornerstone-canvas');
            if (!c || !c.width) return false;
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lit = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i] > 16 || d[i + 1] > 16 || d[i + 2] > 16) lit++;
            return lit > (c.width * c.height) / 50;
        }""")
        if painted:
            break
        page.wait_for_timeout(500)
    page.screenshot(path=str(tmp_path / "ohif-viewer.png"))
    assert painted, "OHIF drew no image"
