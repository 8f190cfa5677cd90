"""The reading desk in a real browser: the image stays in view at 1280×800 and on a tablet, panels fold, decision keys
are safe (undo, the location shown and then cleared), and two reviewers never get the same series (claims)."""

import os
import re

import pydicom
import pytest
from playwright.sync_api import expect

from portal.dicom import samples
from tests.e2e.conftest import sign_in

DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 820, "height": 1180}
SHOTS = os.environ.get("LIGHTBOX_SCREENSHOTS")  # a folder to keep the screenshots in (they are worth a look)


def shot(page, tmp_path, name):
    page.screenshot(path=os.path.join(SHOTS or str(tmp_path), f"desk-{name}.png"))


@pytest.fixture(scope="module")
def desk(live_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("desk-data")
    assert live_server.api("POST", "/api/v1/projects", json={"name": "desk"}).status_code == 201
    for user, role in (("ann", "reviewer"), ("bob", "reviewer"), ("sue", "senior_reviewer"), ("max", "manager")):
        live_server.cli("user", "create", user, "--password", f"{user}-password")
        live_server.cli("project", "add-member", "desk", user, "--role", role)
    stack = samples.make_series(samples.sample_path("CT_small.dcm"), tmp / "ct", 12)[0]
    head = pydicom.dcmread(stack, stop_before_pixels=True)
    # The first single shares the stack's study: the page shows the study's thumbnail strip.
    singles = [samples.restamp(samples.sample_path("CT_small.dcm"), tmp / f"s{i}.dcm",
                               **({"study_uid": head.StudyInstanceUID, "patient_id": str(head.PatientID)} if i == 0
                                  else {"patient_id": f"D-{i}"})) for i in range(3)]
    live_server.cli("ingest", str(tmp), "--project", "desk")
    uid = lambda f: pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID  # noqa: E731
    return {"stack": uid(stack), "singles": [uid(f) for f in singles]}


def in_view(page, selector, min_height=40):
    box = page.locator(selector).bounding_box()
    vp = page.viewport_size
    assert box and box["y"] >= -1 and box["y"] + box["height"] <= vp["height"] + 1, (selector, box, vp)
    assert box["height"] >= min_height, (selector, box)
    return True


def test_the_image_stays_in_view_while_the_panels_scroll_and_fold(browser, live_server, desk, tmp_path):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, live_server, "ann", "ann-password")
    page.goto(f"{live_server.url}/projects/desk/series/{desk['stack']}")
    page.wait_for_function("() => window.lightboxViewer && window.lightboxViewer.getState().count > 0")
    expect(page.locator("#report-forms, #ai-panel").first).to_be_attached()
    shot(page, tmp_path, "1280-top")
    assert in_view(page, "#viewer", 250)
    # Scroll the side panels to their end (and the page, if it scrolls at all): the viewer does not move away.
    page.locator("#side-pane").evaluate("el => el.scrollTo(0, el.scrollHeight)")
    page.mouse.wheel(0, 4000)
    page.wait_for_timeout(200)
    assert in_view(page, "#viewer", 250)
    shot(page, tmp_path, "1280-scrolled")
    strip = page.locator("#series-strip a")
    expect(strip).to_have_count(2)
    expect(page.locator("#series-strip a[aria-current]")).to_have_count(1)
    assert in_view(page, "#series-strip")

    # The tag browser shows the header of the image on screen.
    page.keyboard.press("t")
    expect(page.locator("#tag-browser")).to_be_visible()
    expect(page.locator("#tag-body")).to_contain_text("Patient ID")
    page.locator("#tag-filter").fill("modality")
    expect(page.locator("#tag-body tbody tr:visible").first).to_contain_text("Modality")
    shot(page, tmp_path, "tags")
    page.locator("#close-tags").click()

    # A panel folds, and stays folded on the next series.
    panel = page.locator("#review-panel")
    panel.locator("header button.fold").click()
    expect(panel.locator("button.decision").first).to_be_hidden()
    page.reload()
    expect(page.locator("#review-panel")).to_have_class(re.compile("folded"))
    shot(page, tmp_path, "1280-folded")
    page.locator("#review-panel header button.fold").click()
    expect(page.locator("#review-panel button.decision").first).to_be_visible()

    # Tablet: one column, the viewer pinned on top while the panels scroll beneath it.
    page.set_viewport_size(TABLET)
    page.reload()
    page.wait_for_function("() => window.lightboxViewer && window.lightboxViewer.getState().count > 0")
    page.mouse.move(400, 1000)
    page.mouse.wheel(0, 3000)
    page.wait_for_timeout(300)
    assert page.evaluate("window.scrollY") > 0  # the panels did scroll
    assert in_view(page, "#viewer", 250)
    shot(page, tmp_path, "tablet-scrolled")
    context.close()


def test_decision_keys_are_safe(page, live_server, desk, tmp_path):
    sign_in(page, live_server, "ann", "ann-password")
    page.goto(f"{live_server.url}/projects/desk/series/{desk['singles'][0]}")
    page.wait_for_function("() => window.lightboxViewer && window.lightboxViewer.getState().count > 0")
    panel = page.locator("#review-panel")
    # `r` resets the view and decides nothing.
    page.keyboard.press("r")
    page.wait_for_timeout(300)
    expect(panel).to_contain_text("No decisions yet")

    # The marked location is shown before saving ...
    page.keyboard.press("m")
    box = page.locator("#viewer .lbv-vp canvas").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(panel.locator("#location-text")).to_contain_text("Location to save", timeout=5000)
    page.keyboard.press("o")
    expect(panel.locator("#undo-bar")).to_contain_text("Recorded Q?")
    expect(panel.locator("#undo-bar")).to_contain_text("mm")
    shot(page, tmp_path, "undo")
    # ... undone with z ...
    page.keyboard.press("z")
    expect(panel.locator(".flash-success")).to_contain_text("Undid Q?")
    expect(panel).to_contain_text("No decisions yet")
    # ... and not carried over to the next decision.
    expect(panel.locator("#location-text")).not_to_contain_text("mm")
    page.keyboard.press("u")
    expect(panel.locator("#undo-bar")).to_contain_text("Recorded U")
    expect(panel.locator("ol.history li")).to_have_count(1)
    expect(panel.locator("ol.history li").first).not_to_contain_text("mm")
    # Times read one way across the portal: date, time with seconds, UTC.
    expect(panel.locator("ol.history li time").first).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    # The offer lapses after a few seconds.
    expect(panel.locator("#undo-decision")).to_be_hidden(timeout=15000)

    # A manager cannot put a decision on a key the viewer uses.
    page.locator(".user-menu summary").click()
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, live_server, "max", "max-password")
    page.goto(f"{live_server.url}/projects/desk/settings#review")
    page.locator("input[name='key.0']").fill("r")
    page.locator("#review form button[type=submit]").first.click()
    expect(page.locator("#review .flash-error")).to_contain_text("already means reset the view")


def test_two_reviewers_never_get_the_same_series_and_a_senior_takes_over(browser, live_server, desk, tmp_path):
    contexts = {who: browser.new_context(viewport=DESKTOP) for who in ("ann", "bob", "sue")}
    pages = {who: c.new_page() for who, c in contexts.items()}
    for who, page in pages.items():
        sign_in(page, live_server, who, f"{who}-password")
    ann, bob, sue = pages["ann"], pages["bob"], pages["sue"]
    ann.goto(f"{live_server.url}/projects/desk/queue")
    bob.goto(f"{live_server.url}/projects/desk/queue")
    ann_url, bob_url = ann.url, bob.url
    assert "queue=1" in ann_url and "queue=1" in bob_url
    assert ann_url.split("?")[0] != bob_url.split("?")[0]
    expect(ann.locator("#claim-bar")).to_contain_text("You are reviewing this series")

    # Bob looks at Ann's series: it says who is on it, and offers him no take-over.
    bob.goto(ann_url.split("?")[0])
    expect(bob.locator("#claim-bar")).to_contain_text("ann is reviewing this")
    expect(bob.locator("#take-over")).to_have_count(0)
    shot(bob, tmp_path, "claimed")

    # Sue (senior) takes it over; Ann's page says so when it next renews (here: a reload).
    sue.goto(ann_url.split("?")[0])
    sue.once("dialog", lambda d: d.accept())
    sue.locator("#take-over").click()
    expect(sue.locator("#claim-bar")).to_contain_text("You are reviewing this series")
    ann.reload()
    expect(ann.locator("#claim-bar")).to_contain_text("sue is reviewing this")

    # Leaving the page releases the claim at once.
    sue.goto(f"{live_server.url}/projects/desk")
    uid = ann_url.split("/series/")[1].split("?")[0]
    for _ in range(20):
        claim = live_server.api("GET", "/api/v1/claims", params={"series": uid}).json()["claim"]
        if claim is None:
            break
        ann.wait_for_timeout(250)
    assert claim is None
    for c in contexts.values():
        c.close()


@pytest.mark.parametrize("size", [DESKTOP, TABLET], ids=["1280", "tablet"])
def test_the_settings_page_shows_one_section_at_a_time(page, live_server, desk, tmp_path, size):
    page.set_viewport_size(size)
    sign_in(page, live_server, "max", "max-password")
    page.goto(f"{live_server.url}/projects/desk")
    page.get_by_role("button", name="Project settings").click()
    tabs = page.locator("nav.settings-tabs")
    expect(page.locator("article#members")).to_be_visible()
    expect(page.locator("article#dicom")).to_be_hidden()
    expect(tabs.get_by_role("link", name="Members")).to_have_attribute("aria-current", "page")
    tabs.get_by_role("link", name="DICOM").click()
    expect(page.locator("article#dicom")).to_be_visible()
    expect(page.locator("article#members")).to_be_hidden()
    expect(tabs.get_by_role("link", name="DICOM")).to_have_attribute("aria-current", "page")
    # Saving comes back to the same section.
    page.locator("article#dicom").get_by_role("button", name="Save DICOM settings").click()
    expect(page.locator(".flash-success")).to_contain_text("DICOM settings saved")
    expect(page.locator("article#dicom")).to_be_visible()
    expect(page.locator("article#review")).to_be_hidden()
    tabs.get_by_role("link", name="Mail").click()
    expect(page.locator("article#mail-settings")).to_be_visible()
    expect(page.locator("article#dicom")).to_be_hidden()
    # A placeholder reads as an example, not a saved value: "e.g." and in muted italics.
    recipients = page.locator("article#mail-settings textarea").first
    assert recipients.get_attribute("placeholder").startswith("e.g. ")
    assert page.evaluate("(el) => getComputedStyle(el, '::placeholder').fontStyle", recipients.element_handle()) == "italic"
    tabs.get_by_role("link", name="Review vocabulary").click()
    expect(page.locator("article#review")).to_be_visible()
    expect(page.locator("article#mail-settings")).to_be_hidden()
    page.go_back()
    expect(page.locator("article#mail-settings")).to_be_visible()
    box = tabs.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"] + 1
    shot(page, tmp_path, f"settings-tabs-{size['width']}")
