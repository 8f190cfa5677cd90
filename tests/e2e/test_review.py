"""Two reviewers of different tiers work through a project in the browser: mouse, keyboard, artifacts, queue."""

import re

import pydicom
from playwright.sync_api import expect

from portal.dicom import samples
from tests.e2e.conftest import sign_in


def test_reviewer_and_senior_work_through_a_project(page, live_server, tmp_path):
    assert live_server.api("POST", "/api/v1/projects", json={"name": "qc"}).status_code == 201
    for user, role in (("junior", "reviewer"), ("senior", "senior_reviewer")):
        live_server.cli("user", "create", user, "--password", f"{user}-password")
        live_server.cli("project", "add-member", "qc", user, "--role", role)
    files = [samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / f"{i}.dcm", patient_id=f"QC-{i}")
             for i in range(3)]
    live_server.cli("ingest", str(tmp_path), "--project", "qc")
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in files]

    # The junior reviewer: my queue opens the first unreviewed series.
    sign_in(page, live_server, "junior", "junior-password")
    page.goto(live_server.url + "/projects/qc")
    page.get_by_role("button", name="My queue").click()
    expect(page).to_have_url(re.compile(r"/projects/qc/series/.+\?queue=1"))
    page.wait_for_load_state()
    panel = page.locator("#review-panel")
    expect(panel.locator("button.decision[value=UN]")).to_be_disabled()  # not this tier

    # Artifacts: one click present, two clicks absent.
    panel.locator(".chip[data-artifact=ghosting_motion]").click()
    panel.locator(".chip[data-artifact=lesions]").click()
    panel.locator(".chip[data-artifact=lesions]").click()
    panel.get_by_label("Note").fill("Possible motion in the lower slices")
    # Mark a location in the viewer, then decide with the mouse.
    page.wait_for_function("() => window.lightboxViewer && window.lightboxViewer.getState().count > 0")
    page.click('[data-action="mark"]')
    box = page.locator("#viewer .lbv-vp canvas").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(panel.locator("#location-text")).to_contain_text("mm", timeout=5000)
    panel.locator("button.decision[value='Q?']").click()
    expect(panel.locator(".flash-success")).to_contain_text("Recorded Q?")
    expect(panel.locator(".status")).to_contain_text("needs senior review")
    entry = panel.locator("ol.history li").first
    expect(entry).to_contain_text("junior")
    expect(entry).to_contain_text("Possible motion in the lower slices")
    expect(entry.locator(".tag.present")).to_have_text("ghosting motion")
    expect(entry.locator(".tag.absent")).to_have_text("no lesions")
    expect(entry).to_contain_text(re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"))
    expect(entry).to_contain_text("mm")

    # Keyboard, with auto-advance: `u` decides Usable and the next queued series opens.
    panel.locator("#auto-advance").check()
    page.goto(live_server.url + "/projects/qc/queue")
    second_url = page.url
    assert uids.index(second_url.split("/series/")[1].split("?")[0]) >= 0
    page.keyboard.press("u")
    # The panel offers Undo for 6 s before it advances: on a loaded machine the default 30 s is tight.
    page.wait_for_url(lambda u: u != second_url and "queue=1" in u, timeout=60_000)
    page.wait_for_load_state()
    # A person presses the key once the panel shows its buttons (the panel and the claim arrive after load).
    expect(page.locator("#review-panel button.decision[value=U]")).to_be_enabled()
    page.keyboard.press("u")
    page.wait_for_url(re.compile(r"/projects/qc(\?|$)"), timeout=60_000)
    expect(page.locator(".flash-success")).to_contain_text("queue is empty")
    page.locator(".user-menu summary").click()
    page.get_by_role("button", name="Sign out").click()

    # The senior reviewer resolves the questionable one.
    sign_in(page, live_server, "senior", "senior-password")
    page.goto(live_server.url + "/projects/qc/queue")
    expect(page.locator("#review-panel .status")).to_contain_text("needs senior review")
    page.locator("#auto-advance").uncheck()  # (the browser remembers the junior's choice)
    page.keyboard.press("p")
    expect(page.locator("#review-panel .status")).to_contain_text("complete")
    expect(page.locator("#review-panel ol.history li")).to_have_count(2)

    page.goto(live_server.url + "/projects/qc/dashboard")
    expect(page.locator("[data-status=complete]")).to_have_text("3")
    expect(page.locator("[data-decision=UN]")).to_have_text("1")
    expect(page.locator("#reviewers")).to_contain_text("junior")
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
