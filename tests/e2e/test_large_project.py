"""A project of a site's size in the browser: past 10,000 studies the table says "10,000+" and pages on; filters
and sorts by the study summary (series count, review status) answer with exact counts below the cap."""

import asyncio
import concurrent.futures
import re
import sqlite3

from playwright.sync_api import expect

from bench.studies import bulk_load, make_rows
from tests.e2e.conftest import sign_in

N = 10_050


def _load(server, name: str) -> None:
    """N studies of 1-2 series each, in bulk as the studies bench makes them (the triggers keep the summary)."""
    from portal import settings as settings_mod

    settings = settings_mod.load(server.env)

    async def ids_of():
        if settings.database_kind == "postgres":
            import asyncpg

            con = await asyncpg.connect(**settings.postgres_params())
            try:
                project = await con.fetchval("SELECT id FROM lb_project WHERE name = $1", name)
                archive = await con.fetchval("SELECT id FROM lb_archive WHERE project = $1", project)
            finally:
                await con.close()
            return project, archive
        con = sqlite3.connect(settings.sqlite_path)
        try:
            project = con.execute("SELECT id FROM lb_project WHERE name = ?", (name,)).fetchone()[0]
            archive = con.execute("SELECT id FROM lb_archive WHERE project = ?", (project,)).fetchone()[0]
        finally:
            con.close()
        return project, archive

    async def go():
        project, archive = await ids_of()
        start = {"patient": 5_000_000, "study": 5_000_000, "series": 5_000_000, "decision": 5_000_000,
                 "instance": 5_000_000}
        await bulk_load(settings, make_rows(project, archive, "H", N, 2, start, seed=3))

    # In a thread: Playwright's sync API keeps an event loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result()


def test_a_huge_project_counts_up_to_a_cap_and_pages_on(page, live_server, tmp_path):
    assert live_server.api("POST", "/api/v1/projects", json={"name": "huge"}).status_code == 201
    assert live_server.api("GET", "/api/v1/projects/huge").status_code == 200  # its default archive exists
    _load(live_server, "huge")

    sign_in(page, live_server)
    page.goto(live_server.url + "/projects/huge")
    rows = page.locator("#studies tbody tr")
    expect(page.locator("#studies .count")).to_have_text(re.compile(r"^\s*10,000\+ studies\s*$"))
    expect(rows).to_have_count(25)
    expect(page.locator(".pager")).to_contain_text("Page 1 of 400+")
    page.screenshot(path=str(tmp_path / "huge.png"), full_page=True)

    page.get_by_role("link", name="Next →").click()
    expect(page).to_have_url(re.compile(r"page=2"))
    expect(page.locator(".pager")).to_contain_text("Page 2 of 400+")
    expect(rows).to_have_count(25)

    # Below the cap the count is exact: the studies needing a senior, by the study's own review status.
    page.goto(live_server.url + "/projects/huge")
    page.get_by_label("Review status").select_option("needs_senior_review")
    expect(page).to_have_url(re.compile(r"status=needs_senior_review"))
    count = page.locator("#studies .count")
    expect(count).to_have_text(re.compile(r"^\s*[\d,]+ studies match the filters\s*$"))
    assert "+" not in count.inner_text()
    statuses = rows.locator(".status")
    expect(statuses.first).to_have_text("needs senior review")
    assert set(statuses.all_inner_texts()) == {"needs senior review"}

    # Sorted by series count, most first: every study of the first page has two.
    page.goto(live_server.url + "/projects/huge")
    page.locator("a.sort[data-sort=series]").click()
    expect(page).to_have_url(re.compile(r"sort=series"))
    expect(rows.first.locator("td").nth(5)).to_have_text("2")
    page.screenshot(path=str(tmp_path / "huge-sorted.png"), full_page=True)
