"""The progress dashboard in a real browser: a manager reads, at a glance and at 1280×800 as on a tablet, how two
reviewers agree (Cohen's κ), how each model version's call meets the final decisions, and the decisions per day."""

import datetime as dt
import os

import pydicom
import pytest
from playwright.sync_api import expect

from portal.dicom import samples
from tests.e2e.conftest import sign_in

DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 768, "height": 1024}
SHOTS = os.environ.get("LIGHTBOX_SCREENSHOTS")  # a folder to keep the screenshots in (they are worth a look)
TODAY = dt.datetime.now(dt.timezone.utc)


def _day(days_ago: int) -> str:
    return (TODAY - dt.timedelta(days=days_ago)).date().isoformat()


@pytest.fixture(scope="module")
def agreed(live_server, tmp_path_factory):
    """Six series: ann and bob both decide the first four (3 of 4 alike: κ 0.50), cat decided the last two on
    earlier days; lightbox-quality 1.0.0 scored all six (series 1 twice: the later job counts), 1.2.0 three."""
    tmp = tmp_path_factory.mktemp("dashboard-data")
    assert live_server.api("POST", "/api/v1/projects", json={"name": "agree"}).status_code == 201
    for user, role in (("ann", "reviewer"), ("bob", "reviewer"), ("cat", "reviewer"), ("max", "manager")):
        live_server.cli("user", "create", user, "--password", f"{user}-password")
        live_server.cli("project", "add-member", "agree", user, "--role", role)
    uids = []
    for i in range(6):
        f = samples.restamp(samples.sample_path("CT_small.dcm"), tmp / f"{i}.dcm", patient_id=f"AG-{i}")
        ds = pydicom.dcmread(f)
        ds.Modality = "OT"  # routed to no model: the server scores nothing itself, the results below are the test's
        ds.save_as(f)
        uids.append(ds.SeriesInstanceUID)
    live_server.cli("ingest", str(tmp), "--project", "agree")

    def decide(who, uid, code):
        r = live_server.api("POST", "/api/v1/scan-decisions", json={"series": uid, "decision": code},
                            headers={"X-USERNAME": who, "X-PASSWORD": f"{who}-password"})
        assert r.status_code == 201, r.text

    for uid, a, b in zip(uids, ("U", "U", "Q?", "U"), ("U", "U", "Q?", "Q?")):
        decide("ann", uid, a)
        decide("bob", uid, b)  # the later: the final decision
    (project,), = live_server.sql("SELECT id FROM lb_project WHERE name = ?", "agree")
    ids = [live_server.sql("SELECT id FROM lb_series WHERE series_instance_uid = ?", uid)[0][0] for uid in uids]
    # Decisions on earlier days (no request can date one in the past): the triggers count them as any other.
    for series, code, days_ago in ((ids[4], "U", 3), (ids[5], "Q?", 1)):
        when = TODAY - dt.timedelta(days=days_ago)
        live_server.sql("""INSERT INTO lb_decision (project, series, username, role, code, note, artifacts, location,
                           created_at) VALUES (?, ?, 'cat', 'reviewer', ?, '', '{}', '{}', ?)""",
                        project, series, code, when)
        live_server.sql("UPDATE lb_series SET review_status = 'complete' WHERE id = ?", series)
    for series, version, quality in ((ids[0], "1.0.0", 0.1), (ids[1], "1.0.0", 0.05), (ids[1], "1.0.0", 0.8),
                                     (ids[2], "1.0.0", 0.2), (ids[3], "1.0.0", 0.9), (ids[4], "1.0.0", 0.25),
                                     (ids[5], "1.0.0", 0.5), (ids[0], "1.2.0", 0.35), (ids[1], "1.2.0", 0.4),
                                     (ids[2], "1.2.0", 0.36)):
        (job,), = live_server.sql(
            """INSERT INTO lb_inference_job (project, series, model_name, model_version, state, attempts, error,
               queued_at, finished_at, worker) VALUES (?, ?, 'lightbox-quality', ?, 'done', 1, '', ?, ?, '')
               RETURNING id""", project, series, version, TODAY, TODAY)
        live_server.sql("""INSERT INTO lb_result (job, series, name, algorithm, value, text, type, model_name,
                           model_version, created_at) VALUES (?, ?, 'quality', 'lightbox-quality', ?, '',
                           'probability', 'lightbox-quality', ?, ?)""", job, series, quality, version, TODAY)
    return uids


def cells(page, model: str, call: str) -> dict[str, str]:
    row = page.locator(f"figure[data-model='{model}'] tr[data-call='{call}']")
    return {c.get_attribute("data-code"): c.inner_text() for c in row.locator("td.cell").all()}


def fits(page, selector: str) -> None:
    """Inside the window sideways, and nothing in it cut off (no scrolled-away part)."""
    width = page.viewport_size["width"]
    for el in page.locator(selector).all():
        box = el.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (selector, box, width)
        assert el.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), selector


@pytest.mark.parametrize("size", [DESKTOP, TABLET], ids=["1280", "tablet"])
def test_the_manager_reads_agreement_and_pace_at_a_glance(browser, live_server, agreed, tmp_path, size):
    context = browser.new_context(viewport=size)
    page = context.new_page()
    sign_in(page, live_server, "max", "max-password")
    page.goto(f"{live_server.url}/projects/agree")
    page.get_by_role("button", name="Progress").click()
    expect(page.get_by_role("heading", name="Review progress")).to_be_visible()

    # Reviewer against reviewer: 4 series, 3 alike, κ 0.50 (a fair-to-moderate, orange bar half full).
    pair = page.locator("#agreement tr[data-pair='ann:bob']")
    expect(pair).to_be_visible()
    expect(pair.locator("td").nth(0)).to_have_text("ann · bob")
    expect(pair.locator("td").nth(1)).to_have_text("4")
    expect(pair.locator("td").nth(2)).to_have_text("75%")
    expect(pair.locator(".kappa-value")).to_have_text("0.50")
    bar, fill = pair.locator(".kappa-bar"), pair.locator(".kappa-bar span")
    assert abs(fill.bounding_box()["width"] / bar.bounding_box()["width"] - 0.5) < 0.05
    assert fill.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(239, 108, 0)"
    expect(page.locator("#agreement tr[data-pair]")).to_have_count(1)  # cat shares no series with anyone

    # The model against the final decision, per version, threshold 0.3 (1.0.0) and 0.37 (1.2.0).
    old, new = "lightbox-quality:1.0.0", "lightbox-quality:1.2.0"
    expect(page.locator(f"figure[data-model='{old}'] figcaption")).to_contain_text("6 series")
    assert cells(page, old, "critical") == {"U": "2", "UE": "0", "Q?": "1", "UN": "0"}
    assert cells(page, old, "not critical") == {"U": "1", "UE": "0", "Q?": "2", "UN": "0"}
    expect(page.locator(f"figure[data-model='{old}'] tr[data-call='critical'] td").last).to_have_text("3")
    expect(page.locator(f"figure[data-model='{new}'] figcaption")).to_contain_text("3 series")
    assert cells(page, new, "critical") == {"U": "1", "UE": "0", "Q?": "1", "UN": "0"}
    assert cells(page, new, "not critical") == {"U": "1", "UE": "0", "Q?": "0", "UN": "0"}
    expect(page.locator("#ai-agreement figure")).to_have_count(2)

    # Decisions per day: today's 5 U and 3 Q?, one U three days ago and one Q? yesterday, as stacked bars.
    chart = page.locator("#per-day svg")
    expect(chart).to_be_visible()
    for title in (f"{_day(0)}: 5 × U", f"{_day(0)}: 3 × Q?", f"{_day(3)}: 1 × U", f"{_day(1)}: 1 × Q?"):
        rect = chart.locator("rect", has=page.locator(f"title:text-is('{title}')"))
        expect(rect).to_have_count(1)
        assert rect.bounding_box()["height"] > 5, title
    expect(chart.locator("rect")).to_have_count(4)
    expect(page.locator("#per-day")).to_contain_text("10 decisions · most in a day: 8")
    today = chart.locator("rect", has=page.locator(f"title:text-is('{_day(0)}: 5 × U')")).bounding_box()
    earlier = chart.locator("rect", has=page.locator(f"title:text-is('{_day(3)}: 1 × U')")).bounding_box()
    assert earlier["x"] < today["x"] and earlier["height"] < today["height"]  # oldest left, taller for more
    # The chart spans its card, says which day is where and which colour is which decision.
    card = page.locator("#per-day").bounding_box()
    assert chart.bounding_box()["width"] > 0.9 * (card["width"] - 40)
    axis = page.locator("#per-day .per-day-axis span")
    expect(axis.first).to_have_text(_day(29))
    expect(axis.last).to_have_text(_day(0))
    expect(page.locator("#per-day .per-day-legend")).to_contain_text("U Usable")
    expect(page.locator("#per-day .per-day-legend")).to_contain_text("Q? Questionable")

    page.screenshot(path=os.path.join(SHOTS or str(tmp_path), f"dashboard-{size['width']}.png"), full_page=True)
    for selector in ("#agreement", "#ai-agreement", "#per-day", "table.kappa", "#ai-agreement .overflow-auto",
                     "#per-day svg"):
        fits(page, selector)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    context.close()
