"""A reviewer uploads scans in the browser, then finds them in the studies table by search, filter, sort and page."""

import io
import re
import zipfile

from playwright.sync_api import expect

from portal.dicom import samples
from tests.e2e.conftest import sign_in


def test_upload_files_zip_and_junk(page, live_server, tmp_path):
    assert live_server.api("POST", "/api/v1/projects", json={"name": "up"}).status_code == 201
    live_server.cli("user", "create", "rev", "--password", "rev-password-1")
    live_server.cli("project", "add-member", "up", "rev", "--role", "reviewer")
    ct = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "ct", 3, patient_id="UP-CT")
    mr = samples.make_series(samples.sample_path("MR_small.dcm"), tmp_path / "mr", 2, patient_id="UP-MR")
    zpath = tmp_path / "mr.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for f in mr:
            z.write(f, f.name)
    junk = tmp_path / "notes.dcm"
    junk.write_text("this is not an image\n" * 10)

    sign_in(page, live_server, "rev", "rev-password-1")
    page.goto(live_server.url + "/projects/up")
    page.get_by_role("button", name="Upload scans").click()
    page.set_input_files("#pick-files", [str(p) for p in ct] + [str(zpath), str(junk)])
    expect(page.locator("#upload-summary")).to_contain_text("Done.", timeout=30000)
    rows = page.locator("#upload-results tbody tr")
    expect(rows).to_have_count(6)
    expect(page.locator("#upload-results tr[data-status=stored]")).to_have_count(5)
    expect(page.locator("#upload-results tr[data-status=rejected]")).to_contain_text("notes.dcm")
    expect(page.locator("#upload-summary")).to_contain_text("5 stored, 1 rejected")
    # Problems first, then by file name (numbers as numbers), however the batches came back.
    names = rows.locator("td:first-child").all_inner_texts()
    assert names[0].endswith("notes.dcm"), names
    assert names[1:] == sorted(names[1:], key=lambda n: [int(t) if t.isdigit() else t.lower()
                                                          for t in re.split(r"(\d+)", n)]), names
    assert page.locator("#upload-progress").get_attribute("value") == "100"
    page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)

    # Sending the same files again changes nothing and says so.
    page.set_input_files("#pick-files", [str(p) for p in ct])
    expect(page.locator("#upload-results tr[data-status=already_stored]")).to_have_count(3, timeout=30000)

    # The studies show up on the project page.
    page.goto(live_server.url + "/projects/up")
    expect(page.locator("#studies tbody tr")).to_have_count(2)
    page.get_by_role("link", name="UP-CT").click()
    expect(page).to_have_url(re.compile(r"/projects/up/studies/"))
    page.locator(".series-card").first.click()
    expect(page.locator("#viewer")).to_be_visible()


def test_files_chosen_before_the_page_script_runs_are_sent(page, live_server, tmp_path):
    """On a slow page load a person may pick files before upload.js has run: they are sent, not dropped."""
    assert live_server.api("POST", "/api/v1/projects", json={"name": "early"}).status_code == 201
    ct = samples.make_series(samples.sample_path("CT_small.dcm"), tmp_path / "ct", 2, patient_id="EARLY")
    held = []
    page.route("**/static/js/upload.js", lambda route: held.append(route))  # the script waits
    sign_in(page, live_server)
    page.goto(live_server.url + "/projects/early/upload", wait_until="commit")  # deferred scripts hold back DOMContentLoaded
    page.set_input_files("#pick-files", [str(p) for p in ct])
    page.wait_for_timeout(300)
    assert held and page.locator("#upload-summary").inner_text() == ""  # nothing could have run yet
    held[0].continue_()
    expect(page.locator("#upload-summary")).to_contain_text("Done.", timeout=30000)
    expect(page.locator("#upload-results tr[data-status=stored]")).to_have_count(2)


def test_studies_table_searches_filters_sorts_and_pages(page, live_server, tmp_path):
    assert live_server.api("POST", "/api/v1/projects", json={"name": "many"}).status_code == 201
    files = []
    for i in range(30):
        src = samples.sample_path("MR_small.dcm" if i % 3 == 0 else "CT_small.dcm")
        files.append(samples.restamp(src, tmp_path / f"{i}.dcm", patient_id=f"PT-{i:03d}"))
    out = live_server.cli("ingest", str(tmp_path), "--project", "many")
    assert "30 stored" in out

    sign_in(page, live_server)
    page.goto(live_server.url + "/projects/many")
    rows = page.locator("#studies tbody tr")
    expect(page.locator("#studies .count")).to_contain_text("30 studies")
    expect(rows).to_have_count(25)

    # Page 2 by swap: the URL follows, and reload keeps it.
    page.get_by_role("link", name="Next →").click()
    expect(page).to_have_url(re.compile(r"page=2"))
    expect(rows).to_have_count(5)
    page.reload()
    expect(rows).to_have_count(5)
    page.go_back()
    expect(rows).to_have_count(25)

    # Search.
    page.get_by_label("Search studies").fill("PT-02")
    expect(page).to_have_url(re.compile(r"q=PT-02"))
    expect(rows).to_have_count(10)

    # Filter by modality.
    page.get_by_label("Search studies").fill("")
    page.get_by_label("Modality").select_option("MR")
    expect(page.locator("#studies .count")).to_contain_text("10 studies")

    # Sort by patient ID, ascending then descending.
    page.get_by_label("Modality").select_option("")
    expect(page.locator("#studies .count")).to_contain_text("30 studies")
    page.locator("a.sort[data-sort=patient]").click()
    expect(page).to_have_url(re.compile(r"sort=patient"))
    first = rows.first.locator("td").first
    first_desc = first.inner_text()
    page.locator("a.sort[data-sort=patient]").click()
    expect(first).not_to_have_text(first_desc)
    assert sorted([first.inner_text(), first_desc]) == ["PT-000", "PT-029"]


LABELS_FIT_JS = """
() => [...document.querySelectorAll('#study-filters select')].map((s) => {
  const cs = getComputedStyle(s);
  const probe = document.createElement('span');
  probe.style.font = cs.font; probe.style.position = 'absolute'; probe.style.whiteSpace = 'pre';
  document.body.appendChild(probe);
  const widest = Math.max(...[...s.options].map((o) => { probe.textContent = o.text; return probe.offsetWidth; }));
  probe.remove();
  const room = s.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  return {name: s.name, widest, room};
})
"""


def test_a_filter_change_keeps_the_sort_and_filter_labels_are_whole(page, live_server, tmp_path):
    assert live_server.api("POST", "/api/v1/projects", json={"name": "sorted"}).status_code == 201
    for i in range(8):
        src = samples.sample_path("MR_small.dcm" if i % 2 else "CT_small.dcm")
        samples.restamp(src, tmp_path / f"{i}.dcm", patient_id=f"SO-{i:03d}")
    live_server.cli("ingest", str(tmp_path), "--project", "sorted")
    sign_in(page, live_server)
    for size in ({"width": 1280, "height": 800}, {"width": 820, "height": 1180}):
        page.set_viewport_size(size)
        page.goto(live_server.url + "/projects/sorted")
        fits = page.evaluate(LABELS_FIT_JS)
        assert fits and all(f["widest"] <= f["room"] + 1 for f in fits), (size, fits)
        page.screenshot(path=str(tmp_path / f"filters-{size['width']}.png"))
    page.set_viewport_size({"width": 1280, "height": 800})
    rows = page.locator("#studies tbody tr")
    page.locator("a.sort[data-sort=patient]").click()  # descending first
    expect(rows.first.locator("td").first).to_have_text("SO-007")
    page.get_by_label("Modality").select_option("CT")
    expect(page.locator("#studies .count")).to_contain_text("4 studies")
    expect(page).to_have_url(re.compile(r"sort=patient"))
    expect(rows.first.locator("td").first).to_have_text("SO-006")  # still by patient, descending
    page.locator("a.sort[data-sort=patient]").click()  # ascending
    expect(rows.first.locator("td").first).to_have_text("SO-000")
    page.get_by_label("Search studies").fill("SO-00")
    expect(page).to_have_url(re.compile(r"q=SO-00"))
    expect(page).to_have_url(re.compile(r"dir=asc"))
    expect(rows.first.locator("td").first).to_have_text("SO-000")
    page.get_by_label("Modality").select_option("")
    expect(page.locator("#studies .count")).to_contain_text("8 studies")
    expect(rows.first.locator("td").first).to_have_text("SO-000")
    expect(rows.last.locator("td").first).to_have_text("SO-007")
    page.screenshot(path=str(tmp_path / "filters-sorted.png"))
