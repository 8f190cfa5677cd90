"""A reviewer fills a report form (wrong first, then right) and sees it in the history; a manager edits the form."""

import re

import pydicom
import pytest
from playwright.sync_api import expect

from portal.dicom import samples
from tests.e2e.conftest import sign_in, sign_out


@pytest.fixture(scope="module")
def series_uid(live_server, tmp_path_factory):
    """Project 'rf' with a reviewer (rita), a manager (mark) and one series."""
    tmp = tmp_path_factory.mktemp("forms-data")
    assert live_server.api("POST", "/api/v1/projects", json={"name": "rf"}).status_code == 201
    for user, role in (("rita", "reviewer"), ("mark", "manager")):
        live_server.cli("user", "create", user, "--password", f"{user}-password-1", "--email", f"{user}@example.org")
        live_server.cli("project", "add-member", "rf", user, "--role", role)
    (f,) = samples.make_series(samples.sample_path("CT_small.dcm"), tmp / "cxr", 1, patient_id="RF-1")
    ds = pydicom.dcmread(f)  # a chest radiograph as far as the TB form's applicability is concerned
    ds.Modality, ds.BodyPartExamined = "CR", "CHEST"
    ds.save_as(f)
    live_server.cli("ingest", str(f.parent), "--project", "rf")
    return pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID


def test_reviewer_reports_and_manager_edits_the_form(page, live_server, series_uid, tmp_path):
    # The manager makes sure the project uses the TB screening form (new projects get it already).
    sign_in(page, live_server, "mark", "mark-password-1")
    page.goto(live_server.url + "/projects/rf/forms")
    add = page.get_by_role("button", name="Add Chest X-ray TB screening")
    if add.count():
        add.click()
    expect(page.locator("#assigned-cxr-tb-screening")).to_be_visible()
    sign_out(page)

    # A reviewer opens the series' forms and fills the TB report with a mistake.
    sign_in(page, live_server, "rita", "rita-password-1")
    page.goto(f"{live_server.url}/projects/rf/series/{series_uid}/forms")
    form = page.locator("#form-cxr-tb-screening")
    form.get_by_role("group", name="Projection").get_by_label("PA").check()
    form.get_by_role("group", name="Image quality").get_by_label("Good").check()
    findings = form.get_by_role("group", name="Findings", exact=True)
    expect(findings).to_be_hidden()  # only asked when something is abnormal
    form.get_by_role("group", name="Abnormal findings present").get_by_label("Yes").check()
    expect(findings).to_be_visible()
    findings.get_by_label("Cavitation").check()
    form.get_by_label("Largest cavity diameter").fill("24")
    form.get_by_label("TB likelihood").fill("150")
    form.get_by_role("button", name="Submit report").click()

    form = page.locator("#form-cxr-tb-screening")
    expect(form.locator(".flash-error")).to_contain_text("correct the 2 answers")
    expect(form.locator("[data-field=tb_likelihood] .lb-error")).to_have_text("Must be at most 100")
    expect(form.locator("[data-field=recommendation] .lb-error")).to_have_text("Required")
    expect(form.get_by_label("Cavitation")).to_be_checked()  # what was entered is kept
    expect(form.get_by_label("Largest cavity diameter")).to_have_value("24")
    expect(form.locator(".lb-submission")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "forms-errors.png"), full_page=True)

    # Fixed, it is saved and shows in the history with the form version it used.
    form.get_by_label("TB likelihood").fill("80")
    form.get_by_role("group", name="Recommendation").get_by_label("Sputum test (Xpert MTB/RIF)").check()
    form.get_by_role("button", name="Submit report").click()
    form = page.locator("#form-cxr-tb-screening")
    expect(form.locator(".flash-success")).to_contain_text("Saved at")
    entry = form.locator(".lb-submission").first
    expect(entry).to_contain_text("rita")
    expect(entry).to_contain_text("Findings: Cavitation")
    expect(entry).to_contain_text("Largest cavity diameter: 24 mm")
    expect(entry.locator(".badge")).to_have_text("v1")
    expect(entry.locator("time")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    expect(entry.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"))
    page.screenshot(path=str(tmp_path / "forms-panel.png"), full_page=True)
    sign_out(page)

    # The manager adds a question in the builder and saves version 2.
    sign_in(page, live_server, "mark", "mark-password-1")
    page.goto(live_server.url + "/projects/rf/forms/cxr-tb-screening")
    page.get_by_label("New field").select_option("yes_no")
    page.get_by_role("button", name="Add field").click()
    new = page.locator("#bf-13")
    new.get_by_label("Label").fill("Previous TB treatment")
    new.get_by_label("Required").check()
    page.get_by_role("button", name="Update preview").click()
    expect(page.locator(".builder-preview")).to_contain_text("Previous TB treatment")
    expect(page.locator("#fields-13-name")).to_have_value("previous_tb_treatment")
    page.screenshot(path=str(tmp_path / "builder.png"))
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.locator(".flash-success")).to_contain_text("as version 2")
    expect(page.locator(".builder-versions li")).to_have_count(2)

    # The series now offers version 2; the earlier report still says version 1.
    page.goto(f"{live_server.url}/projects/rf/series/{series_uid}/forms")
    form = page.locator("#form-cxr-tb-screening")
    expect(form.locator("header")).to_contain_text("version 2")
    expect(form.get_by_role("group", name="Previous TB treatment")).to_be_visible()
    expect(form.locator(".lb-submission .badge")).to_have_text("v1")
