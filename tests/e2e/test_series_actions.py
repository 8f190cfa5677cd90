"""More of the reading desk in a real browser: a radiograph opens with the automatic window (a CT keeps its header's),
full screen, the forms that apply to the series only, and the series' download, copy-link and delete."""

import io
import zipfile

import pydicom
import pytest
from playwright.sync_api import expect

from portal.dicom import samples
from tests.e2e.conftest import sign_in, sign_out

DESKTOP = {"width": 1280, "height": 800}
HEADER_WINDOW = (40, 400)  # centre, width: what both series' headers say


@pytest.fixture(scope="module")
def series(live_server, tmp_path_factory):
    """Project 'sa': a CT and a chest CR (one image each, the same header window) and a 3-image CT to delete."""
    tmp = tmp_path_factory.mktemp("actions-data")
    assert live_server.api("POST", "/api/v1/projects", json={"name": "sa"}).status_code == 201
    for user, role in (("rue", "reviewer"), ("meg", "manager")):
        live_server.cli("user", "create", user, "--password", f"{user}-password")
        live_server.cli("project", "add-member", "sa", user, "--role", role)
    out = {}
    for name, modality in (("ct", "CT"), ("cr", "CR")):
        f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp / name / "1.dcm", patient_id=f"SA-{name}")
        ds = pydicom.dcmread(f)
        ds.Modality = modality
        if modality == "CR":
            ds.BodyPartExamined = "CHEST"
        ds.WindowCenter, ds.WindowWidth = HEADER_WINDOW
        ds.save_as(f)
        out[name] = ds.SeriesInstanceUID
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp / "gone", 3, patient_id="SA-gone")
    out["gone"] = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    live_server.cli("ingest", str(tmp), "--project", "sa")
    return out


def open_series(page, server, uid):
    page.goto(f"{server.url}/projects/sa/series/{uid}")
    page.wait_for_function("() => window.lightboxViewer && window.lightboxViewer.getState().windowWidth > 0")
    return page.evaluate("window.lightboxViewer.getState()")


def test_a_radiograph_opens_with_the_automatic_window_and_the_viewer_goes_full_screen(page, live_server, series):
    page.set_viewport_size(DESKTOP)
    sign_in(page, live_server, "rue", "rue-password")
    ct = open_series(page, live_server, series["ct"])
    assert (ct["windowCenter"], ct["windowWidth"]) == HEADER_WINDOW
    cr = open_series(page, live_server, series["cr"])
    # The histogram's window, not the header's (projection images carry a printer's window, or none).
    assert (cr["windowCenter"], cr["windowWidth"]) != HEADER_WINDOW and cr["windowWidth"] > 0
    # `a` asks for the automatic window again (after a drag, say): the same one.
    page.evaluate("window.lightboxViewer.setWindow(10, 10)")
    page.keyboard.press("a")
    page.wait_for_function(f"() => window.lightboxViewer.getState().windowWidth === {cr['windowWidth']}")

    # f: the viewer pane alone on the screen; f again leaves.
    page.keyboard.press("f")
    page.wait_for_function("() => document.fullscreenElement && document.fullscreenElement.id === 'viewer-pane'")
    box = page.locator("#viewer").bounding_box()
    assert box["width"] > 0.9 * DESKTOP["width"], box
    page.keyboard.press("f")
    page.wait_for_function("() => document.fullscreenElement === null")


def test_a_form_shows_only_on_the_series_it_applies_to(page, live_server, series):
    sign_in(page, live_server, "meg", "meg-password")
    page.goto(live_server.url + "/projects/sa/forms")
    add = page.get_by_role("button", name="Add Chest X-ray TB screening")
    if add.count():
        add.click()
    tb = "#form-cxr-tb-screening"
    # Its default: chest radiographs (CR, DX), so the CT does not ask its required questions.
    page.goto(f"{live_server.url}/projects/sa/series/{series['cr']}/forms")
    expect(page.locator(tb)).to_be_visible()
    page.goto(f"{live_server.url}/projects/sa/series/{series['ct']}/forms")
    expect(page.locator(tb)).to_have_count(0)

    page.goto(live_server.url + "/projects/sa/forms")
    row = page.locator("#applies-cxr-tb-screening")
    expect(row).to_contain_text("CR, DX · CHEST")
    row.get_by_label("modalities for Chest X-ray TB screening").fill("CR, DX, X-RAY!")
    row.get_by_role("button", name="Save").click()
    expect(page.locator("#form-applicability .flash-error")).to_contain_text("'X-RAY!' is not a DICOM modality")
    row = page.locator("#applies-cxr-tb-screening")
    row.get_by_label("modalities for Chest X-ray TB screening").fill("CR, DX, CT")
    row.get_by_label("body parts for Chest X-ray TB screening").fill("")
    row.get_by_role("button", name="Save").click()
    expect(page.locator("#form-applicability .flash-success")).to_be_visible()
    expect(page.locator("#applies-cxr-tb-screening")).to_contain_text("CR, CT, DX")
    page.goto(f"{live_server.url}/projects/sa/series/{series['ct']}/forms")
    expect(page.locator(tb)).to_be_visible()


def test_a_series_is_downloaded_linked_and_deleted(browser, live_server, series):
    context = browser.new_context(viewport=DESKTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    # A reviewer may download and link, not delete.
    sign_in(page, live_server, "rue", "rue-password")
    address = f"{live_server.url}/projects/sa/series/{series['gone']}"
    page.goto(address)
    expect(page.locator("#housekeeping #download")).to_be_visible()
    expect(page.locator("#housekeeping #delete")).to_have_count(0)
    sign_out(page)

    sign_in(page, live_server, "meg", "meg-password")
    page.goto(address)
    with page.expect_download() as download:
        page.locator("#download").click()
    with zipfile.ZipFile(io.BytesIO(open(download.value.path(), "rb").read())) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
        assert len(names) == 3, names
        assert {pydicom.dcmread(z.open(n), stop_before_pixels=True).SeriesInstanceUID for n in names} == {
            series["gone"]}

    # Copy link: the page's own address, on the clipboard.
    expect(page.locator("#share-link")).to_have_value(address)
    page.locator("#copy-link").click()
    expect(page.locator("#copy-link")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == address

    # Delete asks first; cancelled, nothing goes.
    page.once("dialog", lambda d: d.dismiss())
    page.locator("#delete").click()
    expect(page).to_have_url(address)
    page.once("dialog", lambda d: d.accept())
    page.locator("#delete").click()
    expect(page.locator(".flash-success")).to_contain_text("Deleted the series and its 3 file(s)")
    assert page.goto(address).status == 404
    context.close()
