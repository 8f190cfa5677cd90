"""An administrator registers a DICOM node, tests it with C-ECHO, then sends a study and a series to it."""

import pydicom
from playwright.sync_api import expect

from portal.dicom import samples
from tests.e2e.conftest import sign_in
from tests.network import storescp  # noqa: F401 (fixture)


def test_admin_adds_a_node_echoes_it_and_sends_a_study_and_a_series(page, live_server, storescp, tmp_path):
    port, received = storescp
    assert live_server.api("POST", "/api/v1/projects", json={"name": "out"}).status_code == 201
    study = pydicom.uid.generate_uid()
    for i in range(2):  # secondary captures: no AI model is routed to them, the one worker stays free
        samples.restamp(samples.sample_path("image_dfl.dcm"), tmp_path / "in" / f"{i}.dcm", patient_id="SEND-1",
                        study_uid=study)
    live_server.cli("ingest", str(tmp_path / "in"), "--project", "out")

    sign_in(page, live_server)
    page.goto(live_server.url + "/admin/nodes")
    form = page.locator("#node-form")
    form.get_by_label("Name").fill("dest")
    form.get_by_label("AE title").fill("DEST")
    form.get_by_label("Host").fill("127.0.0.1")
    form.get_by_label("Port").fill(str(port))
    form.get_by_role("button", name="Add node").click()
    row = page.locator("#nodes tr[data-node=dest]")
    expect(row).to_contain_text("DEST")
    row.get_by_role("button", name="C-ECHO").click()
    expect(row.locator(".echo-out")).to_contain_text("succeeded")

    page.goto(live_server.url + f"/projects/out/studies/{study}")
    page.locator("#send-open").click()
    expect(page.get_by_label("Node")).to_be_visible()
    page.get_by_label("Node").select_option("dest")
    page.get_by_role("button", name="Send study").click()
    job = page.locator(".send-job")
    expect(job).to_have_attribute("data-state", "done", timeout=30000)
    expect(job).to_contain_text("2 / 2 instance(s) sent")
    assert len(list(received.iterdir())) == 2

    page.locator(".series-card").first.click()
    page.wait_for_url("**/projects/out/series/**")
    page.wait_for_load_state("networkidle")  # the side panels have loaded: nothing moves under the click
    page.locator("#send-open").click()
    expect(page.get_by_role("button", name="Send series")).to_be_visible()
    page.get_by_role("button", name="Send series").click()
    expect(page.locator(".send-job")).to_have_attribute("data-state", "done", timeout=30000)
    page.get_by_role("link", name="Send history").click()
    rows = page.locator("#send-history tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_have_attribute("data-state", "done")
    expect(rows.nth(0)).to_contain_text("admin")
