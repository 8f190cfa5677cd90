"""A reviewer flags a case in the browser: the colleague's inbox (aiosmtpd) gets the mail with the viewer's
screenshot, the series shows the badge, the colleague's bell counts it, and the audit page lists it all."""

import re
import time

import pydicom
import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import expect

from portal.dicom import samples
from tests.api.test_mail import Inbox, free_port
from tests.e2e.conftest import sign_in, sign_out


@pytest.fixture(scope="module")
def inbox():
    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    handler.port = port
    yield handler
    controller.stop()


@pytest.fixture(scope="module")
def live_server_env(inbox):
    return {"LIGHTBOX_SMTP_URL": f"smtp://127.0.0.1:{inbox.port}"}


def test_flag_a_case_and_see_it_everywhere(page, live_server, inbox, tmp_path):
    assert live_server.api("POST", "/api/v1/projects", json={"name": "team"}).status_code == 201
    for user, role in (("junior", "reviewer"), ("senior", "senior_reviewer")):
        live_server.cli("user", "create", user, "--password", f"{user}-password", "--email", f"{user}@example.org")
        live_server.cli("project", "add-member", "team", user, "--role", role)
    f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp_path / "a.dcm", patient_id="FLAG-1")
    live_server.cli("ingest", str(f), "--project", "team")
    uid = pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID

    sign_in(page, live_server, "junior", "junior-password")
    page.goto(f"{live_server.url}/projects/team/series/{uid}")
    page.wait_for_function("() => window.lightboxViewer && window.lightboxViewer.getState().count > 0")
    panel = page.locator("#flag-panel")
    expect(panel).to_contain_text("Not flagged")
    panel.locator("#flag-open").click()
    panel.get_by_label(re.compile("senior")).check()
    panel.get_by_label("Note").fill("Is this a pneumothorax?")
    page.screenshot(path=str(tmp_path / "flag-form.png"))
    panel.locator("#flag-send").click()
    expect(page.locator("#flagged-badge")).to_be_visible(timeout=15000)
    expect(panel.locator(".flag-history li").first).to_contain_text("Is this a pneumothorax?")
    page.screenshot(path=str(tmp_path / "flagged.png"), full_page=True)

    deadline = time.monotonic() + 30
    while not inbox.messages and time.monotonic() < deadline:
        time.sleep(0.2)
    assert inbox.messages, "the flag mail reached the SMTP server"
    message = inbox.messages[0]["message"]
    assert inbox.messages[0]["rcpt"] == ["senior@example.org"]
    assert f"/projects/team/series/{uid}" in message.get_body(("plain",)).get_content()
    shots = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert len(shots) == 1 and shots[0].get_content()[:4] == b"\x89PNG" and len(shots[0].get_content()) > 1000

    # The colleague's bell counts it; the badge is there for everyone.
    sign_out(page)  # (GET /logout is refused: logout is POST only)
    sign_in(page, live_server, "senior", "senior-password")
    expect(page.locator("#bell .bell-count")).to_have_text("1")
    page.locator("#bell").click()
    page.get_by_role("link", name=re.compile("junior: Regarding team")).click()
    expect(page.locator("#flagged-badge")).to_be_visible()

    # The admin's audit page lists who looked at and flagged the case, and the mail.
    sign_out(page)  # (GET /logout is refused: logout is POST only)
    sign_in(page, live_server)
    page.goto(f"{live_server.url}/admin/audit?object={uid}")
    rows = page.locator("table.audit tbody tr")
    for action, user in (("series_viewed", "junior"), ("series_flagged", "junior"), ("series_viewed", "senior")):
        expect(rows.filter(has_text=action).filter(has_text=user).first).to_be_visible()
    expect(rows.filter(has_text="mail_sent").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
    with page.expect_download() as download:
        page.locator("#audit-csv").click()
    assert "series_flagged" in open(download.value.path()).read()
    page.goto(live_server.url + "/admin/outbox")
    expect(page.locator("table.outbox tbody tr[data-state=sent]")).to_have_count(1)
    page.screenshot(path=str(tmp_path / "outbox.png"), full_page=True)
