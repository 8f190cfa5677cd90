"""AI in the browser: an uploaded series is scored with no one clicking; the series page shows the
scores and overlays the heatmap on the image the model scored worst."""

import re

import pydicom
from playwright.sync_api import expect

from portal.dicom import samples
from tests.e2e.conftest import sign_in


def test_scores_appear_and_the_heatmap_overlays_the_worst_image(page, live_server, tmp_path):
    assert live_server.api("POST", "/api/v1/projects", json={"name": "ai"}).status_code == 201
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "ct", 5)
    live_server.cli("ingest", str(tmp_path / "ct"), "--project", "ai")
    uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID

    sign_in(page, live_server)
    page.goto(f"{live_server.url}/projects/ai/series/{uid}")
    panel = page.locator("#ai-panel")
    # The panel polls itself while the job waits for the quiet period and runs.
    expect(panel).to_have_attribute("data-state", "done", timeout=90_000)
    expect(panel.locator("tr[data-score='quality'] td.num")).to_have_text(re.compile(r"^[01]\.\d\d$"))
    expect(panel.locator("tr[data-score]")).to_have_count(7)

    page.wait_for_function("() => window.lightboxViewer && window.lightboxViewer.getState().count === 5")
    toggle = page.locator("#heatmap-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    page.wait_for_function("() => window.lightboxViewer.getState().heatmap?.shown === true")
    state = page.evaluate("window.lightboxViewer.getState()")
    assert state["index"] == state["heatmap"]["imageIndex"]

    # The heatmap layer has coloured pixels where the image is.
    coloured = page.evaluate("""() => {
      const c = document.querySelector('#viewer canvas.lbv-heat');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
      return n / (d.length / 4);
    }""")
    assert coloured > 0.001
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(tmp_path / "ai-heatmap.png"))

    # It belongs to one image: another slice shows none; hiding removes it.
    other = 0 if state["index"] != 0 else 1
    page.evaluate(f"window.lightboxViewer.goTo({other})")
    page.wait_for_function("() => window.lightboxViewer.getState().heatmap?.shown === false")
    toggle.click()
    expect(toggle).to_have_text("Show heatmap on image")
    page.wait_for_function("() => window.lightboxViewer.getState().heatmap === null")

    # The studies table shows the score in its AI column.
    page.goto(f"{live_server.url}/projects/ai")
    expect(page.locator("td.ai-cell .ai-score").first).to_have_text(re.compile(r"^[01]\.\d\d$"))
