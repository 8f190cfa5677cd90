"""AI suggestions meet the reviewer: the model's artifact outputs, named in the project's vocabulary, are pre-marked
"suggested" on the decision panel and recorded only when the reviewer confirms one; the AI page sets the mapping,
the suggestion threshold, the alert window and the critical threshold."""

import numpy as np
import pydicom
from playwright.sync_api import expect

from portal.ai import artifacts
from portal.dicom import samples
from portal.inference.suggestions import DEFAULT_MAP
from tests.e2e.conftest import sign_in


def _with_artifacts(path) -> None:
    """Rewrite a CT file's pixels with strong ghosting, fold-over and ringing (the model should see something)."""
    ds = pydicom.dcmread(path)
    raw = ds.pixel_array.astype(np.float64)
    lo, hi = raw.min(), raw.max()
    img = (raw - lo) / (hi - lo)
    img = artifacts.apply_artifacts(img, {"motion": 1.0, "wraparound": 1.0, "gibbs": 1.0}, 5)
    ds.PixelData = (img * (hi - lo) + lo).round().astype(ds.pixel_array.dtype).tobytes()
    ds.save_as(path)


def test_suggested_artifacts_are_marked_and_saved_only_when_confirmed(page, live_server, tmp_path):
    assert live_server.api("POST", "/api/v1/projects", json={"name": "sg"}).status_code == 201
    files = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "ct", 3)
    for f in files:
        _with_artifacts(f)
    uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID

    sign_in(page, live_server)
    # The manager lowers the suggestion threshold on the AI page (so that this clean image gets suggestions).
    page.goto(f"{live_server.url}/projects/sg/ai")
    expect(page.locator("select[name='map-motion']")).to_have_value(DEFAULT_MAP["motion"])
    expect(page.locator("input[name='alert_window']")).to_have_value("24")
    page.locator("input[name='threshold']").fill("0.01")
    page.get_by_role("button", name="Save AI settings").click()
    expect(page.locator(".flash")).to_contain_text("AI settings saved")

    live_server.cli("ingest", str(tmp_path / "ct"), "--project", "sg")
    page.goto(f"{live_server.url}/projects/sg/series/{uid}")
    expect(page.locator("#ai-panel")).to_have_attribute("data-state", "done", timeout=90_000)
    scores = live_server.api("GET", f"/api/v1/results/{uid}").json()["result"]["scores"]
    expected = sorted(DEFAULT_MAP[o] for o, v in scores.items() if o in DEFAULT_MAP and v >= 0.01)
    assert expected, f"no mapped output reaches 0.01 on this image: {scores}"

    page.reload()
    panel = page.locator("#review-panel")
    chips = panel.locator(".chip.suggested")
    expect(chips).to_have_count(len(expected))
    assert sorted(chips.evaluate_all("cs => cs.map(c => c.dataset.artifact)")) == expected
    for k in range(len(expected)):  # marked, but undecided: nothing is recorded for them yet
        expect(chips.nth(k)).to_have_attribute("data-state", "-1")
        expect(chips.nth(k).locator(".suggested-tag")).to_have_text("suggested")
    expect(panel.locator("#ai-suggestions")).to_contain_text("nothing is recorded until you decide")

    # Deciding without touching a chip records no artifact ...
    panel.locator("button.decision[value='Q?']").click()
    expect(panel.locator("ol.history li")).to_have_count(1)
    expect(panel.locator("ol.history li .tag")).to_have_count(0)
    # ... confirming one records exactly that one.
    first = expected[0]
    panel.locator(f".chip[data-artifact={first}]").click()
    expect(panel.locator(f".chip[data-artifact={first}]")).to_have_attribute("data-state", "1")
    panel.locator("button.decision[value='Q?']").click()
    expect(panel.locator("ol.history li")).to_have_count(2)
    expect(panel.locator("ol.history li").first.locator(".tag.present")).to_have_text(first.replace("_", " "))
