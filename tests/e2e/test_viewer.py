"""The series page's viewer: every transfer syntax paints, the keyboard walks slices and series, screenshots are PNGs."""

import httpx
import pydicom
import pytest
from playwright.sync_api import expect

from portal.dicom import samples
from tests.e2e.conftest import sign_in

SYNTAXES = ["explicit_le", "rle", "jpeg_baseline", "jpeg_lossless", "jpeg_ls", "jpeg2000"]

PIXELS_JS = """
async () => {
  const c = document.querySelector('#viewer .lbv-vp canvas');
  const img = new Image();
  img.src = c.toDataURL('image/png');
  await img.decode();
  const cv = document.createElement('canvas');
  cv.width = img.width; cv.height = img.height;
  const ctx = cv.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, cv.width, cv.height).data;
  let nonBg = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] > 8 || d[i + 1] > 8 || d[i + 2] > 8) nonBg++;
  return nonBg / (d.length / 4);
}
"""


@pytest.fixture(scope="module")
def series_by_syntax(live_server, tmp_path_factory):
    """One study per transfer syntax, plus a 12-slice CT and a 10-frame multi-frame, in project 'v'."""
    tmp = tmp_path_factory.mktemp("viewer-data")
    assert live_server.api("POST", "/api/v1/projects", json={"name": "v"}).status_code == 201
    files = {syntax: samples.restamp(samples.sample_path(samples.SAMPLES_BY_SYNTAX[syntax]), tmp / f"{syntax}.dcm")
             for syntax in SYNTAXES}
    files["STACK"] = samples.make_series(samples.sample_path("CT_small.dcm"), tmp / "ct", 12)[0]
    files["MULTI"] = samples.restamp(samples.sample_path(samples.MULTIFRAME_BY_SYNTAX["rle"]), tmp / "mf.dcm")
    live_server.cli("ingest", str(tmp), "--project", "v")
    headers = {k: pydicom.dcmread(f, stop_before_pixels=True) for k, f in files.items()}
    return {k: (ds.SeriesInstanceUID, ds.SOPInstanceUID) for k, ds in headers.items()}


def open_series(page, server, uid):
    page.goto(f"{server.url}/projects/v/series/{uid}")
    page.wait_for_function("() => window.lightboxViewer && window.lightboxViewer.getState().count > 0")


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_every_transfer_syntax_paints(page, live_server, series_by_syntax, syntax):
    sign_in(page, live_server)
    open_series(page, live_server, series_by_syntax[syntax][0])
    for _ in range(40):
        fraction = page.evaluate(PIXELS_JS)
        if fraction > 0.01:
            break
        page.wait_for_timeout(250)
    assert fraction > 0.01, f"{syntax}: the canvas stayed background ({fraction:.4f})"


def test_keyboard_walks_slices_frames_and_series(page, live_server, series_by_syntax, tmp_path):
    sign_in(page, live_server)
    open_series(page, live_server, series_by_syntax["STACK"][0])
    state = lambda: page.evaluate("window.lightboxViewer.getState()")  # noqa: E731
    # It opens on the slice the preview showed (the middle one), not on slice 1.
    assert state()["count"] == 12 and state()["index"] == 6
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => window.lightboxViewer.getState().index === 8")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => window.lightboxViewer.getState().index === 7")

    # The ? overlay lists the shortcuts.
    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    expect(page.locator("#shortcuts")).to_contain_text("next series")
    page.keyboard.press("Escape")
    expect(page.locator("#shortcuts")).to_be_hidden()

    # ↓ / ↑ move between series.
    here = page.url
    page.keyboard.press("ArrowDown")
    page.wait_for_url(lambda u: u != here)
    page.wait_for_function("() => window.lightboxViewer && window.lightboxViewer.getState().count > 0")
    page.keyboard.press("ArrowUp")
    page.wait_for_url(here)

    # Frames of a multi-frame instance.
    open_series(page, live_server, series_by_syntax["MULTI"][0])
    assert state()["count"] == 10
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => window.lightboxViewer.getState().index === 1")

    # The screenshot button downloads a PNG.
    with page.expect_download() as download:
        page.click('[data-action="screenshot"]')
    assert open(download.value.path(), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    page.screenshot(path=str(tmp_path / "viewer.png"))


def test_outsider_gets_404_for_pages_and_images(live_server, series_by_syntax):
    live_server.cli("user", "create", "stranger", "--password", "stranger-pass-1")
    with httpx.Client(base_url=live_server.url) as c:
        c.get("/login")
        r = c.post("/login", data={"username": "stranger", "password": "stranger-pass-1",
                                   "_csrf_token": c.cookies.get("lightbox_csrf")})
        assert r.status_code == 303
        uid, sop = series_by_syntax["STACK"]
        for path in (f"/projects/v/series/{uid}", f"/projects/v/series/{uid}/thumbnail", "/projects/v",
                     f"/projects/v/instances/{sop}/file", f"/projects/v/instances/{sop}/rendered"):
            assert c.get(path).status_code == 404, path
        # Same answer as for a project that does not exist.
        assert c.get(f"/projects/nope/series/{uid}").status_code == 404


def test_mpr_crosshairs_move_the_point_all_three_planes_go_through(page, live_server, series_by_syntax, tmp_path):
    """In MPR the crosshairs show where the planes meet; with Cross pressed a click in the axial plane moves the
    point, so the sagittal and coronal planes follow."""
    page.set_viewport_size({"width": 1280, "height": 800})
    sign_in(page, live_server)
    open_series(page, live_server, series_by_syntax["STACK"][0])
    cross = page.locator('#viewer [data-action="crosshairs"]')
    expect(cross).to_be_hidden()  # only in MPR
    page.click('#viewer [data-action="mpr"]')
    page.wait_for_function("() => window.lightboxViewer.getState().mode === 'mpr'"
                           " && window.lightboxViewer.getState().crosshairs !== null", timeout=30000)
    expect(cross).to_be_visible()
    # Passive crosshairs are drawn from the start: reference lines in each plane's SVG layer.
    page.wait_for_function("() => document.querySelectorAll('#viewer .lbv-vp svg line').length >= 4", timeout=10000)
    before = page.evaluate("() => window.lightboxViewer.getState().crosshairs")
    cross.click()
    expect(cross).to_have_attribute("aria-pressed", "true")
    box = page.locator("#viewer .lbv-vp").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.35)
    page.wait_for_function("(b) => { const c = window.lightboxViewer.getState().crosshairs;"
                           " return c && (Math.abs(c[0] - b[0]) > 1 || Math.abs(c[1] - b[1]) > 1); }",
                           arg=before, timeout=10000)
    after = page.evaluate("() => window.lightboxViewer.getState().crosshairs")
    assert after[2] == pytest.approx(before[2], abs=0.5)  # a click in the axial plane keeps its slice
    page.screenshot(path=str(tmp_path / "mpr-crosshairs.png"))
    cross.click()  # off again: the left button is window/level once more
    expect(cross).to_have_attribute("aria-pressed", "false")
    page.click('#viewer [data-action="mpr"]')
    page.wait_for_function("() => window.lightboxViewer.getState().mode === 'stack'")
    expect(cross).to_be_hidden()
    assert page.evaluate("() => window.lightboxViewer.getState().crosshairs") is None
