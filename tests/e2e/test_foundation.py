"""A person signs in, creates a project, creates a colleague, adds them with a role, signs out."""

import re

from playwright.sync_api import expect

from tests.e2e.conftest import sign_in


def test_admin_sets_up_a_project(page, live_server, tmp_path):
    sign_in(page, live_server)
    expect(page.locator(".flash-success")).to_contain_text("Signed in as admin")

    # A colleague's account, from the admin pages.
    page.get_by_role("link", name="Users").first.click()
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Email").fill("rita@example.org")
    page.get_by_label("Password").fill("rita-password-1")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("link", name="rita")).to_be_visible()

    # A project.
    page.goto(live_server.url + "/projects")
    page.get_by_label("Name").fill("chest-qc")
    page.get_by_label("Description").fill("Chest radiograph QC")
    page.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(re.compile(r"/projects/chest-qc$"))
    expect(page.get_by_role("heading", name="chest-qc")).to_be_visible()

    # Add the colleague as a reviewer: the members table is swapped in by htmx.
    page.get_by_role("button", name="Project settings").click()
    page.get_by_label("Username to add").fill("rita")
    page.get_by_label("Role", exact=True).select_option("reviewer")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator("main")).to_contain_text("rita is now reviewer in chest-qc")
    expect(page.get_by_label("Role of rita")).to_have_value("reviewer")

    # Change the role in place.
    # (If the change lands before htmx has wired the swapped-in form, the browser posts it normally and
    # the same message comes back as a flash: either way the person sees it.)
    page.wait_for_load_state("networkidle")
    page.get_by_label("Role of rita").select_option("senior_reviewer")
    expect(page.locator("main")).to_contain_text("rita is now senior_reviewer")
    page.screenshot(path=str(tmp_path / "settings.png"), full_page=True)

    # A bad name gets a clear message.
    page.get_by_label("Username to add").fill("nobody-here")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator("#members")).to_contain_text("No user named 'nobody-here'")

    # Sign out from the user menu.
    page.locator(".user-menu summary").click()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(live_server.url + "/projects/chest-qc")
    expect(page).to_have_url(re.compile(r"/login\?next="))

    # The colleague signs in and sees the project, with their role.
    sign_in(page, live_server, "rita", "rita-password-1")
    page.get_by_role("link", name="chest-qc").click()
    expect(page.get_by_text("your role: senior_reviewer")).to_be_visible()


def test_wrong_password_is_refused_with_a_message(page, live_server):
    page.goto(live_server.url + "/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Invalid username or password")
