"""A manager exports and imports from the project page, watches each run finish, and reads the sync history."""

import re
from pathlib import Path

from playwright.sync_api import expect

from portal.dicom import samples
from tests.e2e.conftest import sign_in


def test_manager_exports_imports_and_reads_the_sync_history(page, live_server, tmp_path):
    assert live_server.api("POST", "/api/v1/projects", json={"name": "sync"}).status_code == 201
    # Secondary-capture images: no AI model is routed to them, so the one worker is free for the runs.
    for i in range(2):
        samples.restamp(samples.sample_path("image_dfl.dcm"), tmp_path / "in" / f"{i}.dcm", patient_id=f"SY-{i}")
    live_server.cli("ingest", str(tmp_path / "in"), "--project", "sync")

    sign_in(page, live_server)
    page.goto(live_server.url + "/projects/sync")
    panel = page.locator("#exchange")
    expect(panel).to_be_visible()
    page.screenshot(path=str(tmp_path / "project-page.png"), full_page=True)
    panel.get_by_label("Export format").select_option("csv")
    panel.get_by_role("button", name="Export", exact=True).click()
    run = page.locator("#exchange-run")
    expect(run).to_have_attribute("data-state", "done", timeout=30000)  # polled live until finished
    expect(run).to_contain_text("Exported 2 frame(s)")
    exported = Path(live_server.data_dir) / "exports" / "sync" / "sync.csv"
    assert exported.is_file() and len(exported.read_text().splitlines()) == 3
    assert list((exported.parent / "backups").iterdir())

    # A file for another project: refused, with the row named.
    bad = tmp_path / "bad.csv"
    bad.write_text(exported.read_text().replace("\nsync,", "\nelsewhere,"))
    panel.locator("input[type=file]").set_input_files(str(bad))
    panel.get_by_role("button", name="Import", exact=True).click()
    expect(run).to_have_attribute("data-state", "failed", timeout=30000)
    expect(run.locator("table.problems")).to_contain_text("not 'sync'")
    expect(run.locator("table.problems tbody tr").first).to_contain_text("2")
    page.screenshot(path=str(tmp_path / "refused-import.png"), full_page=True)

    # The export itself imports cleanly: nothing new, nothing duplicated.
    panel.locator("input[type=file]").set_input_files(str(exported))
    panel.get_by_role("button", name="Import", exact=True).click()
    expect(run).to_have_attribute("data-state", "done", timeout=30000)
    expect(run).to_contain_text("0 new frame(s)")
    expect(run).to_contain_text("2 frame(s) were already here")

    panel.get_by_role("link", name="Sync history").click()
    expect(page).to_have_url(re.compile(r"/projects/sync/sync$"))
    rows = page.locator("table.sync-runs tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("import")
    expect(rows.nth(0)).to_have_attribute("data-state", "done")
    expect(rows.nth(1)).to_have_attribute("data-state", "failed")
    expect(rows.nth(2)).to_contain_text("export")
    expect(rows.nth(2)).to_contain_text("admin")
    page.screenshot(path=str(tmp_path / "sync-history.png"), full_page=True)

    # The schedule is set on the settings page.
    page.get_by_role("link", name="Change").click()
    section = page.locator("article#exchange")
    section.get_by_label("Sync every (minutes, 0 = off)").fill("30")
    section.get_by_role("button", name="Save import/export settings").click()
    expect(page.locator(".flash-success")).to_contain_text("Import/export settings saved")
    expect(page.locator("article#exchange").get_by_label("Sync every (minutes, 0 = off)")).to_have_value("30")
    page.screenshot(path=str(tmp_path / "settings.png"), full_page=True)
    page.goto(live_server.url + "/projects/sync/sync")
    expect(page.locator("main, body").first).to_contain_text("every 30 minute(s)")
