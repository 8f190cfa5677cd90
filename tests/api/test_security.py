"""Security holes of issue 13, one test each: forms stay their project's, sessions end, throttling never locks
anyone out, bad input is a 4xx, headers, and the smaller ones."""

from __future__ import annotations

import contextlib
import json

import httpx
import pytest

from portal import forms
from portal.auth import accounts, throttle, tokens
from portal.forms.builtin import _f
from portal.tables import ApiToken, UserSession
from tests.helpers import PASSWORD, creds, form_post, login, make_project, make_user

B_FORM = {"name": "b-form2", "title": "B private", "description": "B's own questions",
          "fields": [_f("q", "text", "Question", required=True)]}


@contextlib.asynccontextmanager
async def client_from(app, host: str):
    """A client calling from another address."""
    transport = httpx.ASGITransport(app=app, client=(host, 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


# --- 1. forms belong to their project -----------------------------------------------------------


@pytest.fixture
async def two_projects(app):
    a = await make_project("proj-a", {"amanager": "manager", "areviewer": "reviewer"})
    b = await make_project("proj-b", {"bmanager": "manager", "both": "manager"})
    await make_project("proj-c", {"both": "manager"})
    await forms.save_definition(b, B_FORM, by=await accounts.get("bmanager"))
    return a, b


def _same(a: httpx.Response, b: httpx.Response, name_a: str, name_b: str, status: int = 404) -> None:
    assert a.status_code == b.status_code == status, (a.status_code, b.status_code)
    assert a.text.replace(name_a, "NAME") == b.text.replace(name_b, "NAME")


async def test_another_projects_form_reads_exactly_like_a_missing_one(client, two_projects):
    await login(client, "amanager")
    await client.get("/projects")  # shows the sign-in flash, so that pages compare equal
    for suffix in ("/assign", "/unassign", "/move", "/share"):
        theirs = await form_post(client, f"/projects/proj-a/forms/b-form2{suffix}", {})
        missing = await form_post(client, f"/projects/proj-a/forms/no-such-form{suffix}", {})
        _same(theirs, missing, "b-form2", "no-such-form")
    # The editor of another project's form is the empty editor of an unused name: none of B's questions show.
    theirs, missing = await client.get("/projects/proj-a/forms/b-form2"), \
        await client.get("/projects/proj-a/forms/no-such-form")
    _same(theirs, missing, "b-form2", "no-such-form", status=200)
    assert "B private" not in theirs.text and "Question" not in theirs.text
    manage = await client.get("/projects/proj-a/forms")
    assert "b-form2" not in manage.text and "cxr-tb-screening" in manage.text

    for path in ("/api/v1/forms/b-form2", "/api/v1/forms/no-such-form"):
        r = await client.get(path, params={"Project": "proj-a"}, headers=creds("amanager"), cookies={})
        assert r.status_code == 404 and r.json()["suberror"] == "form_not_found"
    theirs = await client.get("/api/v1/forms/b-form2", params={"Project": "proj-a"}, headers=creds("amanager"))
    missing = await client.get("/api/v1/forms/no-such-form", params={"Project": "proj-a"}, headers=creds("amanager"))
    assert theirs.json()["detail"].replace("b-form2", "N") == missing.json()["detail"].replace("no-such-form", "N")


async def test_cross_project_assign_is_refused_and_owner_keeps_editing(client, two_projects):
    a, b = two_projects
    await login(client, "amanager")
    r = await form_post(client, "/projects/proj-a/forms/b-form2/assign", {})
    assert r.status_code == 404
    assert "b-form2" not in [f["name"] for f in await forms.forms_of(a)]
    # B's manager still edits their own form (it is used by no project they do not manage).
    saved, created = await forms.save_definition(
        b, {**B_FORM, "title": "B private v2"}, by=await accounts.get("bmanager"))
    assert created and saved["version"] == 2


async def test_manager_of_both_projects_and_admin_sharing_may_hand_a_form_on(client, two_projects):
    a, b = two_projects
    await login(client, "both")
    assert (await form_post(client, "/projects/proj-c/forms/b-form2/assign", {})).status_code == 303
    # Shared by an administrator: every project may add it.
    await make_user("root", admin=True)
    await forms.share("b-form2", True, by=await accounts.get("root"))
    await forms.assign(a, "b-form2", by=await accounts.get("amanager"))
    assert "b-form2" in [f["name"] for f in await forms.forms_of(a)]


async def test_cad4tb_forms_commands_do_not_reach_another_projects_form(client, two_projects):
    r = await client.post("/api/v1/patient/study/series/forms/add/", headers=creds("areviewer"),
                          data={"Project": "proj-a", "FormName": "b-form2", "FormSubmission": json.dumps({"q": "x"}),
                                "PatientID": "nobody", "StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.2.3"})
    assert r.status_code == 404


# --- 2. sessions that end -----------------------------------------------------------------------


async def test_logout_ends_the_session_on_the_server(client, app):
    await make_project("p", {"ana": "viewer"})
    await login(client, "ana")
    stolen = client.cookies.get("lightbox_session")
    assert (await client.get("/projects/p")).status_code == 200
    assert (await form_post(client, "/logout", {})).status_code == 303
    async with client_from(app, "10.9.9.9") as thief:
        thief.cookies.set("lightbox_session", stolen)
        r = await thief.get("/projects/p")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


async def test_logout_is_post_only_and_405_says_allow(client):
    await make_user("ana")
    await login(client, "ana")
    r = await client.get("/logout")
    assert r.status_code == 405 and "POST" in r.headers.get("allow", "")
    assert (await client.get("/account")).status_code == 200  # still signed in
    r = await client.delete("/api/v1/users/me", headers=creds("ana"))
    assert r.status_code == 405 and "GET" in r.headers.get("allow", "")


async def test_password_reset_ends_sessions_and_revokes_tokens(client, app):
    await make_user("root", admin=True)
    await make_user("ana")
    key = await tokens.issue(await accounts.get("ana"))
    async with client_from(app, "10.1.1.1") as ana:
        await login(ana, "ana")
        assert (await ana.get("/account")).status_code == 200
        await login(client, "root")
        r = await form_post(client, "/admin/users/ana/password", {"password": "brand-new-pw-1",
                                                                  "password2": "brand-new-pw-1"})
        assert r.status_code == 303
        assert (await ana.get("/account")).status_code == 303
    assert (await client.get("/api/v1/users/me", headers={"Authorization": f"Token {key}"},
                             cookies={})).status_code == 401
    r = await client.post("/api-token-auth/", json={"username": "ana", "password": "brand-new-pw-1"}, cookies={})
    assert r.status_code == 200  # a new token with the new password


async def test_own_password_change_keeps_this_browser_and_ends_the_others(client, app):
    await make_user("ana")
    await tokens.issue(await accounts.get("ana"), "script")
    async with client_from(app, "10.2.2.2") as other:
        await login(other, "ana")
        await login(client, "ana")
        page = await client.get("/account")
        assert page.text.count("<tr>") >= 3 and "this browser" in page.text and "script" in page.text
        r = await form_post(client, "/account/password", {"current": PASSWORD, "password": "brand-new-pw-2",
                                                          "password2": "brand-new-pw-2"})
        assert r.status_code == 303
        assert (await client.get("/account")).status_code == 200
        assert (await other.get("/account")).status_code == 303
    assert await ApiToken.count().where(ApiToken.revoked_at.is_null()) == 0
    assert await UserSession.count().where(UserSession.ended_at.is_null()) == 1


async def test_admin_user_page_lists_sessions_and_tokens_and_ends_one(client, app):
    await make_user("root", admin=True)
    await make_user("ana")
    await tokens.issue(await accounts.get("ana"), "nightly-sync")
    async with client_from(app, "10.3.3.3") as ana:
        await login(ana, "ana")
        await login(client, "root")
        page = await client.get("/admin/users/ana")
        assert page.status_code == 200 and "10.3.3.3" in page.text and "nightly-sync" in page.text
        (sid,) = [s.id for s in await UserSession.objects().where(UserSession.ended_at.is_null())
                  if s.client == "10.3.3.3"]
        assert (await form_post(client, f"/admin/users/ana/sessions/{sid}/end", {})).status_code == 303
        assert (await ana.get("/account")).status_code == 303  # signed out on the server


# --- 3. throttling without lockouts -------------------------------------------------------------


async def test_many_failures_from_one_address_never_refuse_another_accounts_right_password(client, app):
    await make_user("root", admin=True)
    for i in range(25):
        r = await client.post("/api-token-auth/", json={"username": f"guess{i % 5}", "password": "wrong-password"})
        assert r.status_code in (401, 429)
    # Same address: the admin's right password (portal form and CAD4TB headers) still gets in.
    assert (await client.get("/api/v1/users/me", headers=creds("root"), cookies={})).status_code == 200
    await login(client, "root")
    page = await client.get("/admin/users")
    assert "127.0.0.1" in page.text and "guess0" in page.text  # visible to administrators


async def test_wrong_passwords_delay_an_account_but_do_not_lock_its_owner_out(client, app, monkeypatch):
    await make_user("ana")
    async with client_from(app, "10.0.0.7") as owner:
        assert (await owner.get("/api/v1/users/me", headers=creds("ana"))).status_code == 200  # a known address
        async with client_from(app, "203.0.113.5") as attacker:
            codes = [(await attacker.get("/api/v1/users/me", headers=creds("ana", "wrong-password"))).status_code
                     for _ in range(8)]
        assert 401 in codes and 429 in codes
        # The owner, from where they signed in before, is not delayed at all.
        assert (await owner.get("/api/v1/users/me", headers=creds("ana"))).status_code == 200
    # From a new address the account waits (a delay, with Retry-After), then the right password works.
    async with client_from(app, "198.51.100.9") as fresh:
        r = await fresh.get("/api/v1/users/me", headers=creds("ana", "wrong-password"))
        r = await fresh.get("/api/v1/users/me", headers=creds("ana"))
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= throttle.MAX_DELAY
        later = throttle.time.monotonic() + throttle.MAX_DELAY + 1
        monkeypatch.setattr(throttle.time, "monotonic", lambda: later)
        assert (await fresh.get("/api/v1/users/me", headers=creds("ana"))).status_code == 200


async def test_a_correct_header_login_runs_no_audit_query(client, monkeypatch):
    from portal import audit
    from portal.tables import AuditEvent

    await make_project("p", {"ana": "viewer"})

    def forbidden(*a, **k):
        raise AssertionError("an audit query on a correct header login")

    monkeypatch.setattr(audit, "count_since", forbidden, raising=False)
    monkeypatch.setattr(AuditEvent, "count", forbidden)
    monkeypatch.setattr(audit, "record", forbidden)
    for _ in range(3):
        assert (await client.get("/api/v1/users/me", headers=creds("ana"))).status_code == 200


# --- 6. smaller holes ---------------------------------------------------------------------------


async def test_users_list_shows_only_people_who_share_a_project(client):
    await make_project("a", {"ana": "viewer", "bob": "reviewer"})
    await make_project("b", {"carl": "viewer"})
    await make_user("root", admin=True)
    seen = {u["username"] for u in (await client.get("/api/v1/users", headers=creds("ana"))).json()}
    assert seen == {"ana", "bob"}
    seen = {u["username"] for u in (await client.get("/api/v1/users", headers=creds("root"))).json()}
    assert seen == {"ana", "bob", "carl", "root"}


BIG = "18446744073709551616"


@pytest.mark.parametrize("path", [
    f"/api/v1/projects/p/runs/{BIG}", f"/api/v1/projects/p/runs/{2**63}", f"/api/v1/assets/{BIG}",
    "/dicomweb/p/series?Modality=%5C", "/dicomweb/p/studies?StudyInstanceUID=%5C%5C",
    f"/dicomweb/p/instances?InstanceNumber={BIG}", f"/api/v1/forms/mri-qc?Project=p&Version={BIG}",
    "/api/v1/forms/mri-qc?Project=p&Version=abc",
    "/api/v1/scan-decisions?series=1.2%00", "/api/v1/patient/get/?Project=p&PatientID=a%00b",  # NUL: PostgreSQL
])
async def test_bad_parameters_are_4xx_with_a_reason(client, path):
    await make_project("p", {"ana": "manager"})
    r = await client.get(path, headers=creds("ana"))
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.json()["detail"]


@pytest.mark.parametrize("path,body", [
    ("/projects/p/ai/settings", {"rows": "abc"}), ("/projects/p/ai/settings", {"rows": "999999999"}),
    ("/projects/p/settings/review", {"rows": "abc"}), (f"/notifications/{BIG}/open", None),
    (f"/projects/p/sync/runs/{BIG}", None),
])
async def test_bad_portal_parameters_are_4xx(client, path, body):
    await make_project("p", {"ana": "manager"})
    await login(client, "ana")
    r = await (form_post(client, path, body) if body is not None else client.get(path))
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])


async def test_an_oversized_form_field_is_a_readable_413(client):
    await make_user("ana")
    await client.get("/login")
    r = await client.post("/login", data={"username": "ana", "password": "x" * (2 * 1024 * 1024),
                                           "_csrf_token": client.cookies.get("lightbox_csrf")})
    assert r.status_code == 413 and "too large" in r.text.lower()


@pytest.mark.parametrize("path", ["/api/v1/instance/upload/", "/api/v1/studies", "/api/v1/studies?Project=p",
                                  "/dicomweb/p/studies"])
async def test_upload_permission_is_checked_before_the_body_is_read(client, path):
    await make_project("p", {"vera": "viewer"})
    pulled = []

    async def body():
        for _ in range(64):
            pulled.append(1)
            yield b"x" * 65536

    r = await client.post(path, headers={**creds("vera"), "Content-Type": "multipart/form-data; boundary=zz"},
                          content=body())
    assert r.status_code == 403, r.text
    assert len(pulled) <= 1  # at most the first chunk the transport hands over with the request


# --- 5. headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/projects", "/api/v1/users/me", "/healthz", "/static/js/series.js",
                                  "/schema/swagger", "/no/such/page"])
async def test_security_headers_on_every_answer(client, path):
    r = await client.get(path)
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["x-frame-options"] == "DENY"


async def test_api_docs_load_only_vendored_pinned_files(client):
    for path in ("/schema/swagger", "/schema/redoc"):
        r = await client.get(path)
        assert r.status_code == 200
        assert "http://" not in r.text and "https://" not in r.text.replace("https://github.com", ""), r.text[:2000]
        for src in __import__("re").findall(r'(?:src|href)="(/static/[^"]+)"', r.text):
            assert (await client.get(src)).status_code == 200, src


async def test_cookies_are_secure_when_the_site_is_served_over_https(lb_env):
    from portal import settings as settings_mod
    from portal.app import create_app

    app = create_app(settings_mod.load({**lb_env, "LIGHTBOX_BASE_URL": "https://lightbox.example.org"}))
    await make_user("ana")
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        r = await c.get("/login")
        assert "secure" in r.headers["set-cookie"].lower()
        r = await c.post("/login", data={"username": "ana", "password": PASSWORD,
                                         "_csrf_token": c.cookies.get("lightbox_csrf")})
        assert r.status_code == 303
        assert all("secure" in v.lower() for v in r.headers.get_list("set-cookie"))


# --- 7. an OpenAPI document clients can be generated from ---------------------------------------


async def test_openapi_names_security_schemes_and_the_error_shape(client):
    assert (await client.get("/schema")).headers["content-type"].startswith("text/html")
    doc = (await client.get("/schema/openapi.json")).json()
    assert set(doc["components"]["securitySchemes"]) == {"token", "cad4tbUser", "cad4tbPassword", "basic", "session"}
    assert doc["components"]["schemas"]["Error"]["required"] == ["error", "suberror", "detail"]
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "delete"):
                assert "404" in operation["responses"] and "400" in operation["responses"], (method, path)
    assert doc["paths"]["/api-token-auth"]["post"]["security"] == []
