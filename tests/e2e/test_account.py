"""A person's own account page: where they are signed in and their API tokens; they sign another browser out and
revoke a token, and both stop working at once. An administrator sees the failed sign-ins being slowed."""

import httpx
from playwright.sync_api import expect

from tests.e2e.conftest import sign_in

PASSWORD = "eve-password-123"


def test_account_page_lists_and_ends_sessions_and_tokens(page, browser, live_server, tmp_path):
    live_server.cli("user", "create", "eve", "--password", PASSWORD)
    token = httpx.post(live_server.url + "/api-token-auth/", json={"username": "eve", "password": PASSWORD}).json()
    other = browser.new_context()
    elsewhere = other.new_page()
    try:
        sign_in(elsewhere, live_server, "eve", PASSWORD)
        sign_in(page, live_server, "eve", PASSWORD)
        page.goto(live_server.url + "/account")
        rows = page.locator("#sessions tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.filter(has_text="this browser")).to_have_count(1)
        expect(page.locator("#tokens tbody tr")).to_have_count(1)
        expect(page.locator("#tokens tbody tr")).to_contain_text("active")
        page.screenshot(path=str(tmp_path / "account.png"), full_page=True)

        # The other browser, signed out from here: its next page asks it to sign in again.
        rows.filter(has_not_text="this browser").get_by_role("button", name="Sign out").click()
        expect(page.locator(".flash-success")).to_contain_text("That browser is signed out.")
        expect(rows).to_have_count(1)
        elsewhere.goto(live_server.url + "/account")
        elsewhere.wait_for_url("**/login**")

        # The token, revoked from here: the API refuses it.
        headers = {"Authorization": f"Token {token['token']}"}
        assert httpx.get(live_server.url + "/api/v1/users/me", headers=headers).status_code == 200
        page.locator("#tokens").get_by_role("button", name="Revoke").click()
        expect(page.locator(".flash-success")).to_contain_text("Token revoked.")
        expect(page.locator("#tokens tbody tr")).to_contain_text("revoked")
        assert httpx.get(live_server.url + "/api/v1/users/me", headers=headers).status_code == 401

        # A wrong password for eve shows on the administrators' users page, with the account's failures.
        wrong = httpx.post(live_server.url + "/api-token-auth/", json={"username": "eve", "password": "wrong"})
        assert wrong.status_code == 401
        sign_in(elsewhere, live_server)
        elsewhere.goto(live_server.url + "/admin/users")
        expect(elsewhere.locator("#throttle-accounts tbody tr", has_text="eve")).to_contain_text("1")
    finally:
        other.close()
