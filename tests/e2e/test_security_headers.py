"""Under the Content-Security-Policy the viewer still paints, htmx still swaps, the API docs still render,
and nothing on these pages is blocked by the policy."""

import pydicom
import pytest

from portal.dicom import samples
from tests.e2e.conftest import sign_in
from tests.e2e.test_viewer import PIXELS_JS


@pytest.fixture
def csp_violations(page):
    seen = []
    page.on("console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: seen.append(str(e)))  # a script the policy stopped fails to run
    return seen


def test_viewer_paints_and_htmx_swaps_under_the_policy(page, live_server, tmp_path, csp_violations):
    assert live_server.api("POST", "/api/v1/projects", json={"name": "v"}).status_code == 201
    f = samples.restamp(samples.sample_path(samples.SAMPLES_BY_SYNTAX["jpeg2000"]), tmp_path / "j2k.dcm")
    live_server.cli("ingest", str(tmp_path), "--project", "v")
    uid = pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID
    response = page.goto(live_server.url + "/login")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    sign_in(page, live_server)

    # The project switcher (a listener now, not an inline handler) still navigates.
    page.select_option("select.project-switcher", "v")
    page.wait_for_url("**/projects/v")

    page.goto(f"{live_server.url}/projects/v/series/{uid}")
    try:
        page.wait_for_function("() => window.lightboxViewer && window.lightboxViewer.getState().count > 0",
                               timeout=20000)
    finally:
        assert not csp_violations, csp_violations
    fraction = 0.0
    for _ in range(40):
        fraction = page.evaluate(PIXELS_JS)
        if fraction > 0.01:
            break
        page.wait_for_timeout(250)
    assert fraction > 0.01, "the viewer did not paint under the CSP"
    # htmx loaded the forms panel into the page.
    page.wait_for_selector("#report-forms", timeout=15000)
    assert not csp_violations, csp_violations


def test_api_docs_render_from_vendored_files(page, live_server, csp_violations):
    page.goto(live_server.url + "/schema/swagger")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30000)
    page.goto(live_server.url + "/schema/redoc")
    page.wait_for_selector("h1", timeout=30000)
    assert "Lightbox" in page.inner_text("h1")
    # Redoc's bundle links a "powered by" logo on its CDN: the policy blocking it is the point.
    assert not [v for v in csp_violations if "cdn.redoc.ly/redoc/logo-mini.svg" not in v], csp_violations
