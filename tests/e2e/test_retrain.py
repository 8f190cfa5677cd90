"""A manager retrains the AI from reviewers' labels on the project's AI page and sees the comparison."""

from playwright.sync_api import expect

from tests.e2e.conftest import sign_in
from tests.helpers import labelled_series


def test_manager_retrains_from_reviewer_labels_and_sees_the_chart(page, live_server, tmp_path):
    assert live_server.api("POST", "/api/v1/projects", json={"name": "rt"}).status_code == 201
    labelled = labelled_series(tmp_path / "labelled", 16)
    live_server.cli("ingest", str(tmp_path / "labelled"), "--project", "rt")
    for uid, _, bad in labelled:
        r = live_server.api("POST", "/api/v1/scan-decisions", params={"Project": "rt"},
                            json={"series": uid, "decision": "UN" if bad else "U"})
        assert r.status_code == 201, r.text

    sign_in(page, live_server)
    page.goto(f"{live_server.url}/projects/rt")
    page.get_by_role("button", name="AI").click()
    expect(page.locator("h1")).to_have_text("AI in rt")
    expect(page.locator("#ai-retrain")).to_contain_text("quality 16")
    page.get_by_role("button", name="Retrain from reviewer labels").click()
    expect(page.locator("#ai-retrain tr[data-run]").first).to_have_attribute("data-state", "done", timeout=180_000)
    chart = page.locator("#retrain-chart")
    expect(chart).to_be_visible()
    expect(chart.locator("rect[data-auc='base-quality']")).to_have_count(1)
    expect(chart.locator("rect[data-auc='new-quality']")).to_have_count(1)
    expect(page.locator("#ai-retrain")).to_contain_text("mean AUC")
    chart.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "retrain.png"), full_page=True)
